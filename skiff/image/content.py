"""Content store: blobs addressed by sha256 digest (containerd's local store).

Layout under ``root``::

    blobs/sha256/<hex>          committed, verified, read-only blobs
    ingest/<sha256(ref)>/       one in-flight write per ref:
        data                    the bytes received so far (resumable)
        ref                     the ref, in clear
        total                   the expected size, if announced
        expected                the expected digest, if announced
        startedat / updatedat   unix times
        lock                    flock'd while a writer is open
    leases/<name>.json          digests held by an operation in progress
                                (a pull): never garbage-collected

A write is streamed into ``ingest/``; ``commit()`` fsyncs, checks size and
digest, and renames the file into ``blobs/`` (atomic). A crash leaves at
most an ingest directory, which the next writer with the same ref resumes
from its current offset.

Garbage collection is mark-and-sweep: the caller (the image service) passes
the set of digests its images reference; blobs outside that set, outside
every live lease and younger than nothing else are deleted. Reference counts
are therefore derived from the metadata, never stored twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from typing import BinaryIO, Iterable, Iterator

from skiff import errors

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise.

    Every digest that reaches a path goes through here (CVE-2014-9358)."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise errors.InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex>")
    return digest


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(fileobj: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    while True:
        b = fileobj.read(CHUNK)
        if not b:
            break
        h.update(b)
        n += len(b)
    return "sha256:" + h.hexdigest(), n


class ContentWriter:
    """An open ingest. ``offset`` is how many bytes are already stored (a
    resumed ingest starts where the last one stopped)."""

    def __init__(self, store: "ContentStore", ref: str, expected_digest: str | None,
                 expected_size: int | None, lease: str | None):
        self.store = store
        self.ref = ref
        self.expected_digest = validate_digest(expected_digest) if expected_digest else None
        self.expected_size = expected_size
        self.lease = getattr(lease, "name", lease)  # a Lease or its name
        self.dir = store._ingest_dir(ref)
        os.makedirs(self.dir, exist_ok=True)
        self._lockfd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                               0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lockfd)
            raise errors.Unavailable(f"ref {ref} locked: another write is in progress") from None
        self._closed = False
        self._meta("ref", ref)
        if not os.path.exists(os.path.join(self.dir, "startedat")):
            self._meta("startedat", str(time.time()))
        if expected_size is not None:
            self._meta("total", str(expected_size))
        if self.expected_digest:
            old = self._read_meta("expected")
            if old and old != self.expected_digest:
                # a different blob under the same ref: start over
                self._truncate()
            self._meta("expected", self.expected_digest)
        self._hash = hashlib.sha256()
        self._f = open(os.path.join(self.dir, "data"), "a+b")
        self._f.seek(0)
        n = 0
        while True:
            b = self._f.read(CHUNK)
            if not b:
                break
            self._hash.update(b)
            n += len(b)
        self.offset = n
        if expected_size is not None and n > expected_size:
            self._truncate_open()

    # metadata files
    def _meta(self, name: str, value: str) -> None:
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def _read_meta(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _truncate(self) -> None:
        try:
            os.unlink(os.path.join(self.dir, "data"))
        except FileNotFoundError:
            pass

    def _truncate_open(self) -> None:
        self._f.seek(0)
        self._f.truncate()
        self._hash = hashlib.sha256()
        self.offset = 0

    def truncate(self, size: int = 0) -> None:
        """Drop everything after ``size`` bytes (0: restart from scratch)."""
        if size == 0:
            self._truncate_open()
            return
        self._f.flush()
        self._f.truncate(size)
        self._f.seek(0)
        self._hash = hashlib.sha256()
        left = size
        while left:
            b = self._f.read(min(CHUNK, left))
            if not b:
                break
            self._hash.update(b)
            left -= len(b)
        self.offset = size - left

    def write(self, data: bytes) -> int:
        if self._closed:
            raise errors.Internal("write on a closed content writer")
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            raise errors.DigestMismatch(
                f"blob {self.expected_digest or self.ref}: more data than the announced "
                f"size {self.expected_size}")
        self._f.write(data)
        self._hash.update(data)
        self.offset += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        """Verify and move the data into ``blobs/``; return its digest.

        On a size or digest mismatch the ingest is discarded and
        DigestMismatch is raised."""
        size = self.expected_size if size is None else size
        expected = validate_digest(expected) if expected else self.expected_digest
        got = self.digest
        try:
            if size is not None and self.offset != size:
                raise errors.DigestMismatch(
                    f"unexpected commit size {self.offset}, expected {size}")
            if expected and got != expected:
                raise errors.DigestMismatch(
                    f"unexpected commit digest {got}, expected {expected}")
            self._f.flush()
            os.fsync(self._f.fileno())
            target = self.store.path(got)
            if os.path.exists(target):
                os.unlink(os.path.join(self.dir, "data"))
            else:
                os.chmod(os.path.join(self.dir, "data"), 0o444)
                os.rename(os.path.join(self.dir, "data"), target)
                self.store._fsync_dir(os.path.dirname(target))
            if self.lease:
                self.store.lease_add(self.lease, got)
        except BaseException:
            self.abort()
            raise
        self._close(remove=True)
        return got

    def abort(self) -> None:
        """Discard the ingest (the next writer on the ref starts at 0)."""
        self._close(remove=True)

    def close(self) -> None:
        """Stop writing but keep the ingest for a later resume."""
        if not self._closed:
            try:
                self._f.flush()
            finally:
                self._meta("updatedat", str(time.time()))
        self._close(remove=False)

    def _close(self, remove: bool) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._f.close()
        finally:
            if remove:
                for name in os.listdir(self.dir):
                    if name != "lock":
                        try:
                            os.unlink(os.path.join(self.dir, name))
                        except FileNotFoundError:
                            pass
                try:
                    os.unlink(os.path.join(self.dir, "lock"))
                    os.rmdir(self.dir)
                except OSError:
                    pass
            os.close(self._lockfd)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.close()
        elif not self._closed:
            self.close()


class ContentStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.ingests = os.path.join(self.root, "ingest")
        self.leases = os.path.join(self.root, "leases")
        for d in (self.blobs, self.ingests, self.leases):
            os.makedirs(d, exist_ok=True)

    # paths
    def path(self, digest: str) -> str:
        validate_digest(digest)
        return os.path.join(self.blobs, digest[7:])

    def _ingest_dir(self, ref: str) -> str:
        return os.path.join(self.ingests, hashlib.sha256(ref.encode()).hexdigest())

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # reads
    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def _missing(self, digest: str) -> errors.NotFound:
        return errors.NotFound(f"content digest {digest}: not found")

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise self._missing(digest) from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise self._missing(digest) from None

    def list(self) -> Iterator[str]:
        for name in os.listdir(self.blobs):
            if len(name) == 64:
                yield "sha256:" + name

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise self._missing(digest) from None

    # writes
    def writer(self, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None, lease: str | None = None) -> ContentWriter:
        return ContentWriter(self, ref, expected_digest, expected_size, lease)

    def add_bytes(self, data: bytes, expected_digest: str | None = None,
                  lease: str | None = None) -> str:
        d = digest_bytes(data)
        lease = getattr(lease, "name", lease)
        if expected_digest and d != validate_digest(expected_digest):
            raise errors.DigestMismatch(f"unexpected commit digest {d}, expected {expected_digest}")
        if self.has(d):
            if lease:
                self.lease_add(lease, d)
            return d
        w = self.writer("bytes-" + d, d, len(data), lease=lease)
        w.truncate(0)
        w.write(data)
        return w.commit()

    def add_stream(self, fileobj: BinaryIO, expected_digest: str | None = None,
                   expected_size: int | None = None, lease: str | None = None,
                   ref: str | None = None) -> str:
        ref = ref or f"stream-{os.getpid()}-{time.monotonic_ns()}"
        w = self.writer(ref, expected_digest, expected_size, lease=lease)
        try:
            w.truncate(0)
            while True:
                b = fileobj.read(CHUNK)
                if not b:
                    break
                w.write(b)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def add_file(self, path: str, expected_digest: str | None = None,
                 lease: str | None = None) -> str:
        """Copy a file into the store (hardlinking is unsafe: it would
        share the inode with a mutable file)."""
        with open(path, "rb") as f:
            return self.add_stream(f, expected_digest, lease=lease)

    def ingests_in_progress(self) -> list[dict]:
        out = []
        for name in os.listdir(self.ingests):
            d = os.path.join(self.ingests, name)
            try:
                with open(os.path.join(d, "ref")) as f:
                    ref = f.read()
            except OSError:
                continue
            try:
                off = os.stat(os.path.join(d, "data")).st_size
            except OSError:
                off = 0
            out.append({"ref": ref, "offset": off, "dir": d})
        return out

    # leases: digests kept alive while an operation (a pull) is in progress
    def _lease_path(self, name: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", name):
            raise errors.InvalidArgument(f"invalid lease name {name!r}")
        return os.path.join(self.leases, name + ".json")

    def _lease_load(self, name: str) -> dict:
        try:
            with open(self._lease_path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"digests": [], "expires": 0}

    def _lease_save(self, name: str, data: dict) -> None:
        p = self._lease_path(name)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.rename(tmp, p)

    def lease_create(self, name: str, ttl: float = 24 * 3600) -> str:
        data = self._lease_load(name)
        data["expires"] = time.time() + ttl
        self._lease_save(name, data)
        return name

    def lease_add(self, name, digest: str) -> None:
        name = getattr(name, "name", name)
        validate_digest(digest)
        with open(os.path.join(self.leases, ".lock"), "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            data = self._lease_load(name)
            if not data.get("expires"):
                data["expires"] = time.time() + 24 * 3600
            if digest not in data["digests"]:
                data["digests"].append(digest)
            self._lease_save(name, data)

    def lease_release(self, name) -> None:
        name = getattr(name, "name", name)
        try:
            os.unlink(self._lease_path(name))
        except FileNotFoundError:
            pass

    def lease(self, name: str | None = None, ttl: float = 24 * 3600) -> "Lease":
        return Lease(self, name or f"lease-{os.getpid()}-{time.monotonic_ns()}", ttl)

    def leased(self) -> set[str]:
        held: set[str] = set()
        now = time.time()
        for name in os.listdir(self.leases):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.leases, name)) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            if data.get("expires", 0) and data["expires"] < now:
                try:
                    os.unlink(os.path.join(self.leases, name))
                except OSError:
                    pass
                continue
            held.update(data.get("digests", []))
        return held

    def gc(self, roots: Iterable[str]) -> list[str]:
        """Delete every blob that is neither in ``roots`` nor leased.
        Returns the deleted digests. In-flight ingests are never touched."""
        keep = set(roots) | self.leased()
        removed = []
        for d in list(self.list()):
            if d not in keep:
                try:
                    os.unlink(self.path(d))
                    removed.append(d)
                except FileNotFoundError:
                    pass
        return removed

    def usage(self) -> int:
        total = 0
        for d in self.list():
            try:
                total += os.stat(self.path(d)).st_blocks * 512
            except FileNotFoundError:
                pass
        return total


class Lease:
    """``with store.lease() as lease:`` keeps every blob added under it
    (``store.writer(..., lease=lease.name)`` or ``lease.add(digest)``) safe
    from ``gc`` until the block ends."""

    def __init__(self, store: ContentStore, name: str, ttl: float):
        self.store = store
        self.name = name
        store.lease_create(name, ttl)

    def add(self, digest: str) -> None:
        self.store.lease_add(self.name, digest)

    def release(self) -> None:
        self.store.lease_release(self.name)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.release()
