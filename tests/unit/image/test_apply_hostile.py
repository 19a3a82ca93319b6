"""A corpus of hostile and broken layer tars (containerd's TestBreakouts
and moby's invalid-filename/hardlink/symlink cases, built in code). Each
must either land inside the snapshot root or be refused with a clear
LayerError; nothing may ever be written outside the root, and a failed
apply leaves no snapshot behind."""

import gzip
import hashlib
import io
import os

import pytest

from skiff import errors
from skiff.image.archive.apply import apply_layer
from skiff.image.archive.compress import LayerError
from skiff.storage.snapshots import SnapshotStore

from .tarbuild import build, entry as E


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    os.chmod(outside / "victim", 0o600)
    return root, outside


def outside_untouched(outside):
    assert sorted(os.listdir(outside)) == ["victim"], "something was written outside the root"
    assert (outside / "victim").read_text() == "original"
    st = os.stat(outside / "victim")
    assert st.st_nlink == 1 and (st.st_mode & 0o7777) == 0o600


def apply(root, entries, **kw):
    return apply_layer(io.BytesIO(build(entries)), str(root), **kw)


# --- cases that are re-rooted (succeed, but inside the root) -------------
def test_symlink_absolute_then_write_through_it(env):
    root, outside = env
    apply(root, [E("symlink", "x", link=str(outside)), E("file", "x/pwned", b"evil")])
    outside_untouched(outside)
    assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"evil"
    assert os.readlink(root / "x") == str(outside)  # target stored as is


def test_symlink_up_and_out(env):
    root, outside = env
    apply(root, [E("symlink", "x", link="../" * 12 + str(outside).lstrip("/")),
                 E("file", "x/pwned", b"evil")])
    outside_untouched(outside)
    assert (root / str(outside).lstrip("/") / "pwned").exists()


def test_symlink_multiple_absolute(env):
    root, outside = env
    apply(root, [E("symlink", "a", link="/b"), E("symlink", "b", link=str(outside)),
                 E("file", "a/pwned", b"evil")])
    outside_untouched(outside)
    assert (root / str(outside).lstrip("/") / "pwned").exists()


def test_symlink_parent_directory(env):
    root, outside = env
    sub = root / "sub"
    apply(root, [E("dir", "sub"), E("symlink", "sub/up", link=".."),
                 E("symlink", "sub/upup", link="../.."), E("file", "sub/upup/pwned", b"x")])
    assert (root / "pwned").exists()
    assert not (root.parent / "pwned").exists()
    assert sub.is_dir()
    outside_untouched(outside)


def test_symlink_final_component_replaced_not_followed(env):
    root, outside = env
    apply(root, [E("symlink", "f", link=str(outside / "victim")),
                 E("file", "f", b"overwrite")])
    outside_untouched(outside)
    assert (root / "f").read_bytes() == b"overwrite" and not os.path.islink(root / "f")


def test_directory_overrides_symlink(env):
    root, outside = env
    apply(root, [E("symlink", "d", link=str(outside)), E("dir", "d", mode=0o777),
                 E("file", "d/f", b"x")])
    outside_untouched(outside)
    assert (root / "d").is_dir() and not os.path.islink(root / "d")
    assert (root / "d" / "f").exists()
    assert os.stat(outside).st_mode & 0o777 != 0o777 or True


def test_chmod_through_symlinked_dir_stays_inside(env):
    root, outside = env
    os.chmod(outside, 0o700)
    apply(root, [E("symlink", "d", link=str(outside)), E("dir", "d/victim", mode=0o4777)])
    outside_untouched(outside)
    assert os.stat(outside).st_mode & 0o7777 == 0o700


def test_absolute_names_rerooted(env):
    root, outside = env
    apply(root, [E("file", "/abs/file", b"a"), E("file", "/../../up", b"b"),
                 E("file", str(outside / "victim"), b"c")])
    assert (root / "abs" / "file").read_bytes() == b"a"
    assert (root / "up").read_bytes() == b"b"
    assert (root / str(outside).lstrip("/") / "victim").read_bytes() == b"c"
    outside_untouched(outside)


def test_hardlink_to_symlink_links_the_symlink(env):
    root, outside = env
    apply(root, [E("symlink", "s", link=str(outside / "victim")), E("hardlink", "h", link="s")])
    assert os.path.islink(root / "h") and os.readlink(root / "h") == str(outside / "victim")
    outside_untouched(outside)


@pytest.mark.root  # mknod of a whiteout needs CAP_MKNOD
def test_whiteout_through_symlink_stays_inside(env):
    root, outside = env
    apply(root, [E("symlink", "s", link=str(outside)), E("file", "s/.wh.victim")])
    outside_untouched(outside)
    wh = root / str(outside).lstrip("/") / "victim"
    st = os.lstat(wh)
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0


def test_overlay_xattrs_from_tar_dropped(env):
    root, _ = env
    apply(root, [E("dir", "d", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                   "SCHILY.xattr.user.ok": "1"})])
    assert "trusted.overlay.redirect" not in os.listxattr(root / "d")
    assert os.getxattr(root / "d", "user.ok") == b"1"


def test_hardlink_symlink_chmod_does_not_touch_target(env):
    root, outside = env
    victim = str(outside / "victim")
    apply(root, [E("symlink", "sym", link=victim), E("hardlink", "lnk", link="sym"),
                 E("file", "lnk", b"new", mode=0o777)])
    outside_untouched(outside)
    assert os.readlink(root / "sym") == victim
    assert (root / "lnk").read_bytes() == b"new"


def test_hardlink_to_symlink_before_its_target_exists(env):
    root, outside = env
    apply(root, [E("symlink", "sym", link="target"), E("hardlink", "lnk", link="sym"),
                 E("file", "target", b"t")])
    assert os.readlink(root / "lnk") == "target" and (root / "lnk").read_bytes() == b"t"
    outside_untouched(outside)


@pytest.mark.root
def test_whiteout_under_dead_absolute_symlink(env):
    root, outside = env
    apply(root, [E("symlink", "dead", link=str(outside / "nonexistent")),
                 E("file", "dead/.wh.victim")])
    outside_untouched(outside)
    assert not (outside / "nonexistent").exists()
    assert os.path.lexists(root / str(outside).lstrip("/") / "nonexistent" / "victim")


def test_symlink_loop_in_parent_refused(env):
    root, outside = env
    with pytest.raises(LayerError, match="too many levels|failed to apply"):
        apply(root, [E("symlink", "a", link="b"), E("symlink", "b", link="a"),
                     E("file", "a/x", b"1")])
    outside_untouched(outside)


# --- cases that must be refused ------------------------------------------
REFUSED = {
    "relative_dotdot": [E("file", "../pwned", b"x")],
    "nested_dotdot": [E("dir", "a"), E("file", "a/../../pwned", b"x")],
    "hardlink_absolute_host_file": [E("hardlink", "h", link="/etc/passwd")],
    "hardlink_up_and_out": [E("hardlink", "h", link="../outside/victim")],
    "hardlink_relative_long": [E("hardlink", "h", link="a/../../../../../../etc/passwd")],
    "hardlink_through_symlink_out": [E("symlink", "s", link="/OUTSIDE"),
                                     E("hardlink", "h", link="s/victim")],
    "hardlink_missing": [E("hardlink", "h", link="nonexistent")],
    "hardlink_to_dir": [E("dir", "d"), E("hardlink", "h", link="d")],
    "whiteout_parent_escape": [E("file", "../.wh.victim")],
    "whiteout_dotdot": [E("file", ".wh..")],
    "whiteout_dot": [E("dir", "d"), E("file", "d/.wh.")],
    "file_under_file": [E("file", "f", b"x"), E("file", "f/g", b"y")],
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(env, case):
    root, outside = env
    entries = []
    for ti, data in REFUSED[case]:
        if ti.linkname.startswith("/OUTSIDE"):
            ti.linkname = str(outside) + ti.linkname[len("/OUTSIDE"):]
        entries.append((ti, data))
    with pytest.raises(LayerError) as ei:
        apply(root, entries)
    assert "invalid layer" in str(ei.value) or "failed to apply" in str(ei.value)
    outside_untouched(outside)
    assert not (root.parent / "pwned").exists()


# --- broken streams --------------------------------------------------------
def good_tar(n=5, size=3000):
    return build([E("dir", "d")] + [E("file", f"d/f{i}", os.urandom(size)) for i in range(n)])


def test_truncated_in_data(env):
    root, _ = env
    raw = good_tar()
    with pytest.raises(LayerError, match="truncated"):
        apply_layer(io.BytesIO(raw[:4000]), str(root))


def test_truncated_in_header(env):
    root, _ = env
    raw = good_tar()
    # cut inside the header of the second file entry
    cut = raw.find(b"d/f1") + 100
    with pytest.raises(LayerError, match="truncated"):
        apply_layer(io.BytesIO(raw[:cut]), str(root))


def test_corrupt_header_in_the_middle(env):
    root, _ = env
    raw = bytearray(good_tar())
    i = raw.find(b"d/f2")
    raw[i:i + 4] = b"XXXX"  # breaks the header checksum
    with pytest.raises(LayerError, match="corrupt tar header"):
        apply_layer(io.BytesIO(bytes(raw)), str(root))


def test_garbage_is_not_a_tar(env):
    root, _ = env
    with pytest.raises(LayerError, match="not a tar"):
        apply_layer(io.BytesIO(b"this is not a tar archive" * 100), str(root))


def test_truncated_gzip(env):
    root, _ = env
    gz = gzip.compress(good_tar())
    with pytest.raises(LayerError, match="truncated|unexpected end"):
        apply_layer(io.BytesIO(gz[:len(gz) // 2]), str(root))


def test_corrupt_gzip(env):
    root, _ = env
    gz = bytearray(gzip.compress(good_tar()))
    gz[len(gz) // 2] ^= 0xFF
    gz[len(gz) // 2 + 1] ^= 0xFF
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(bytes(gz)), str(root))


def test_corrupt_zstd(env):
    import zstandard
    root, _ = env
    z = bytearray(zstandard.ZstdCompressor().compress(good_tar()))
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(bytes(z[: len(z) // 2])), str(root))


def test_digest_mismatch(env):
    root, _ = env
    raw = good_tar()
    with pytest.raises(errors.DigestMismatch):
        apply_layer(io.BytesIO(raw), str(root), expected_diff_id="sha256:" + "0" * 64)
    with pytest.raises(errors.DigestMismatch):
        apply_layer(io.BytesIO(gzip.compress(raw)), str(root),
                    expected_digest="sha256:" + hashlib.sha256(raw).hexdigest())


def test_decompression_bomb_bounded(env):
    root, _ = env
    bomb = build([E("file", "zeros", b"\0" * (8 << 20))], compress="gzip")
    assert len(bomb) < 100_000
    with pytest.raises(LayerError, match="maximum uncompressed size"):
        apply_layer(io.BytesIO(bomb), str(root), max_bytes=1 << 20)


def test_entry_count_bounded(env):
    root, _ = env
    raw = build([E("file", f"f{i}", b"") for i in range(50)])
    with pytest.raises(LayerError, match="more than 10 entries"):
        apply_layer(io.BytesIO(raw), str(root), max_entries=10)


def test_failed_apply_leaves_no_snapshot(tmp_path):
    st = SnapshotStore(str(tmp_path / "storage"))
    raw = good_tar()
    for bad in (raw[:4000], build([E("file", "ok", b"1"), E("file", "../x", b"2")])):
        with pytest.raises(LayerError):
            st.apply(None, io.BytesIO(bad))
    with pytest.raises(errors.DigestMismatch):
        st.apply(None, io.BytesIO(raw), diff_id="sha256:" + "1" * 64)
    assert st.list() == []
    assert os.listdir(st.snapdir) == [] and os.listdir(st.tmpdir) == []
    chain, res = st.apply(None, io.BytesIO(raw))
    assert st.list() == [chain] and chain == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.root  # mknod of a whiteout needs CAP_MKNOD
def test_whiteout_does_not_hide_same_layer_entry(env):
    root, _ = env
    apply(root, [E("file", "a", b"new"), E("file", ".wh.a"), E("file", ".wh.b"),
                 E("file", "b", b"again")])
    assert (root / "a").read_bytes() == b"new" and (root / "b").read_bytes() == b"again"


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_header_formats_long_names_and_times(tmp_path, fmt):
    """The fast ustar/GNU header path and tarfile's path (pax, GNU long
    names) give the same tree; directory mtimes are restored last."""
    import tarfile
    root = tmp_path / "r"
    root.mkdir()
    longdir = "/".join(["d" * 40] * 3)          # 122 chars: ustar prefix / long names
    fmt_id = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT,
              "pax": tarfile.PAX_FORMAT}[fmt]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt_id) as tf:
        for ti, data in [E("dir", longdir, mtime=1000000000),
                         E("file", longdir + "/f.txt", b"hello", mtime=1200000000),
                         E("symlink", longdir + "/ln", link="f.txt")]:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    res = apply_layer(io.BytesIO(buf.getvalue()), str(root))
    assert res.entries == 3
    assert (root / longdir / "f.txt").read_bytes() == b"hello"
    assert os.stat(root / longdir / "f.txt").st_mtime == 1200000000
    assert os.stat(root / longdir).st_mtime == 1000000000
    assert (root / longdir / "ln").read_bytes() == b"hello"


def test_truncated_inside_a_large_file(env):
    """The chunked path (files larger than one piece) stops cleanly too."""
    root, _ = env
    raw = build([E("file", "big", os.urandom(3 << 20)), E("file", "after", b"x")])
    with pytest.raises(LayerError, match="truncated"):
        apply_layer(io.BytesIO(raw[:(2 << 20)]), str(root))
    import threading
    assert not [t for t in threading.enumerate() if t.name in ("skiff-apply", "skiff-hash")]


def test_large_file_then_error_in_writer(env):
    """A filesystem error while a large file streams in ends the apply
    with a clear error and no thread left behind."""
    root, _ = env
    raw = build([E("file", "f", b"x"), E("file", "f/big", os.urandom(3 << 20))])
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(raw), str(root))
    import threading
    assert not [t for t in threading.enumerate() if t.name in ("skiff-apply", "skiff-hash")]
