"""Directory → tar: a container's overlayfs upper directory into a layer
(commit), or a whole root filesystem into a tar (export, import tests).

Overlay's forms become OCI whiteouts: a character device 0/0 ``x`` →
an empty ``.wh.x``; a directory with ``trusted.overlay.opaque=y`` → the
directory plus ``dir/.wh..wh..opq``. Overlay's private xattrs
(``trusted.overlay.*``) are never written. Owners are numeric (no user name
lookups: NSS must never run against a container's files); hard links inside
the tree are kept as hard links; mtimes, modes, xattrs, devices and symlinks
are kept.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile

from skiff.image.archive.apply import OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX

_SKIP_XATTR = ("trusted.overlay.", "user.overlay.")


class _HashingWriter:
    """Counts and hashes what tarfile writes (the diff ID of the layer)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def tell(self):
        return self.n

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _xattrs(path: str) -> dict:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if n.startswith(_SKIP_XATTR):
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + n] = v.decode("utf-8", "surrogateescape")
    return out


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def write_tree(root: str, fileobj, *, whiteouts: bool = False) -> tuple[str, int]:
    """Write the tree under ``root`` as a PAX tar to ``fileobj``.

    With ``whiteouts=True`` (an overlay upper dir) overlay whiteouts and
    opaque dirs become OCI whiteout entries. Returns (sha256 of the tar,
    its size)."""
    out = _HashingWriter(fileobj)
    tf = tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                         encoding="utf-8", errors="surrogateescape")
    inodes: dict[tuple[int, int], str] = {}

    def add(path: str, arc: str) -> bool:
        st = os.lstat(path)
        mode = st.st_mode
        ti = tarfile.TarInfo(arc)
        ti.mode = stat.S_IMODE(mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 1_000_000_000  # whole seconds, as moby writes
        fobj = None
        is_dir = False
        if whiteouts and stat.S_ISCHR(mode) and st.st_rdev == 0:
            d, base = os.path.split(arc)
            wt = tarfile.TarInfo(os.path.join(d, WHITEOUT_PREFIX + base))
            wt.type = tarfile.REGTYPE
            wt.mode, wt.size, wt.uname, wt.gname = 0, 0, "", ""
            wt.mtime = ti.mtime
            tf.addfile(wt)
            return False
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in inodes:
                ti.type = tarfile.LNKTYPE
                ti.linkname = inodes[key]
            else:
                if st.st_nlink > 1:
                    inodes[key] = arc
                ti.type = tarfile.REGTYPE
                ti.size = st.st_size
                fobj = open(path, "rb")
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            is_dir = True
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            return False  # sockets are not archived
        x = _xattrs(path)
        if x:
            ti.pax_headers = x
        try:
            tf.addfile(ti, fobj)
        finally:
            if fobj:
                fobj.close()
        if is_dir and whiteouts and _is_opaque(path):
            op = tarfile.TarInfo(os.path.join(arc, WHITEOUT_OPAQUE))
            op.mode, op.size, op.uname, op.gname, op.mtime = 0, 0, "", "", ti.mtime
            tf.addfile(op)
        return is_dir

    root_dev = os.lstat(root).st_dev

    def walk(dirpath: str, arcdir: str) -> None:
        with os.scandir(dirpath) as it:
            names = sorted(e.name for e in it)
        for name in names:
            p = os.path.join(dirpath, name)
            arc = name if not arcdir else f"{arcdir}/{name}"
            # like tar --one-file-system: a mount point inside (a volume)
            # is archived as an empty directory
            if add(p, arc) and os.lstat(p).st_dev == root_dev:
                walk(p, arc)

    walk(root, "")
    tf.close()
    return out.digest, out.n
