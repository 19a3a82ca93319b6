"""docker cp's archive helpers: paths resolve inside the container root."""

import base64
import io
import json
import os
import tarfile

import pytest

from skiff import errors
from skiff.engine import archive


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    (root / "etc/hostname").write_text("inside\n")
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/a.txt").write_text("A" * 3000)
    (root / "dir/sub/b.txt").write_text("B")
    os.link(root / "dir/a.txt", root / "dir/hard.txt")
    os.symlink("a.txt", root / "dir/rel-link")
    # hostile links: to / and to the host directory by absolute path
    os.symlink("/", root / "evil")
    os.symlink(str(outside), root / "escape")
    os.symlink("../../../../../../../../", root / "dotdot")
    return root, outside


def fs(root):
    return archive.ContainerFS(str(root))


def names(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}, tf


def read_tar(fsys, path):
    st, gen = archive.iter_archive(fsys, path)
    data = b"".join(gen)
    tf = tarfile.open(fileobj=io.BytesIO(data))
    return st, tf


def test_stat_shapes(layout):
    root, _ = layout
    st = archive.stat_path(fs(root), "/dir")
    assert st["name"] == "dir" and st["mode"] & (1 << 31)
    st = archive.stat_path(fs(root), "/dir/a.txt")
    assert st["size"] == 3000 and not st["mode"] & (1 << 31)
    st = archive.stat_path(fs(root), "/dir/rel-link")
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/dir/a.txt"
    st = archive.stat_path(fs(root), "/escape")
    assert st["linkTarget"] == str(layout[1])  # a path inside the container
    assert st["mtime"].endswith("Z")
    hdr = json.loads(base64.b64decode(archive.encode_stat(st)))
    assert hdr == st
    with pytest.raises(errors.NotFound, match="Could not find the file /nope in container c1"):
        archive.stat_path(fs(root), "/nope", "c1")


def test_get_archive_directory(layout):
    root, _ = layout
    st, tf = read_tar(fs(root), "/dir")
    m = {x.name: x for x in tf.getmembers()}
    assert set(m) == {"dir", "dir/a.txt", "dir/hard.txt", "dir/rel-link", "dir/sub",
                      "dir/sub/b.txt"}
    assert tf.extractfile(m["dir/a.txt"]).read() == b"A" * 3000
    assert m["dir/hard.txt"].islnk() and m["dir/hard.txt"].linkname == "dir/a.txt"
    assert m["dir/rel-link"].issym() and m["dir/rel-link"].linkname == "a.txt"


def test_get_archive_never_reads_host(layout):
    root, outside = layout
    # through a symlink to / : the container's own /etc/hostname, not the host's
    st, tf = read_tar(fs(root), "/evil/etc/hostname")
    assert tf.extractfile(tf.getmembers()[0]).read() == b"inside\n"
    # an absolute symlink to a host path resolves inside the root: not found
    with pytest.raises(errors.NotFound):
        archive.iter_archive(fs(root), "/escape/secret")
    with pytest.raises(errors.NotFound):
        archive.iter_archive(fs(root), "/dotdot/" + str(outside) + "/secret")
    # the link itself is archived as a link
    st, tf = read_tar(fs(root), "/escape")
    (m,) = tf.getmembers()
    assert m.issym() and m.linkname == str(outside)


def _tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "lnk":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o640
                tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_put_archive(layout):
    root, _ = layout
    archive.extract_archive(fs(root), "/dir", _tar([
        ("new", "dir", None), ("new/f.txt", "file", b"hello"),
        ("new/l", "sym", "f.txt"), ("new/h", "lnk", "new/f.txt")]))
    assert (root / "dir/new/f.txt").read_bytes() == b"hello"
    assert oct((root / "dir/new/f.txt").stat().st_mode & 0o777) == "0o640"
    assert os.readlink(root / "dir/new/l") == "f.txt"
    assert (root / "dir/new/h").stat().st_ino == (root / "dir/new/f.txt").stat().st_ino
    # gzip input is decoded in-process
    raw = _tar([("z.txt", "file", b"zz")]).getvalue()
    import gzip
    archive.extract_archive(fs(root), "/", io.BytesIO(gzip.compress(raw)))
    assert (root / "z.txt").read_bytes() == b"zz"


def test_put_archive_cannot_escape(layout):
    root, outside = layout
    # destination through a symlink to a host path: resolved inside the root
    with pytest.raises(errors.NotFound):
        archive.extract_archive(fs(root), "/escape", _tar([("pwn", "file", b"x")]))
    # members walking through hostile links or '..'
    archive.extract_archive(fs(root), "/", _tar([
        ("evil/pwn1", "file", b"1"),
        ("../../../../pwn2", "file", b"2"),
        ("dotdot/pwn3", "file", b"3"),
    ]))
    assert (root / "pwn1").read_bytes() == b"1"
    assert (root / "pwn2").read_bytes() == b"2"
    assert (root / "pwn3").read_bytes() == b"3"
    # escape -> <outside path>, which does not exist inside the root: refused
    with pytest.raises(errors.InvalidArgument):
        archive.extract_archive(fs(root), "/", _tar([("escape/pwn4", "file", b"4")]))
    # once that path exists inside the root, the write lands there
    os.makedirs(root / str(outside).lstrip("/"))
    archive.extract_archive(fs(root), "/", _tar([("escape/pwn4", "file", b"4")]))
    assert (root / str(outside).lstrip("/") / "pwn4").read_bytes() == b"4"
    assert os.listdir(outside) == ["secret"]
    # a member replacing a symlink replaces the link, it does not write through it
    os.symlink(str(outside / "secret"), root / "victim")
    archive.extract_archive(fs(root), "/", _tar([("victim", "file", b"mine")]))
    assert (outside / "secret").read_text() == "host secret\n"
    assert (root / "victim").read_bytes() == b"mine"


def test_put_archive_overwrite_rules(layout):
    root, _ = layout
    with pytest.raises(errors.InvalidArgument, match="cannot overwrite directory"):
        archive.extract_archive(fs(root), "/", _tar([("dir", "file", b"x")]),
                                no_overwrite_dir_non_dir=True)
    with pytest.raises(errors.InvalidArgument, match="extraction point is not a directory"):
        archive.extract_archive(fs(root), "/etc/hostname", _tar([("x", "file", b"x")]))
    with pytest.raises(errors.InvalidArgument, match="invalid tar"):
        archive.extract_archive(fs(root), "/", io.BytesIO(b"not a tar at all" * 100))


def test_stopped_container_mounts(layout, tmp_path):
    root, _ = layout
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v.txt").write_text("volume")
    f = archive.ContainerFS(str(root), mounts=[("/data", str(vol))])
    st, tf = read_tar(f, "/data/v.txt")
    assert tf.extractfile(tf.getmembers()[0]).read() == b"volume"
    archive.extract_archive(f, "/data", _tar([("w.txt", "file", b"w")]))
    assert (vol / "w.txt").read_bytes() == b"w"


def test_dir_dot_rebases_to_dot(layout):
    root, _ = layout
    st, tf = read_tar(fs(root), "/dir/.")
    assert st["name"] == "."
    names = set(tf.getnames())
    assert "./a.txt" in names and "./sub/b.txt" in names


def test_running_root_must_be_the_containers(layout):
    root, _ = layout
    # our own /proc/self/root is "/", not the container's rootfs: refused
    f = archive.ContainerFS(str(root), pid=os.getpid())
    with pytest.raises(errors.Conflict, match="not running"):
        archive.stat_path(f, "/etc")
    ok = archive.ContainerFS("/", pid=os.getpid())
    assert archive.stat_path(ok, "/proc")["name"] == "proc"


def test_large_file_streams_in_chunks(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    with open(root / "big", "wb") as f:
        f.truncate(32 << 20)
    st, gen = archive.iter_archive(archive.ContainerFS(str(root)), "/big")
    sizes = [len(c) for c in gen]
    assert max(sizes) <= (2 << 20) + 64 * 1024  # bounded, not the whole file
    assert sum(sizes) >= 32 << 20
