"""Build layer tars in code (containerd's tartest style)."""

import gzip
import io
import os
import tarfile


def entry(kind, name, data=b"", link="", mode=None, uid=None, gid=None, pax=None,
          major=0, minor=0, mtime=1700000000):
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid = os.geteuid() if uid is None else uid
    ti.gid = os.getegid() if gid is None else gid
    ti.mtime = mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = major, minor
    if pax:
        ti.pax_headers = dict(pax)
    if kind == "file":
        ti.size = len(data)
    return ti, (data if kind == "file" else None)


def build(entries, compress=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compress == "gzip":
        return gzip.compress(raw)
    if compress == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(raw)
    return raw
