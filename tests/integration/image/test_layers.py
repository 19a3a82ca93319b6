"""Layer apply keeps what image layers carry; layers shared between images
are stored once on disk (measured in allocated blocks)."""

import io
import os
import stat
import tarfile

import pytest

from skiff.storage.snapshots import disk_usage
from skiff.testing.images import make_image_archive
from tests.unit.image.tarbuild import build, entry as E


def test_apply_keeps_owners_modes_xattrs_links_devices_mtimes(images, tmp_path):
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    layer = build([
        E("dir", "bin", mode=0o755, mtime=1111111111),
        E("file", "bin/su", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0, mtime=1234567890),
        E("file", "bin/sg", b"x", mode=0o2711, uid=0, gid=42),
        E("file", "bin/ping", b"p", mode=0o755, uid=0, gid=0,
          pax={"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")}),
        E("file", "home/u/file", b"owned", mode=0o600, uid=1000, gid=1000),
        E("hardlink", "bin/su2", link="bin/su"),
        E("symlink", "bin/sh", link="/bin/busybox", uid=1000, gid=1000),
        E("char", "dev/null", mode=0o666, major=1, minor=3),
        E("block", "dev/loop9", mode=0o660, major=7, minor=9, gid=6),
        E("fifo", "run/fifo", mode=0o620),
        E("dir", "tmp", mode=0o1777),
        E("file", "etc/x", b"1", pax={"SCHILY.xattr.user.note": "kept"}),
    ], compress="gzip")
    digest, _ = images.storage.apply(None, io.BytesIO(layer))
    root = images.storage.path(digest)
    st = os.lstat(f"{root}/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 1234567890
    assert st.st_nlink == 2 and os.lstat(f"{root}/bin/su2").st_ino == st.st_ino
    st = os.lstat(f"{root}/bin/sg")
    assert stat.S_IMODE(st.st_mode) == 0o2711 and st.st_gid == 42
    assert os.getxattr(f"{root}/bin/ping", "security.capability") == cap
    st = os.lstat(f"{root}/home/u/file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o600)
    st = os.lstat(f"{root}/bin/sh")
    assert stat.S_ISLNK(st.st_mode) and st.st_uid == 1000
    assert os.readlink(f"{root}/bin/sh") == "/bin/busybox"
    st = os.lstat(f"{root}/dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and \
        os.minor(st.st_rdev) == 3 and stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(f"{root}/dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_gid == 6 and stat.S_IMODE(st.st_mode) == 0o660
    assert stat.S_ISFIFO(os.lstat(f"{root}/run/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(f"{root}/tmp").st_mode) == 0o1777
    assert os.lstat(f"{root}/bin").st_mtime == 1111111111  # dir mtime set after children
    assert os.getxattr(f"{root}/etc/x", "user.note") == b"kept"


def test_whiteouts_become_overlay_form(images):
    base = build([E("dir", "a"), E("file", "a/gone", b"1"), E("file", "a/kept", b"2"),
                  E("dir", "o"), E("file", "o/old", b"3")])
    top = build([E("file", "a/.wh.gone"), E("dir", "o"), E("file", "o/.wh..wh..opq"),
                 E("file", "o/new", b"4")])
    c1, _ = images.storage.apply(None, io.BytesIO(base))
    c2, _ = images.storage.apply(c1, io.BytesIO(top))
    up = images.storage.path(c2)
    st = os.lstat(f"{up}/a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(f"{up}/o", "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(f"{up}/o/.wh..wh..opq")
    images.storage.prepare("ctr-w", [c1, c2])
    m = images.storage.mount("ctr-w")
    assert sorted(os.listdir(f"{m}/a")) == ["kept"] and os.listdir(f"{m}/o") == ["new"]


def _make_dir(path, files):
    os.makedirs(path)
    for name, data in files.items():
        p = os.path.join(path, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return path


def test_shared_base_is_stored_once(images, tmp_path):
    MB = 1 << 20
    base = _make_dir(str(tmp_path / "base"), {"big/base.bin": os.urandom(8 * MB)})
    a = _make_dir(str(tmp_path / "a"), {"a.bin": os.urandom(1 * MB)})
    b = _make_dir(str(tmp_path / "b"), {"b.bin": os.urandom(1 * MB)})
    make_image_archive(str(tmp_path / "a.tar"), [base, a], repo_tags=["img-a:1"])
    make_image_archive(str(tmp_path / "b.tar"), [base, b], repo_tags=["img-b:1"])
    root = images.root
    empty = disk_usage(root)
    with open(tmp_path / "a.tar", "rb") as f:
        images.load(f)
    only_a = disk_usage(root) - empty
    with open(tmp_path / "b.tar", "rb") as f:
        images.load(f)
    both = disk_usage(root) - empty
    # image A alone: base + own layer, as blob and as unpacked snapshot
    assert 2 * 9 * MB <= only_a < 2 * 9 * MB + 2 * MB
    # adding B costs only B's own layer (blob + snapshot), not the base again
    assert 2 * 1 * MB <= both - only_a < 2 * 1 * MB + 1 * MB
    ia, ib = images.get("img-a:1"), images.get("img-b:1")
    assert ia.chain_ids[0] == ib.chain_ids[0]
    df = images.df()
    sizes = {i["RepoTags"][0]: i for i in df["Images"]}
    assert sizes["img-a:1"]["SharedSize"] == 8 * MB
    assert sizes["img-a:1"]["UniqueSize"] == 1 * MB
    assert df["LayersSize"] == 10 * MB
    # removing A frees A's layer only; B still runs on the shared base
    images.remove("img-a:1")
    assert images.storage.has(ib.chain_ids[0])
    assert not images.storage.has(ia.chain_ids[1])
    assert disk_usage(root) - empty < both - 2 * MB + 512 * 1024


def test_add_repo_digest_keeps_manifest_and_its_blobs(images, busybox):
    import json as _json

    import pytest as _pytest

    from skiff import errors as _errors

    # a manifest naming a blob only it references (as push's gzip layers)
    extra = images.content.add_bytes(b"compressed layer of a push")
    man = _json.dumps({"schemaVersion": 2, "config": {"digest": busybox.id},
                       "layers": [{"digest": extra, "size": 26}]}).encode()
    from skiff.image.content import digest_bytes
    md = digest_bytes(man)
    images.add_repo_digest("busybox:latest", f"127.0.0.1:5000/bb@{md}", manifest_bytes=man)
    info = images.inspect_json("busybox")
    assert f"127.0.0.1:5000/bb@{md}" in info["RepoDigests"]
    assert images.resolve(f"127.0.0.1:5000/bb@{md}") == busybox.id
    # garbage collection keeps the manifest and every blob it names
    images.content.gc(images._referenced_blobs())
    assert images.content.has(md) and images.content.has(extra)
    with _pytest.raises(_errors.InvalidArgument):
        images.add_repo_digest("busybox", "127.0.0.1:5000/bb:tag")
    with _pytest.raises(_errors.SkiffError):   # bytes that are not that digest
        images.add_repo_digest("busybox", f"127.0.0.1:5000/bb@sha256:{'0' * 64}",
                               manifest_bytes=man)
