"""Copying files in and out of a container's root (``docker cp``).

Every path is resolved *inside* the container's root, relative to a
directory fd, never as a host path:

- ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` resolves a path as if
  the root fd were "/": absolute symlinks and ``..`` cannot climb out (the
  CVE-2018-15664 class: no string path is ever resolved on the host and
  opened later, so swapping a component for a symlink gains nothing);
- walking a tree uses ``os.scandir(fd)`` and single-component ``openat`` with
  ``O_NOFOLLOW``;
- entries written from a tar are created relative to their parent's fd with
  one name component; symlinks are never followed for the final component.

Nothing is loaded from the container: no NSS lookups (owners stay numeric),
no decompressor or helper binary (CVE-2019-14271, CVE-2026-41567):
compressed uploads are decoded by Python's own gzip/bz2/lzma.

For a running container the root fd is ``/proc/<pid>/root``, which sees the
container's own mounts (volumes, binds, tmpfs); for a stopped one it is the
container's rootfs directory, with volume and bind mounts mapped onto their
sources by ``ContainerFS``.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import stat as _stat
import tarfile
from datetime import datetime, timezone

from skiff import errors
from skiff import sys as k


def openat2(dirfd: int, path: str, flags: int, mode: int = 0,
            resolve: int = k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS) -> int:
    """skiff.sys.openat2, confined to ``dirfd`` as its root by default, and
    retried when the kernel asks (EAGAIN: a rename raced the lookup)."""
    while True:
        try:
            return k.openat2(dirfd, path, flags, mode, resolve)
        except (BlockingIOError, InterruptedError):
            continue


def open_in_root(root: str | int, path: str, flags: int = os.O_RDONLY, mode: int = 0) -> int:
    """Open ``path`` as seen from inside ``root`` (a directory path or fd)."""
    if isinstance(root, int):
        return openat2(root, path.lstrip("/") or ".", flags, mode)
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return openat2(rfd, path.lstrip("/") or ".", flags, mode)
    finally:
        os.close(rfd)


# ----------------------------------------------------------- Go FileMode
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_filemode(st_mode: int) -> int:
    """Go's os.FileMode bits for a stat mode (what the docker CLI decodes)."""
    m = _stat.S_IMODE(st_mode) & 0o777
    if st_mode & _stat.S_ISUID:
        m |= _GO_SETUID
    if st_mode & _stat.S_ISGID:
        m |= _GO_SETGID
    if st_mode & _stat.S_ISVTX:
        m |= _GO_STICKY
    if _stat.S_ISDIR(st_mode):
        m |= _GO_DIR
    elif _stat.S_ISLNK(st_mode):
        m |= _GO_SYMLINK
    elif _stat.S_ISFIFO(st_mode):
        m |= _GO_PIPE
    elif _stat.S_ISSOCK(st_mode):
        m |= _GO_SOCKET
    elif _stat.S_ISCHR(st_mode):
        m |= _GO_DEVICE | _GO_CHARDEV
    elif _stat.S_ISBLK(st_mode):
        m |= _GO_DEVICE
    return m


def _rfc3339(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    frac = f"{dt.microsecond * 1000:09d}".rstrip("0")
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def encode_stat(st: dict) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


# ---------------------------------------------------------- ContainerFS
class ContainerFS:
    """A container's filesystem as seen from inside it.

    ``root``: the container's rootfs directory (a mounted overlay).
    ``pid``: the PID of a running container's process (then its
    /proc/<pid>/root is used, which sees its mounts; it must be the same
    directory as ``root``, so a recycled PID is refused).
    ``mounts``: for a stopped container, ``[(destination, source)]`` of its
    bind and volume mounts, so paths under them map onto the host source.
    """

    def __init__(self, root: str, pid: int | None = None, mounts=()):
        self.root = root
        self.pid = pid
        self.mounts = sorted(((posixpath.normpath(d), s) for d, s in mounts or ()),
                             key=lambda m: -len(m[0]))

    def _base(self, path: str) -> tuple[str, str]:
        """(directory to use as root, path relative to it)."""
        path = posixpath.normpath("/" + path.lstrip("/"))
        if self.pid:
            return f"/proc/{self.pid}/root", path
        for dest, src in self.mounts:
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                return src, "/" + path[len(dest):].lstrip("/")
        return self.root, path

    def open_root(self, path: str) -> tuple[int, str]:
        base, rel = self._base(path)
        try:
            fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if self.pid:
                raise errors.Conflict("container is not running")
            raise errors.Internal(f"cannot open container root: {e.strerror}")
        if self.pid and self.root not in ("", "/"):
            # the PID may have been reused since it was read: the root we
            # opened must be the container's own rootfs, or nothing is done
            try:
                st, want = os.fstat(fd), os.stat(self.root)
            except OSError:
                os.close(fd)
                raise errors.Conflict("container is not running")
            if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                os.close(fd)
                raise errors.Conflict("container is not running")
        return fd, rel


def _split_for_stat(path: str) -> tuple[str, str]:
    """Docker's rule: the last component of a path is not followed unless
    the path ends in a separator or '/.'."""
    if path.endswith("/") or path.endswith("/.") or path in ("", "."):
        return path, ""
    parent, base = posixpath.split(path)
    return parent or "/", base


def _lstat_at(rootfd: int, path: str):
    """(fd of the parent dir, final name, lstat result) for ``path`` inside
    the root; the final component is not followed."""
    parent, name = _split_for_stat(path)
    pfd = openat2(rootfd, parent.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        if name in ("", "."):
            st = os.fstat(pfd)
        else:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except BaseException:
        os.close(pfd)
        raise
    return pfd, name, st


def _not_found(path: str, cid: str):
    return errors.NotFound(f"Could not find the file {path} in container {cid}")


def _os_error(e: OSError, path: str, cid: str):
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return _not_found(path, cid)
    if e.errno == errno.ELOOP:
        return errors.InvalidArgument(f"too many levels of symbolic links: {path}")
    return errors.Internal(f"{path}: {e.strerror}")


def stat_path(fs: ContainerFS, path: str, cid: str = "") -> dict:
    """Docker's ContainerPathStat for ``path``."""
    rootfd, rel = fs.open_root(path)
    try:
        pfd, name, st = _lstat_at(rootfd, rel)
        try:
            link = ""
            if _stat.S_ISLNK(st.st_mode):
                # the resolved absolute target, inside the container
                link = resolve_link(rootfd, rel)
        finally:
            os.close(pfd)
    except OSError as e:
        raise _os_error(e, path, cid)
    finally:
        os.close(rootfd)
    if path.endswith("/.") or path == ".":
        base = "."
    else:
        base = posixpath.basename(posixpath.normpath("/" + path.lstrip("/"))) or "/"
    return {"name": base, "size": st.st_size, "mode": go_filemode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}


def resolve_link(rootfd: int, path: str, limit: int = 40) -> str:
    """The absolute in-container path a symlink finally points to, resolved
    logically (absolute targets start at the container's root)."""
    path = "/" + "/".join(_clean_member(path))
    for _ in range(limit):
        parent, name = posixpath.split(path)
        try:
            pfd = openat2(rootfd, parent.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return path
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not _stat.S_ISLNK(st.st_mode):
                return path
            target = os.readlink(name, dir_fd=pfd)
        except OSError:
            return path
        finally:
            os.close(pfd)
        path = "/" + "/".join(_clean_member(posixpath.join(parent, target)))
    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)


# ---------------------------------------------------------- tar out (GET)
class _FdReader:
    def __init__(self, fd):
        self.fd = fd

    def read(self, n=-1):
        if n is None or n < 0:
            chunks = []
            while True:
                b = os.read(self.fd, 1 << 20)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        return os.read(self.fd, n)


class _Sink:
    """A file-like object tarfile writes into; chunks are collected."""

    def __init__(self):
        self.chunks = []
        self.size = 0

    def write(self, b):
        self.chunks.append(bytes(b))
        self.size += len(b)
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks = []
        self.size = 0
        return out

    def flush(self):
        pass

    def tell(self):
        return 0


def _tarinfo(name: str, st, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = _stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    m = st.st_mode
    if _stat.S_ISDIR(m):
        ti.type = tarfile.DIRTYPE
    elif _stat.S_ISLNK(m):
        ti.type = tarfile.SYMTYPE
        ti.linkname = link
    elif _stat.S_ISREG(m):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    elif _stat.S_ISCHR(m) or _stat.S_ISBLK(m):
        ti.type = tarfile.CHRTYPE if _stat.S_ISCHR(m) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif _stat.S_ISFIFO(m):
        ti.type = tarfile.FIFOTYPE
    else:
        return None
    return ti


def iter_archive(fs: ContainerFS, path: str, cid: str = "", chunk: int = 1 << 20):
    """(stat dict, generator of tar bytes) for ``path`` inside the container:
    the entry is named by the path's base name, as ``docker cp`` expects."""
    st_info = stat_path(fs, path, cid)
    rootfd, rel = fs.open_root(path)
    try:
        pfd, name, st = _lstat_at(rootfd, rel)
    except OSError as e:
        os.close(rootfd)
        raise _os_error(e, path, cid)
    os.close(rootfd)
    # entries are named after the requested path's base ("." for "dir/.",
    # which docker cp uses to copy a directory's content)
    top = st_info["name"]
    if top == "/":
        top = "."

    def gen():
        sink = _Sink()
        tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)
        hardlinks = {}
        try:
            yield from _add(tf, sink, pfd, name, top, hardlinks)
            tf.close()
            yield sink.take()
        finally:
            os.close(pfd)

    def _add(tf, sink, dfd, entry, arcname, hardlinks):
        try:
            st = os.fstat(dfd) if entry in ("", ".") else \
                os.stat(entry, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        link = os.readlink(entry, dir_fd=dfd) if _stat.S_ISLNK(st.st_mode) else ""
        ti = _tarinfo(arcname, st, link)
        if ti is None:
            return
        if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in hardlinks:
                ti.type = tarfile.LNKTYPE
                ti.linkname = hardlinks[key]
                ti.size = 0
                tf.addfile(ti)
                if sink.size >= chunk:
                    yield sink.take()
                return
            hardlinks[key] = arcname
        if ti.type == tarfile.REGTYPE:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd) \
                if entry not in ("", ".") else None
            if fd is None:
                return
            try:
                ti.size = os.fstat(fd).st_size
                yield from _add_file(tf, ti, fd, sink, chunk)
                if sink.size:
                    yield sink.take()
            finally:
                os.close(fd)
            return
        if ti.type == tarfile.DIRTYPE:
            ti.name = arcname.rstrip("/") + "/"
            tf.addfile(ti)
            if entry in ("", "."):
                sub = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            else:
                sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                              os.O_CLOEXEC, dir_fd=dfd)
            try:
                names = sorted(e.name for e in os.scandir(sub))
                for n in names:
                    yield from _add(tf, sink, sub, n, arcname.rstrip("/") + "/" + n,
                                    hardlinks)
            finally:
                os.close(sub)
            if sink.size >= chunk:
                yield sink.take()
            return
        tf.addfile(ti)
        if sink.size >= chunk:
            yield sink.take()

    return st_info, gen()


def _add_file(tf, ti, fd, sink, chunk):
    """tarfile.addfile with the content read from ``fd`` (size fixed at the
    header; a file that shrinks meanwhile is padded, one that grows cut)."""
    size = ti.size
    buf = ti.tobuf(tf.format, tf.encoding, tf.errors)
    tf.fileobj.write(buf)
    tf.offset += len(buf)
    left = size
    while left > 0:
        b = os.read(fd, min(1 << 20, left))
        if not b:
            b = b"\0" * left
        tf.fileobj.write(b)
        left -= len(b)
        if sink.size >= chunk:
            yield sink.take()
    blocks, rem = divmod(size, tarfile.BLOCKSIZE)
    if rem:
        tf.fileobj.write(b"\0" * (tarfile.BLOCKSIZE - rem))
        blocks += 1
    tf.offset += blocks * tarfile.BLOCKSIZE


# ----------------------------------------------------------- tar in (PUT)
def _open_stream(fileobj):
    """A tarfile reader for plain, gzip, bzip2 or xz input, decoded in
    Python (never by a program from the container)."""
    try:
        return tarfile.open(fileobj=fileobj, mode="r|*")
    except tarfile.TarError as e:
        raise errors.InvalidArgument(f"invalid tar archive: {e}")


def _mkdirs(rootfd: int, base: str, parts: list[str], uid_gid) -> int:
    """An O_PATH fd for directory ``base/parts...`` inside the root,
    creating missing components. Every lookup goes through openat2 with
    RESOLVE_IN_ROOT, so symlinks (also ones swapped in meanwhile) resolve
    as inside a chroot of the container's root; creation happens relative
    to the parent's fd with a single name."""
    cur = base.strip("/")
    fd = openat2(rootfd, cur or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        for p in parts:
            if p in ("", "."):
                continue
            nxt = (cur + "/" + p).lstrip("/")
            try:
                nfd = openat2(rootfd, nxt, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(p, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                if uid_gid:
                    os.chown(p, *uid_gid, dir_fd=fd, follow_symlinks=False)
                nfd = openat2(rootfd, nxt, os.O_PATH | os.O_DIRECTORY)
            os.close(fd)
            fd, cur = nfd, nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_at(dfd: int, name: str):
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if _stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=dfd)
        try:
            for e in os.scandir(sub):
                _remove_at(sub, e.name)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def extract_archive(fs: ContainerFS, path: str, fileobj, cid: str = "",
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False,
                    owner=(0, 0)) -> None:
    """Unpack a tar (``PUT /containers/{id}/archive``) into directory
    ``path`` inside the container."""
    rootfd, rel = fs.open_root(path)
    try:
        try:
            dest = openat2(rootfd, rel.lstrip("/") or ".", os.O_PATH)
            st = os.fstat(dest)
        except OSError as e:
            raise _os_error(e, path, cid)
        if not _stat.S_ISDIR(st.st_mode):
            os.close(dest)
            raise errors.InvalidArgument("extraction point is not a directory")
        os.close(dest)
        # every lookup below resolves inside the root, so the logical path
        # of the destination is enough
        _extract(rootfd, rel, fileobj, no_overwrite_dir_non_dir, copy_uid_gid, owner)
    finally:
        os.close(rootfd)


def _clean_member(name: str) -> list[str]:
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return parts


def _extract(rootfd, base, fileobj, no_overwrite, copy_uid_gid, owner):
    tf = _open_stream(fileobj)
    dirs = []  # (parts, tarinfo): modes and times applied after children
    ti = None
    try:
        for ti in tf:
            parts = _clean_member(ti.name)
            if not parts:
                continue
            ug = (ti.uid, ti.gid) if copy_uid_gid else tuple(owner)
            pfd = _mkdirs(rootfd, base, parts[:-1], ug)
            name = parts[-1]
            try:
                try:
                    cur = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    cur = None
                if cur is not None:
                    is_dir = _stat.S_ISDIR(cur.st_mode)
                    if no_overwrite and is_dir and not ti.isdir():
                        raise errors.InvalidArgument(
                            f'cannot overwrite directory "{"/".join(parts)}" with '
                            f'non-directory "{ti.name}"')
                    if no_overwrite and not is_dir and ti.isdir():
                        raise errors.InvalidArgument(
                            f'cannot overwrite non-directory "{"/".join(parts)}" with '
                            f'directory "{ti.name}"')
                    if not (is_dir and ti.isdir()):
                        _remove_at(pfd, name)
                _create(rootfd, base, pfd, name, ti, tf, ug)
                if ti.isdir():
                    dirs.append((parts, ti))
            finally:
                os.close(pfd)
        for parts, ti in reversed(dirs):
            try:
                pfd = _mkdirs(rootfd, base, parts[:-1], None)
            except OSError:
                continue
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                             os.O_CLOEXEC, dir_fd=pfd)
                try:
                    os.fchmod(fd, ti.mode & 0o7777)
                    os.utime(fd, (ti.mtime, ti.mtime))
                finally:
                    os.close(fd)
            except OSError:
                pass
            finally:
                os.close(pfd)
    except tarfile.TarError as e:
        raise errors.InvalidArgument(f"invalid tar archive: {e}")
    except (FileNotFoundError, NotADirectoryError, FileExistsError) as e:
        raise errors.InvalidArgument(
            f"error while extracting {getattr(ti, 'name', '')}: {e.strerror.lower()}")
    finally:
        tf.close()


def _create(rootfd, base, pfd, name, ti, tf, ug):
    if ti.isdir():
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            pass
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=pfd)
        try:
            if ug:
                os.fchown(fd, *ug)
        finally:
            os.close(fd)
        return
    if ti.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                     os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(ti)
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                os.write(fd, b)
            if ug:
                os.fchown(fd, *ug)
            os.fchmod(fd, ti.mode & 0o7777)
            os.utime(fd, (ti.mtime, ti.mtime))
        finally:
            os.close(fd)
        return
    if ti.issym():
        os.symlink(ti.linkname, name, dir_fd=pfd)
    elif ti.islnk():
        tparts = _clean_member(ti.linkname)
        if not tparts:
            raise errors.InvalidArgument(f"invalid hardlink target: {ti.linkname}")
        tfd = _mkdirs(rootfd, base, tparts[:-1], None)
        try:
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            os.close(tfd)
        return
    elif ti.ischr() or ti.isblk():
        kind = _stat.S_IFCHR if ti.ischr() else _stat.S_IFBLK
        os.mknod(name, kind | (ti.mode & 0o7777), os.makedev(ti.devmajor, ti.devminor),
                 dir_fd=pfd)
    elif ti.isfifo():
        os.mkfifo(name, ti.mode & 0o7777, dir_fd=pfd)
    else:
        return
    if ug:
        os.chown(name, *ug, dir_fd=pfd, follow_symlinks=False)
    try:
        os.utime(name, (ti.mtime, ti.mtime), dir_fd=pfd, follow_symlinks=False)
    except OSError:
        pass
