"""Streams for layer blobs: compression detection, decompression with
bounds, and digests of both the compressed and the uncompressed bytes.

``LayerStream(fileobj)`` reads a layer blob (tar, tar+gzip or tar+zstd) and
exposes the uncompressed tar as a forward-only file object with ``read``,
``tell`` and a forward ``seek`` (what tarfile needs), while computing the
blob digest (compressed bytes) and the diff ID (uncompressed bytes).
"""

from __future__ import annotations

import hashlib
import io
import zlib

from skiff import errors

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20

# Decompression-bomb bounds (CVE-2017-14992); overridable per call.
DEFAULT_MAX_BYTES = 256 << 30
DEFAULT_MAX_ENTRIES = 4_000_000


class LayerError(errors.InvalidArgument):
    """A layer that cannot be applied (hostile, corrupt or truncated)."""


def detect(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "tar"


class _BgHash:
    """sha256 computed on a helper thread (hashlib releases the GIL on large
    buffers), so hashing overlaps with parsing and file creation. Only
    immutable bytes are queued."""

    def __init__(self):
        self._h = hashlib.sha256()
        self._q = None
        self._t = None
        self._hex = None

    def update(self, b: bytes) -> None:
        if len(b) < (64 << 10):
            if self._q is None:
                self._h.update(b)
                return
        if self._q is None:
            import queue
            import threading
            self._q = queue.Queue(maxsize=16)
            self._t = threading.Thread(target=self._run, name="skiff-hash", daemon=True)
            self._t.start()
        self._q.put(b)

    def _run(self):
        while True:
            b = self._q.get()
            if b is None:
                return
            self._h.update(b)

    def close(self) -> None:
        if self._q is not None and self._t.is_alive():
            self._q.put(None)
            self._t.join()

    def hexdigest(self) -> str:
        if self._hex is None:
            self.close()
            self._hex = self._h.hexdigest()
        return self._hex


class _HashedSource(io.RawIOBase):
    """The compressed bytes as they arrive, hashed and counted."""

    def __init__(self, fileobj, head: bytes):
        self.f = fileobj
        self.head = head
        self.h = _BgHash()
        self.n = 0
        self.eof = False

    def readable(self):
        return True

    def read(self, size=-1):
        if self.head:
            b, self.head = self.head, b""
        else:
            b = self.f.read(CHUNK if size is None or size < 0 else max(size, 1))
        if b:
            self.h.update(b)
            self.n += len(b)
        else:
            self.eof = True
        return b

    def readinto(self, buf):
        mv = memoryview(buf).cast("B")
        b = self.read(len(mv))
        mv[:len(b)] = b
        return len(b)

    def drain(self):
        while self.read(CHUNK):
            pass


class _Decompressed(io.RawIOBase):
    """Uncompressed bytes, hashed (diff ID), counted and bounded."""

    def __init__(self, src: _HashedSource, kind: str, max_bytes: int):
        self.src = src
        self.kind = kind
        self.max_bytes = max_bytes
        self.n = 0
        self.h = src.h if kind == "tar" else _BgHash()
        self._pending = b""
        if kind == "gzip":
            self._z = zlib.decompressobj(31)
        elif kind == "zstd":
            import zstandard
            self._zd = zstandard.ZstdDecompressor()
            self._z = self._zd.decompressobj()
            self._zin = b""
            self._zerr = zstandard.ZstdError

    def readable(self):
        return True

    def _raw(self, size: int) -> bytes:
        if self.kind == "tar":
            return self.src.read(size)
        if self.kind == "zstd":
            return self._zstd()
        # gzip, possibly several members
        while True:
            z = self._z
            if z.eof:
                rest = z.unused_data
                if not rest:
                    rest = self.src.read(CHUNK)
                    if not rest:
                        return b""
                self._z = z = zlib.decompressobj(31)
                data = rest
            else:
                data = z.unconsumed_tail or self.src.read(CHUNK)
                if not data:
                    raise LayerError("unexpected end of gzip layer data (truncated)")
            try:
                out = z.decompress(data, size)
            except zlib.error as e:
                raise LayerError(f"invalid gzip layer data: {e}") from None
            if out:
                return out

    def _zstd(self) -> bytes:
        # input is fed in small pieces so that one call cannot inflate into
        # more than ~128 MiB (zstd's RLE blocks), whatever the input
        while True:
            if not self._zin:
                self._zin = self.src.read(CHUNK)
                if not self._zin:
                    if not self._z.eof and self._zstarted:
                        raise LayerError("unexpected end of zstd layer data (truncated)")
                    return b""
            if self._z.eof:
                rest = self._z.unused_data + self._zin
                self._z = self._zd.decompressobj()
                self._zstarted = False
                self._zin = rest
                if not rest:
                    continue
            piece, self._zin = self._zin[:4096], self._zin[4096:]
            self._zstarted = True
            try:
                out = self._z.decompress(piece)
            except self._zerr as e:
                raise LayerError(f"invalid zstd layer data: {e}") from None
            if out:
                return out

    _zstarted = False

    def read(self, size=-1):
        size = CHUNK if size is None or size < 0 else size
        if not self._pending:
            b = self._raw(min(size, CHUNK))
            if b:
                self.n += len(b)
                if self.n > self.max_bytes:
                    raise LayerError(f"layer exceeds the maximum uncompressed size "
                                     f"({self.max_bytes} bytes)")
                if self.kind != "tar":
                    self.h.update(b)
            self._pending = b
        b = self._pending
        if len(b) > size:
            self._pending = b[size:]
            return b[:size]
        self._pending = b""
        return b

    def readinto(self, buf):
        mv = memoryview(buf).cast("B")
        if self.kind == "tar" and not self._pending:
            # no decompression: straight from the source into the buffer
            n = self.src.readinto(mv[:CHUNK])
            self.n += n
            if self.n > self.max_bytes:
                raise LayerError(f"layer exceeds the maximum uncompressed size "
                                 f"({self.max_bytes} bytes)")
            return n
        b = self.read(len(mv))
        mv[:len(b)] = b
        return len(b)


class LayerStream:
    """Forward-only reader of a layer's uncompressed tar stream.

    The uncompressed bytes arrive in chunks of up to CHUNK bytes (each one
    read once, hashed on a helper thread, never copied again); reads are
    served by slicing the current chunk. ``block()`` gives a tar header
    block in place and ``views()`` a file's data as zero-copy memoryviews
    of the (immutable) chunks."""

    def __init__(self, fileobj, max_bytes: int = DEFAULT_MAX_BYTES):
        head = fileobj.read(4)
        self.kind = detect(head)
        self._src = _HashedSource(fileobj, head)
        self._dec = _Decompressed(self._src, self.kind, max_bytes)
        self._chunk = b""
        self._off = 0
        self.pos = 0

    def _fill(self) -> bool:
        """Replace the (used up) current chunk by the next one."""
        b = self._dec.read(CHUNK)
        self._chunk = b
        self._off = 0
        return bool(b)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._chunk[self._off:]]
            while self._fill():
                parts.append(self._chunk)
            self._off = len(self._chunk)
            b = b"".join(parts)
            self.pos += len(b)
            return b
        c, off = self._chunk, self._off
        end = off + size
        if end <= len(c):
            self._off = end
            self.pos += size
            return c[off:end]
        parts = [c[off:]]
        got = len(c) - off
        self._off = len(c)
        while got < size and self._fill():
            c = self._chunk
            take = size - got
            if take > len(c):
                take = len(c)
            parts.append(c[:take])
            self._off = take
            got += take
        self.pos += got
        return b"".join(parts)

    def block(self):
        """The next 512-byte block as (buffer, offset), in place when it
        lies within one chunk; a shorter buffer (offset 0) at the end."""
        off = self._off
        if off + 512 <= len(self._chunk):
            self._off = off + 512
            self.pos += 512
            return self._chunk, off
        return self.read(512), 0

    def views(self, size: int):
        """Yield ``size`` bytes of data as memoryviews of the chunks (fewer
        bytes in all if the stream ends early)."""
        while size > 0:
            c, off = self._chunk, self._off
            n = len(c) - off
            if n <= 0:
                if not self._fill():
                    return
                continue
            if n > size:
                n = size
            self._off = off + n
            self.pos += n
            size -= n
            yield memoryview(c)[off:off + n]

    # tarfile needs tell() and a forward seek()
    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        if pos < self.pos:
            raise LayerError("internal error: backwards seek in a layer stream")
        left = pos - self.pos
        while left:
            n = len(self._chunk) - self._off
            if n <= 0:
                if not self._fill():
                    break
                continue
            if n > left:
                n = left
            self._off += n
            self.pos += n
            left -= n
        return self.pos

    def close(self) -> None:
        """Stop the hashing threads (also after an error)."""
        self._src.h.close()
        self._dec.h.close()

    def finish(self) -> None:
        """Read to the end so both digests cover every byte."""
        self._off = len(self._chunk)
        while self._fill():
            pass
        self._src.drain()

    @property
    def digest(self) -> str:
        return "sha256:" + self._src.h.hexdigest()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._dec.h.hexdigest()

    @property
    def compressed_size(self) -> int:
        return self._src.n

    @property
    def size(self) -> int:
        return self._dec.n
