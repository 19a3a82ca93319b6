"""Layer apply over awkward streams: headers and file data split across
read boundaries at every odd offset, GNU and pax headers, tar checksums
(unsigned, signed, wrong) -- the fast header path must accept and refuse
exactly what tarfile does."""

import hashlib
import io
import os
import tarfile

import pytest

from skiff.image.archive.apply import apply_layer
from skiff.image.archive.compress import LayerError

from .tarbuild import build, entry as E


class Trickle(io.RawIOBase):
    """A file object that never returns more than ``step`` bytes a read."""

    def __init__(self, data: bytes, step: int):
        self.data = data
        self.pos = 0
        self.step = step

    def readable(self):
        return True

    def read(self, size=-1):
        n = self.step if size is None or size < 0 else min(size, self.step)
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b


def _layer(fmt=tarfile.PAX_FORMAT) -> tuple[bytes, dict]:
    files = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in [E("dir", "a"), E("dir", "a/b", mode=0o750)]:
            tf.addfile(ti, None)
        sizes = [0, 1, 511, 512, 513, 4095, 70000, 300_000, 1_100_000]
        for i, size in enumerate(sizes):
            data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
            data = data[:size]
            name = f"a/b/f{i}" if i % 2 else f"a/{'long' * 40}{i}"
            ti, _ = E("file", name, data, mode=0o640 + i % 8)
            tf.addfile(ti, io.BytesIO(data))
            files[name] = (data, 0o640 + i % 8)
        tf.addfile(E("symlink", "a/l", link="b/f1")[0], None)
        tf.addfile(E("hardlink", "a/h", link="a/b/f3")[0], None)
    return buf.getvalue(), files


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("step", [1 << 20, 4096, 700, 37])
def test_entries_split_across_reads(tmp_path, fmt, step):
    raw, files = _layer(fmt)
    dest = tmp_path / "root"
    dest.mkdir()
    res = apply_layer(Trickle(raw, step), str(dest))
    assert res.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert res.digest == res.diff_id and res.size == len(raw)
    for name, (data, mode) in files.items():
        p = dest / name
        assert p.read_bytes() == data, name
        assert os.stat(p).st_mode & 0o7777 == mode
        assert os.stat(p).st_mtime == 1700000000
    assert os.readlink(dest / "a/l") == "b/f1"
    assert os.stat(dest / "a/h").st_ino == os.stat(dest / "a/b/f3").st_ino
    assert os.stat(dest / "a/b").st_mode & 0o7777 == 0o750


@pytest.mark.parametrize("step", [4096, 333])
def test_gzip_split_across_reads(tmp_path, step):
    raw, files = _layer()
    import gzip
    blob = gzip.compress(raw)
    dest = tmp_path / "root"
    dest.mkdir()
    res = apply_layer(Trickle(blob, step), str(dest))
    assert res.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert res.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    for name, (data, _mode) in files.items():
        assert (dest / name).read_bytes() == data


def _with_checksum(raw: bytes, index: int, value: int) -> bytes:
    """The tar with header block ``index``'s checksum field set to value."""
    b = bytearray(raw)
    o = index * 512
    b[o + 148:o + 156] = b"%06o\0 " % value
    return bytes(b)


def _sums(block: bytes) -> tuple[int, int]:
    blk = block[:148] + b" " * 8 + block[156:512]
    unsigned = sum(blk)
    signed = sum(x - 256 if x >= 128 else x for x in blk)
    return unsigned, signed


def _gnu_high_bytes_layer() -> bytes:
    # a GNU header (no pax) whose name has bytes >= 0x80: the signed and
    # unsigned sums differ
    ti, data = E("file", "caf\u00e9-\u00fc", b"hello")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_signed_checksum_accepted_like_tarfile(tmp_path):
    raw = _gnu_high_bytes_layer()
    unsigned, signed = _sums(raw[:512])
    assert unsigned != signed
    raw = _with_checksum(raw, 0, signed)
    dest = tmp_path / "root"
    dest.mkdir()
    apply_layer(io.BytesIO(raw), str(dest))
    assert (dest / "caf\u00e9-\u00fc").read_bytes() == b"hello"


def test_wrong_checksum_refused(tmp_path):
    raw = _gnu_high_bytes_layer()
    unsigned, _signed = _sums(raw[:512])
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(LayerError, match="not a tar stream|corrupt"):
        apply_layer(io.BytesIO(_with_checksum(raw, 0, unsigned + 1)), str(dest))
    assert not os.path.exists(dest / "caf\u00e9-\u00fc")


def test_base256_numbers_go_through_tarfile(tmp_path):
    # GNU base-256 uid (too large for octal): decoded as tarfile does
    ti, data = E("file", "big-uid", b"x", uid=0o7777777 + 5)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(data))
    assert buf.getvalue()[108] & 0x80  # the uid field is base-256
    dest = tmp_path / "root"
    dest.mkdir()
    if os.geteuid() != 0:
        with pytest.raises(LayerError):
            apply_layer(io.BytesIO(buf.getvalue()), str(dest))
        return
    apply_layer(io.BytesIO(buf.getvalue()), str(dest))
    assert os.stat(dest / "big-uid").st_uid == 0o7777777 + 5


def test_zero_block_ends_but_data_that_looks_zero_does_not(tmp_path):
    # a file whose content is all zero bytes, a whole number of blocks,
    # followed by another entry: the zeros are data, not the end marker
    raw = build([E("file", "zeros", bytes(1024)), E("file", "after", b"!")])
    dest = tmp_path / "root"
    dest.mkdir()
    res = apply_layer(Trickle(raw, 512), str(dest))
    assert (dest / "zeros").read_bytes() == bytes(1024)
    assert (dest / "after").read_bytes() == b"!"
    assert res.entries == 2
