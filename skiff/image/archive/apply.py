"""Safe layer apply: a layer tar into an (empty) snapshot directory.

tarfile is used only to parse headers. Every entry is created by this module
relative to a directory file descriptor: the parent directory of an entry is
opened with openat2(RESOLVE_IN_ROOT) on the snapshot's root fd, so a path
that goes through a symlink (absolute or ``..``) resolves *inside* the
snapshot, never on the host; the entry itself is then created with a
single-component ``*at`` call that never follows a final symlink.

Docker's rules: absolute names are re-rooted; a relative name that climbs
out of the root with ``..`` is an error; a hard link must point at an entry
of this same layer; symlink targets are stored verbatim. Whiteouts become
overlayfs whiteouts (``.wh.x`` → character device 0/0 ``x``;
``.wh..wh..opq`` → ``trusted.overlay.opaque=y`` on the directory).
xattrs in the overlay namespaces carried by the tar itself are dropped (a
layer must not forge overlay redirects).

The caller (skiff.storage) applies into a fresh temporary directory and
renames it into place only on success; on any error it removes the whole
directory, so a failed apply leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import posixpath
import queue
import shutil
import stat
import struct
import tarfile
import threading
import zlib
from dataclasses import dataclass

from skiff import errors
from skiff import sys as ksys
from skiff.image.archive.compress import (CHUNK, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES,
                                          LayerError, LayerStream)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_DROP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_RESOLVE = ksys.RESOLVE_IN_ROOT | ksys.RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_REG_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_SMALL = 256 * 1024  # files up to this size travel to the writer in one piece


def _truncated(ti) -> LayerError:
    return LayerError(f"invalid layer: unexpected end of data in {ti.name!r} "
                      f"(truncated stream)")


class _Chunks:
    """The data of one large file, handed chunk by chunk to the writer
    (bounded: at most 8 MiB in flight)."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=8)
        self.done = False

    def get(self):
        if self.done:
            return None
        b = self.q.get()
        if b is None:
            self.done = True
        return b

    def drain(self) -> None:
        while self.get() is not None:
            pass


@dataclass
class ApplyResult:
    digest: str          # sha256 of the blob as read (compressed)
    diff_id: str         # sha256 of the uncompressed tar
    size: int            # bytes of the uncompressed tar
    compressed_size: int
    compression: str     # "tar" | "gzip" | "zstd"
    content_size: int    # sum of regular file sizes (for image sizes)
    entries: int


def _write_all(fd: int, b: memoryview) -> None:
    """The rest of a short write."""
    while b:
        n = os.write(fd, b)
        b = b[n:]


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def clean_name(name: str, what: str = "entry") -> str:
    """Normalise a tar name to a relative path inside the root ("." = root).

    Absolute names are re-rooted (Docker); a relative name escaping with
    ``..`` is refused."""
    # fast path for the usual "./a/b" or "a/b": nothing to normalise
    n = name[2:] if name.startswith("./") else name
    if n and n[0] != "/" and n[-1] != "/" and "//" not in n and "/." not in n and \
            not n.startswith("."):
        return n
    if name.startswith("/"):
        p = posixpath.normpath("/" + name.lstrip("/"))
        p = p.lstrip("/") or "."
    else:
        p = posixpath.normpath(name) if name else "."
        if p == ".." or p.startswith("../"):
            raise LayerError(f"invalid layer: {what} {name!r} escapes the layer root")
    return p


class _Applier:
    def __init__(self, dest: str, max_entries: int):
        self.rootfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.cache: dict[str, int] = {}
        self.dirs: list[tuple[str, int, int]] = []
        self.max_entries = max_entries
        self.euid = os.geteuid()
        self.egid = os.getegid()
        self.umask = _umask()
        self.content_size = 0
        self.entries = 0
        self.error: BaseException | None = None

    def close(self):
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()
        os.close(self.rootfd)

    # parents
    def _drop_cache(self):
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def parent(self, rel: str) -> int:
        """fd of directory ``rel`` (resolved inside the root; created, with
        any missing ancestors, if absent)."""
        if rel == "":
            return self.rootfd
        fd = self.cache.get(rel)
        if fd is not None:
            return fd
        try:
            fd = ksys.openat2(self.rootfd, rel, _DIR_FLAGS, 0, _RESOLVE)
        except FileNotFoundError:
            fd = self._mkdirs(rel)
        except NotADirectoryError:
            raise LayerError(f"invalid layer: parent {rel!r} is not a directory") from None
        if len(self.cache) >= 128:
            self._drop_cache()
        self.cache[rel] = fd
        return fd

    def _mkdirs(self, rel: str) -> int:
        """Create the missing directories of ``rel``, resolving symlinks
        on the way as if the snapshot root were ``/`` (a dangling absolute
        symlink ``x -> /a/b`` makes ``x/f`` land in ``<root>/a/b/f``)."""
        todo = [c for c in rel.split("/") if c][::-1]
        stack: list[str] = []
        links = 0
        while todo:
            comp = todo.pop()
            if comp == ".":
                continue
            if comp == "..":
                if stack:
                    stack.pop()
                continue
            dfd = self.parent("/".join(stack)) if stack else self.rootfd
            try:
                st = os.stat(comp, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(comp, 0o755, dir_fd=dfd)
                stack.append(comp)
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                links += 1
                if links > 40:
                    raise LayerError(f"invalid layer: too many levels of symlinks in {rel!r}")
                target = os.readlink(comp, dir_fd=dfd)
                if target.startswith("/"):
                    stack = []
                todo.extend([c for c in target.split("/") if c][::-1])
            else:
                raise LayerError(f"invalid layer: parent {rel!r} is not a directory")
        return ksys.openat2(self.rootfd, "/".join(stack) or ".", _DIR_FLAGS, 0, _RESOLVE)

    def remove(self, pfd: int, name: str) -> None:
        """Remove whatever is at name (replacement by a later entry)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
            self._drop_cache()
        else:
            os.unlink(name, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self._drop_cache()

    # metadata helpers
    def xattrs(self, ti) -> list[tuple[str, bytes]]:
        out = []
        for k, v in ti.pax_headers.items():
            if k.startswith("SCHILY.xattr."):
                name = k[13:]
                if name.startswith(_DROP_XATTR_PREFIXES):
                    continue
                out.append((name, v.encode("utf-8", "surrogateescape")
                            if isinstance(v, str) else v))
        return out

    @staticmethod
    def mtime_ns(ti) -> int:
        m = ti.mtime
        return m * 1_000_000_000 if type(m) is int else int(float(m) * 1_000_000_000)

    def apply(self, tf: "_TarReader", stream: LayerStream) -> None:
        """Two-stage pipeline: this thread parses headers, reads (and
        hashes) the stream; one worker thread makes every filesystem call,
        in tar order. Syscalls release the GIL, so parsing and hashing
        overlap with the kernel's work of creating files."""
        q: queue.Queue = queue.Queue(maxsize=32)
        worker = threading.Thread(target=self._work, args=(q,), name="skiff-apply",
                                  daemon=True)
        worker.start()
        batch: list = []
        batch_bytes = 0
        try:
            while self.error is None:
                ti = tf.next()
                if ti is None:
                    break
                self.entries += 1
                if self.entries > self.max_entries:
                    raise LayerError(f"layer has more than {self.max_entries} entries")
                if ti.type in _REG_TYPES:
                    if ti.sparse is not None:
                        raise LayerError(f"invalid layer: sparse file {ti.name!r} is not "
                                         f"supported")
                    if ti.size <= _SMALL:
                        data = stream.read(ti.size) if ti.size else b""
                        if len(data) != ti.size:
                            raise _truncated(ti)
                        batch.append((ti, data))
                        batch_bytes += ti.size
                    else:
                        if batch:
                            q.put(batch)
                            batch, batch_bytes = [], 0
                        chunks = _Chunks()
                        q.put([(ti, chunks)])
                        try:
                            left = ti.size
                            put = chunks.q.put
                            for b in stream.views(left):
                                left -= len(b)
                                put(b)
                                if self.error is not None:
                                    break
                            else:
                                if left:
                                    raise _truncated(ti)
                        finally:
                            chunks.q.put(None)
                        continue
                else:
                    batch.append((ti, None))
                if len(batch) >= 256 or batch_bytes >= (8 << 20):
                    q.put(batch)
                    batch, batch_bytes = [], 0
            if batch:
                q.put(batch)
        finally:
            q.put(None)
            worker.join()
        if self.error is not None:
            raise self.error
        # directory times last (creating children changed them), deepest first
        for rel, mt, at in reversed(self.dirs):
            if rel == ".":
                os.utime(self.rootfd, ns=(at, mt))
                continue
            d, base = posixpath.split(rel)
            try:
                pfd = self.parent(d)
                os.utime(base, ns=(at, mt), dir_fd=pfd, follow_symlinks=False)
            except (OSError, LayerError):
                pass  # replaced later by a non-directory or removed

    def _work(self, q: queue.Queue) -> None:
        while True:
            batch = q.get()
            if batch is None:
                return
            for ti, data in batch:
                if self.error is not None:
                    if isinstance(data, _Chunks):
                        data.drain()
                    continue
                try:
                    self.entry(ti, data)
                except BaseException as e:
                    if isinstance(data, _Chunks):
                        data.drain()
                    if isinstance(e, OSError):
                        e = LayerError(f"failed to apply layer entry {ti.name!r}: "
                                       f"{e.strerror or e}")
                    self.error = e

    def entry(self, ti: tarfile.TarInfo, data) -> None:
        rel = clean_name(ti.name)
        d, _, base = rel.rpartition("/")
        if rel == ".":
            if ti.isdir():
                self.meta_fd(self.rootfd, ti)
                mt = self.mtime_ns(ti)
                self.dirs.append((".", mt, mt))
            return
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(d, base)
            return
        pfd = self.parent(d)
        t = ti.type
        if t in _REG_TYPES:
            self.regular(pfd, base, ti, data)
        elif t == tarfile.DIRTYPE:
            self.directory(pfd, base, rel, ti)
        elif t == tarfile.SYMTYPE:
            self.create(pfd, base, lambda: os.symlink(ti.linkname, base, dir_fd=pfd))
            self.meta_at(pfd, base, ti, symlink=True)
        elif t == tarfile.LNKTYPE:
            self.hardlink(pfd, base, ti)
        elif t in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                    tarfile.FIFOTYPE: stat.S_IFIFO}[t]
            dev = os.makedev(ti.devmajor, ti.devminor) if t != tarfile.FIFOTYPE else 0
            self.create(pfd, base, lambda: os.mknod(base, kind | (ti.mode & 0o777), dev,
                                                    dir_fd=pfd))
            self.meta_at(pfd, base, ti, symlink=False, chmod=True)
        else:
            raise LayerError(f"invalid layer: unsupported tar entry type {t!r} for {ti.name!r}")

    def create(self, pfd: int, base: str, fn) -> None:
        try:
            fn()
        except FileExistsError:
            self.remove(pfd, base)
            fn()

    def regular(self, pfd: int, base: str, ti, data) -> None:
        mode = ti.mode & 0o7777
        try:
            fd = os.open(base, _CREATE_FLAGS, mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, base)
            fd = os.open(base, _CREATE_FLAGS, mode & 0o777, dir_fd=pfd)
        try:
            write = os.write
            if type(data) is bytes:
                if data:
                    n = write(fd, data)
                    if n != len(data):
                        _write_all(fd, memoryview(data)[n:])
            else:
                get = data.get
                b = get()
                while b is not None:
                    n = write(fd, b)
                    if n != len(b):
                        _write_all(fd, b[n:])
                    b = get()
            self.content_size += ti.size
            chowned = False
            if ti.uid != self.euid or ti.gid != self.egid:
                os.fchown(fd, ti.uid, ti.gid)
                chowned = True
            if (mode & 0o7000) or (mode & self.umask) or (chowned and mode & 0o6000):
                os.fchmod(fd, mode)
            if ti.pax_headers:
                for k, v in self.xattrs(ti):
                    os.setxattr(fd, k, v)
            m = ti.mtime
            if type(m) is int:
                os.utime(fd, (m, m))
            else:
                mt = self.mtime_ns(ti)
                os.utime(fd, ns=(mt, mt))
        finally:
            os.close(fd)

    def directory(self, pfd: int, base: str, rel: str, ti) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.remove(pfd, base)
                os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=pfd)
        try:
            self.meta_fd(fd, ti)
        finally:
            os.close(fd)
        mt = self.mtime_ns(ti)
        self.dirs.append((rel, mt, mt))

    def meta_fd(self, fd: int, ti) -> None:
        if ti.uid != self.euid or ti.gid != self.egid:
            os.fchown(fd, ti.uid, ti.gid)
        os.fchmod(fd, ti.mode & 0o7777)
        for k, v in self.xattrs(ti):
            os.setxattr(fd, k, v)

    def meta_at(self, pfd: int, base: str, ti, symlink: bool, chmod: bool = False) -> None:
        chowned = False
        if ti.uid != self.euid or ti.gid != self.egid:
            os.chown(base, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
            chowned = True
        if chmod and ((ti.mode & self.umask) or chowned or ti.mode & 0o7000):
            # a device node or fifo we just made: not a symlink, safe to follow
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.chmod(f"/proc/self/fd/{fd}", ti.mode & 0o7777)
            finally:
                os.close(fd)
        xs = self.xattrs(ti) if ti.pax_headers else ()
        for k, v in xs:
            os.setxattr(f"/proc/self/fd/{pfd}/{base}", k, v, follow_symlinks=False)
        mt = self.mtime_ns(ti)
        os.utime(base, ns=(mt, mt), dir_fd=pfd, follow_symlinks=False)

    def hardlink(self, pfd: int, base: str, ti) -> None:
        target = clean_name(ti.linkname, "hardlink target")
        if target == ".":
            raise LayerError(f"invalid layer: hardlink {ti.name!r} to the layer root")
        td, tbase = posixpath.split(target)
        try:
            tpfd = ksys.openat2(self.rootfd, td, _DIR_FLAGS, 0, _RESOLVE) if td else None
        except (FileNotFoundError, NotADirectoryError):
            raise LayerError(f"invalid layer: hardlink {ti.name!r} points to {ti.linkname!r}, "
                             f"which is not in the layer") from None
        src_fd = tpfd if tpfd is not None else self.rootfd
        try:
            try:
                self.create(pfd, base, lambda: os.link(tbase, base, src_dir_fd=src_fd,
                                                       dst_dir_fd=pfd, follow_symlinks=False))
            except FileNotFoundError:
                raise LayerError(f"invalid layer: hardlink {ti.name!r} points to "
                                 f"{ti.linkname!r}, which is not in the layer") from None
            except PermissionError:
                raise LayerError(f"invalid layer: hardlink {ti.name!r} to {ti.linkname!r}: "
                                 f"not a file") from None
        finally:
            if tpfd is not None:
                os.close(tpfd)

    def whiteout(self, d: str, base: str) -> None:
        pfd = self.parent(d)
        if base == WHITEOUT_OPAQUE:
            fd = pfd if pfd == self.rootfd else None
            os.setxattr(f"/proc/self/fd/{pfd}" if fd is None else pfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_META):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", "..") or "/" in name:
            raise LayerError(f"invalid layer: invalid whiteout name {base!r}")
        # A whiteout hides what *lower* layers have (OCI image spec); an entry
        # of the same name made by this layer already hides them and stays.
        try:
            os.mknod(name, stat.S_IFCHR, 0, dir_fd=pfd)
        except FileExistsError:
            pass


class _Hdr:
    """The fields of a plain ustar/GNU header the applier uses (a light
    stand-in for tarfile.TarInfo on the fast path)."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname",
                 "devmajor", "devminor", "pax_headers", "sparse")

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE


_HDR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)
_SLOW_TYPES = frozenset(b"xgLKSVMN")  # pax, GNU long names, sparse, volume, multivolume
_USTAR_MAGIC = (b"ustar\x00", b"ustar ")


_NS = b"\0 "
_NO_PAX: dict = {}
_adler = zlib.adler32


class _TarReader:
    """A strict, forward-only tar header reader.

    Plain ustar/GNU headers are decoded here (the common case, and the hot
    loop of an unpack); anything else (pax extended headers, GNU long
    names, base-256 numbers) goes through tarfile's own header parser
    (TarInfo.frombuf + _proc_member). Unlike TarFile.next(), every malformed
    header is an error, the end is the end-of-archive block (or a clean end
    of stream on a block boundary, as Go's archive/tar accepts), and the
    stream is only ever read forward."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, stream: LayerStream):
        self.fileobj = stream
        self.offset = 0
        self.pax_headers: dict = {}

    def next(self):
        f = self.fileobj
        if f.pos != self.offset:
            f.seek(self.offset)
            if f.pos != self.offset:
                raise LayerError("invalid layer: unexpected end of data (truncated stream)")
        buf, o = f.block()
        if len(buf) < o + 512:
            if not buf:
                return None
            raise LayerError("invalid layer: truncated tar header (truncated stream)")
        if buf[o] == 0 and buf[o:o + 512] == _ZERO_BLOCK:
            return None
        (name, mode, uid, gid, size, mtime, chksum, typ, linkname, magic, _ver, _un, _gn,
         devmajor, devminor, prefix) = _HDR.unpack_from(buf, o)
        t = typ[0]
        if t in _SLOW_TYPES or magic not in _USTAR_MAGIC or self.pax_headers:
            return self._slow(buf[o:o + 512])
        # a base-256 number (high bit set) makes int() fail: tarfile's path
        try:
            # unsigned byte sum of the block with the checksum field as
            # spaces: two adler32 halves (each sum < 65521, so exact)
            mv = memoryview(buf)
            total = ((_adler(mv[o:o + 256]) & 0xffff) + (_adler(mv[o + 256:o + 512]) & 0xffff)
                     - 2 - sum(mv[o + 148:o + 156]) + 256)
            if int(chksum.rstrip(_NS) or b"0", 8) != total:
                return self._slow(buf[o:o + 512])  # tarfile also accepts signed checksums
            h = _Hdr()
            h.mode = int(mode.rstrip(_NS) or b"0", 8)
            h.uid = int(uid.rstrip(_NS) or b"0", 8)
            h.gid = int(gid.rstrip(_NS) or b"0", 8)
            h.size = int(size.rstrip(_NS) or b"0", 8)
            h.mtime = int(mtime.rstrip(_NS) or b"0", 8)
            h.devmajor = int(devmajor.rstrip(_NS) or b"0", 8)
            h.devminor = int(devminor.rstrip(_NS) or b"0", 8)
        except ValueError:
            return self._slow(buf[o:o + 512])
        n = name.split(b"\0", 1)[0]
        if magic == b"ustar\x00" and prefix[:1] != b"\0":
            n = prefix.split(b"\0", 1)[0] + b"/" + n
        h.name = n.decode("utf-8", "surrogateescape")
        h.linkname = linkname.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") \
            if linkname[:1] != b"\0" else ""
        if t == 0x30 or t == 0:  # "0" or NUL: regular file (or a dir, old style)
            h.type = tarfile.REGTYPE
            if h.name.endswith("/"):
                h.type = tarfile.DIRTYPE
        else:
            h.type = typ
        if h.type == tarfile.DIRTYPE:
            h.name = h.name.rstrip("/")
        h.pax_headers = _NO_PAX
        h.sparse = None
        if h.size < 0:
            raise LayerError("invalid layer: negative size in tar header")
        end = self.offset + tarfile.BLOCKSIZE
        if h.type in _REG_TYPES or h.type not in tarfile.SUPPORTED_TYPES:
            end += -(-h.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        self.offset = end
        return h

    def _slow(self, buf: bytes):
        try:
            ti = tarfile.TarInfo.frombuf(buf, self.encoding, self.errors)
            ti.offset = self.fileobj.tell() - tarfile.BLOCKSIZE
            return ti._proc_member(self)
        except tarfile.EOFHeaderError:
            return None
        except tarfile.EmptyHeaderError:
            return None
        except tarfile.TruncatedHeaderError:
            raise LayerError("invalid layer: truncated tar header (truncated stream)") from None
        except tarfile.InvalidHeaderError as e:
            if self.offset == 0:
                raise LayerError(f"invalid layer: not a tar stream ({e})") from None
            raise LayerError(f"invalid layer: corrupt tar header at offset {self.offset}: {e}") \
                from None
        except tarfile.HeaderError as e:
            raise LayerError(f"invalid layer: corrupt tar header: {e}") from None
        except (ValueError, UnicodeError) as e:
            raise LayerError(f"invalid layer: corrupt tar header: {e}") from None


def apply_layer(fileobj, dest: str, *, expected_digest: str | None = None,
                expected_diff_id: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                max_entries: int = DEFAULT_MAX_ENTRIES) -> ApplyResult:
    """Apply the layer read from ``fileobj`` into the directory ``dest``.

    Raises LayerError (or DigestMismatch) on hostile or broken input; the
    caller must then discard ``dest`` (see skiff.storage)."""
    stream = LayerStream(fileobj, max_bytes=max_bytes)
    ap = _Applier(dest, max_entries)
    try:
        tf = _TarReader(stream)
        ap.apply(tf, stream)
        stream.finish()
    except EOFError:
        raise LayerError("invalid layer: unexpected end of stream (truncated)") from None
    except (tarfile.TarError,) as e:
        raise LayerError(f"invalid layer: {e}") from None
    finally:
        ap.close()
        stream.close()
    if expected_digest and stream.digest != expected_digest:
        raise errors.DigestMismatch(f"layer digest mismatch: got {stream.digest}, "
                                    f"expected {expected_digest}")
    if expected_diff_id and stream.diff_id != expected_diff_id:
        raise errors.DigestMismatch(f"layer diff ID mismatch: got {stream.diff_id}, "
                                    f"expected {expected_diff_id}")
    return ApplyResult(stream.digest, stream.diff_id, stream.size, stream.compressed_size,
                       stream.kind, ap.content_size, ap.entries)


def _errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))
