"""``pull``: a manifest (through indexes, by platform), its config, its
layers — downloaded 3 at a time into the content store with resume and
digest verification, unpacked into snapshots in order as soon as each one
(and its parent) is ready — then the image registered with the image
service. Progress goes out as Docker's JSON messages.

A pull that fails registers no image. Blobs already committed stay in the
content store (shared, verified, collectable) and a broken download stays
in ``ingest/`` so the next pull resumes it with an HTTP Range request.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ..errors import DigestMismatch, InvalidArgument, NotFound, SkiffError, Unavailable
from .auth import CredentialStore, Credentials
from .client import (MANIFEST_ACCEPT, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_DOCKER_V1,
                     MT_DOCKER_V1_SIGNED, MT_OCI_INDEX, MT_OCI_MANIFEST, READ_CHUNK, TRANSIENT,
                     Pool,
                     RegistryError, Repository, TransportError, _os_reason)
from .config import RegistryConfig
from .progress import Progress, short_id
from .reference import Reference, parse

INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
FOREIGN_TYPES = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "application/vnd.docker.image.rootfs.foreign.diff.tar",
                 "application/vnd.oci.image.layer.nondistributable.v1.tar",
                 "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                 "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
LAYER_TYPES = ("application/vnd.docker.image.rootfs.diff.tar.gzip",
               "application/vnd.docker.image.rootfs.diff.tar",
               "application/vnd.docker.image.rootfs.diff.tar.zstd",
               "application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.v1.tar+gzip",
               "application/vnd.oci.image.layer.v1.tar+zstd") + FOREIGN_TYPES


class Cancelled(SkiffError):
    """The caller gave up (the API client went away): Docker's wording."""

    def __init__(self, message: str = "context canceled"):
        super().__init__(message)


# -- platforms -----------------------------------------------------------------

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> dict:
    m = _platform.machine().lower()
    arch = _ARCH.get(m, m)
    p = {"os": "linux", "architecture": arch}
    if arch == "arm64":
        p["variant"] = "v8"
    elif arch == "arm":
        p["variant"] = "v6" if m == "armv6l" else "v7"
    return p


def parse_platform(s: str | dict | None) -> dict:
    """``linux/arm64/v8`` → {"os", "architecture", "variant"}, normalized as
    containerd's platforms package does."""
    if s is None or s == "":
        return host_platform()
    if isinstance(s, dict):
        return normalize_platform(s)
    parts = s.lower().split("/")
    if len(parts) == 1:
        if parts[0] in ("linux", "windows", "darwin", "freebsd"):
            p = host_platform()
            p["os"] = parts[0]
            return p
        parts = ["linux", parts[0]]
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f'"{s}": unknown operating system or architecture: invalid argument')
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return normalize_platform(p)


def normalize_platform(p: dict) -> dict:
    os_ = (p.get("os") or "linux").lower()
    arch = (p.get("architecture") or "").lower()
    variant = (p.get("variant") or "").lower()
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
            "armel": "arm", "i386": "386"}.get(arch, arch)
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    if arch == "arm" and variant == "":
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    out = {"os": os_, "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def platform_string(p: dict) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def select_manifest(index: dict, want: dict) -> dict:
    """The index entry for platform ``want``: exact variant first; an entry
    without a variant matches the architecture's default variant."""
    want = normalize_platform(want)
    best = None
    for m in index.get("manifests") or []:
        plat = m.get("platform")
        if not plat:
            continue
        got = normalize_platform(plat)
        if got["os"] != want["os"] or got["architecture"] != want["architecture"]:
            continue
        if got.get("variant") == want.get("variant"):
            return m
        if best is None and not plat.get("variant") and not want.get("variant"):
            best = m
        if best is None and want.get("variant") and not plat.get("variant"):
            best = m
    if best is None:
        raise NotFound(f"no matching manifest for {platform_string(want)} in the manifest "
                       "list entries")
    return best


# -- helpers around the image service ------------------------------------------

def _content(images):
    return images.content


def _snapshots(images):
    return images.storage


def _image_exists(images, config_digest: str) -> bool:
    return images.exists(config_digest)


def chain_ids(diff_ids: list[str]) -> list[str]:
    import hashlib
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


# -- errors as Docker words them -----------------------------------------------

def _translate(e: Exception, ref: Reference) -> Exception:
    if isinstance(e, RegistryError):
        if e.code in ("MANIFEST_UNKNOWN",) or (e.http_status == 404 and not e.code):
            return NotFound(f"manifest for {ref.familiar} not found: {e}")
        if e.code in ("NAME_UNKNOWN", "UNAUTHORIZED", "DENIED") or e.http_status in (401, 403):
            return NotFound(f"pull access denied for {ref.familiar_name}, repository does not "
                            f"exist or may require 'docker login': {e}") \
                if e.code == "NAME_UNKNOWN" else _unauth(ref, e)
    return e


def _unauth(ref: Reference, e: Exception):
    from ..errors import Unauthorized
    err = Unauthorized(f"pull access denied for {ref.familiar_name}, repository does not exist "
                       f"or may require 'docker login': {e}")
    return err


# -- pull ----------------------------------------------------------------------

def pull(images, ref, *, platform=None, auth=None, config: RegistryConfig | None = None,
         progress=None, cancel: threading.Event | None = None, all_tags: bool = False):
    """Pull ``ref`` into ``images`` (an ImageService). ``auth``: Docker's
    AuthConfig dict (X-Registry-Auth), a Credentials, or None to read the
    credential store (config.auth_config_path / ~/.docker/config.json).
    ``all_tags``: every tag of the repository (``docker pull -a``; the API's
    ``fromImage`` without ``tag``). Returns the Image (the last one for
    all_tags). Raises skiff.errors classes with Docker's wording."""
    config = config or RegistryConfig()
    ref = ref if isinstance(ref, Reference) else parse(ref)
    if all_tags:
        if ref.digest:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        return _pull_all_tags(images, ref, platform=platform, auth=auth, config=config,
                              progress=progress, cancel=cancel)
    creds = _credentials(auth, ref, config)
    p = Progress(progress)
    explicit_platform = platform is not None and platform != ""
    want = parse_platform(platform)
    cancel = cancel or threading.Event()
    pool = Pool(config)
    try:
        last: Exception | None = None
        endpoints = config.endpoints(ref.domain)
        for i, ep in enumerate(endpoints):
            repo = Repository(ref, config, creds, "pull", pool=pool, endpoints=[ep])
            try:
                repo.open()
                current = _up_to_date(images, repo, ref, want)
                if current is not None:
                    p.message(f"Pulling from {ref.path}", id=ref.tag_or_digest)
                    p.message(f"Digest: {current[0]}")
                    p.message(f"Status: Image is up to date for {ref.familiar}")
                    return images.get(current[1])
                body, mt, digest = repo.get_manifest(ref.tag_or_digest)
            except (RegistryError, TransportError) as e:
                last = e
                if ep.mirror and i < len(endpoints) - 1:
                    continue            # a mirror that fails: fall back to the next endpoint
                raise _translate(e, ref) from None
            p.message(f"Pulling from {ref.path}", id=ref.tag_or_digest)
            return _pull_from(images, repo, ref, body, mt, digest, want, explicit_platform,
                              p, config, cancel)
        raise last or Unavailable("no endpoint")
    finally:
        pool.close()


def _up_to_date(images, repo: Repository, ref: Reference, want: dict):
    """HEAD the tag's manifest (a HEAD does not count as a pull on Docker
    Hub): when the local tag already points at the image with that repo
    digest, there is nothing to fetch. → (digest, image id) or None."""
    if not ref.tag or ref.digest:
        return None
    try:
        with repo.request("HEAD", f"/v2/{repo.path}/manifests/{ref.tag}",
                          {"Accept": MANIFEST_ACCEPT}) as r:
            digest = r.headers.get("Docker-Content-Digest") or ""
    except (RegistryError, TransportError):
        return None
    if not digest.startswith("sha256:"):
        return None
    try:
        iid = images.resolve(f"{ref.familiar_name}@{digest}")
        if images.resolve(ref.familiar) == iid:
            cfg = images.get(iid).config
            got = normalize_platform({"os": cfg.get("os"), "architecture": cfg.get("architecture"),
                                      "variant": cfg.get("variant")})
            w = normalize_platform(want)
            if (got["os"], got["architecture"]) == (w["os"], w["architecture"]):
                return digest, iid
    except SkiffError:
        pass
    return None


def list_tags(repo: Repository) -> list[str]:
    """GET /v2/<name>/tags/list, following ``Link: <…>; rel="next"`` pages."""
    tags: list[str] = []
    path = f"/v2/{repo.path}/tags/list?n=1000"
    for _ in range(1000):
        with repo.request("GET", path) as r:
            data = json.loads(r.read() or b"{}")
            link = r.headers.get("Link") or ""
        tags += [t for t in data.get("tags") or [] if t not in tags]
        if 'rel="next"' not in link:
            break
        path = link.split(";")[0].strip().strip("<>")
    return tags


def _pull_all_tags(images, ref: Reference, *, platform, auth, config, progress, cancel):
    creds = _credentials(auth, ref, config)
    pool = Pool(config)
    try:
        repo = Repository(ref, config, creds, "pull", pool=pool)
        try:
            tags = list_tags(repo.open())
        except (RegistryError, TransportError) as e:
            raise _translate(e, ref) from None
    finally:
        pool.close()
    if not tags:
        raise NotFound(f"no tags found for {ref.familiar_name}")
    last = None
    statuses: list[str] = []

    def quiet_status(msg):              # one Status line at the end, for the repository
        if msg.get("status", "").startswith("Status: "):
            statuses.append(msg["status"])
        elif progress is not None:
            progress(msg)

    for t in sorted(tags):
        last = pull(images, ref.with_tag(t), platform=platform, auth=creds, config=config,
                    progress=quiet_status, cancel=cancel)
    newer = any("Downloaded newer image" in s for s in statuses)
    if progress is not None:
        progress({"status": f"Status: Downloaded newer image for {ref.familiar_name}" if newer
                  else f"Status: Image is up to date for {ref.familiar_name}"})
    return last


def _credentials(auth, ref: Reference, config: RegistryConfig) -> Credentials:
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, dict) and auth:
        c = Credentials.from_auth_config(auth)
        if not c.empty:
            return c
    if auth is None and config.auth_config_path:
        return CredentialStore(config.auth_config_path).get(ref.domain)
    return Credentials()


def _pull_from(images, repo: Repository, ref: Reference, body: bytes, mt: str, digest: str,
               want: dict, explicit_platform: bool, p: Progress, config: RegistryConfig,
               cancel: threading.Event):
    top_digest = digest
    if mt in (MT_DOCKER_V1, MT_DOCKER_V1_SIGNED):
        raise InvalidArgument(_schema1_message(ref))
    manifest = json.loads(body)
    index = index_body = None
    if mt in INDEX_TYPES or (not mt and "manifests" in manifest):
        index, index_body = manifest, body
        entry = select_manifest(index, want)
        body, mt, digest = repo.get_manifest(entry["digest"])
        if mt in (MT_DOCKER_V1, MT_DOCKER_V1_SIGNED):
            raise InvalidArgument(_schema1_message(ref))
        manifest = json.loads(body)
    if mt not in MANIFEST_TYPES and not (not mt and "config" in manifest):
        raise InvalidArgument(f"unsupported manifest media type {mt or 'unknown'} for "
                              f"{ref.familiar}")
    layers = manifest.get("layers") or []
    cfg_desc = manifest.get("config") or {}
    for d in layers:
        if d.get("mediaType") and d["mediaType"] not in LAYER_TYPES:
            raise InvalidArgument(f"unsupported layer media type {d['mediaType']}")
    content = _content(images)

    # the config: small, fetched first (it names the diff IDs and the image ID)
    cfg_digest = cfg_desc.get("digest", "")
    if not content.has(cfg_digest):
        with repo.open_blob(cfg_digest) as r:
            cfg_bytes = r.read()
        _retry_locked(lambda: content.add_bytes(cfg_bytes, cfg_digest))
    cfg_bytes = content.read(cfg_digest)
    cfg = json.loads(cfg_bytes)
    if explicit_platform and index is None:
        got = normalize_platform({"os": cfg.get("os"), "architecture": cfg.get("architecture"),
                                  "variant": cfg.get("variant")})
        w = normalize_platform(want)
        if (got["os"], got["architecture"]) != (w["os"], w["architecture"]):
            raise NotFound(f"image with reference {ref.familiar} was found but does not match "
                           f"the specified platform: wanted {platform_string(w)}, actual: "
                           f"{platform_string(got)}")
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"invalid image {ref.familiar}: {len(layers)} layers in the "
                              f"manifest but {len(diff_ids)} diff IDs in the config")
    chains = chain_ids(diff_ids)

    existed = _image_exists(images, cfg_digest)
    # the lease keeps this pull's blobs safe from a concurrent GC (image
    # prune) until the image is registered
    lease = content.lease()
    try:
        lease.add(cfg_digest)
        if not existed:
            _fetch_layers(images, repo, layers, diff_ids, chains, p, config, cancel,
                          lease.name)
        changed = _register(images, ref, manifest_body=body, manifest_digest=digest,
                            config_digest=cfg_digest, top_digest=top_digest,
                            index_body=index_body)
    finally:
        lease.release()
    p.message(f"Digest: {top_digest}")
    name = ref.familiar
    if changed or not existed:
        p.message(f"Status: Downloaded newer image for {name}")
    else:
        p.message(f"Status: Image is up to date for {name}")
    return images.get(ref.familiar if not ref.digest else cfg_digest)


def _schema1_message(ref: Reference) -> str:
    return ("[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, "
            "schema 1 support has been removed. Suggest the author of "
            f"{ref.name}:{ref.tag_or_digest} to upgrade the image to the OCI Format or Docker "
            "Image manifest v2, schema 2. More information at "
            "https://docs.docker.com/go/deprecated-image-specs/")


def _fetch_layers(images, repo: Repository, layers: list[dict], diff_ids: list[str],
                  chains: list[str], p: Progress, config: RegistryConfig,
                  cancel: threading.Event, lease_name: str) -> None:
    snaps = _snapshots(images)
    content = _content(images)
    n = len(layers)
    ids = [short_id(d["digest"]) for d in layers]
    present = [snaps.has(c) for c in chains]
    # a chain exists only if its parents do; trust the last present one
    for i in range(n - 1, -1, -1):
        if present[i]:
            for j in range(i):
                present[j] = True
            break
    todo = [i for i in range(n) if not present[i]]
    seen: set[str] = set()
    for i in range(n):
        if ids[i] in seen:
            continue
        seen.add(ids[i])
        p.update(ids[i], "Already exists" if present[i] else "Pulling fs layer")
    futures: dict[int, object] = {}
    by_digest: dict[str, object] = {}
    streamed: set[str] = set()
    tails: dict[int, _Tail] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, config.max_concurrent_downloads),
                              thread_name_prefix="skiff-pull")
    try:
        waiting_at = config.max_concurrent_downloads
        queued = 0
        for i in todo:
            d = layers[i]["digest"]
            if d in by_digest:
                futures[i] = by_digest[d]
                continue
            if queued >= waiting_at:
                p.update(ids[i], "Waiting")
            queued += 1
            tails[i] = _Tail()
            fut = pool.submit(_download, repo, content, layers[i], p, config, cancel,
                              lease_name, _stream_factory(images, layers, diff_ids, chains, i,
                                                          streamed), tails[i])
            futures[i] = by_digest[d] = fut
        parent = None
        for i in range(n):
            if present[i]:
                parent = chains[i]
                continue
            tail = tails.get(i)
            if tail is not None and not futures[i].done() and tail.attach():
                # still downloading: unpack what has arrived and follow the
                # file as it grows (download and extraction overlap)
                _extract_following(images, layers[i], diff_ids[i], parent, chains[i], ids[i],
                                   p, tail, futures[i], cancel)
            futures[i].result()          # raises the download's error
            if cancel.is_set():
                raise Cancelled()
            _extract(images, content, layers[i], diff_ids[i], parent, chains[i], ids[i], p,
                     chains[i] in streamed)
            parent = chains[i]
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        for t in tails.values():
            t.close()


def _download(repo: Repository, content, desc: dict, p: Progress, config: RegistryConfig,
              cancel: threading.Event, lease: str, stream_apply=None,
              tail: "_Tail | None" = None) -> None:
    try:
        _download_to(repo, content, desc, p, config, cancel, lease, stream_apply, tail)
    except BaseException as e:
        if tail is not None:
            tail.finish(e)
        raise
    if tail is not None:
        tail.finish(None)


def _download_to(repo: Repository, content, desc: dict, p: Progress, config: RegistryConfig,
                 cancel: threading.Event, lease: str, stream_apply, tail) -> None:
    """Fetch one blob into the content store, verified. ``stream_apply()``
    returns a callable taking a file object when the layer's parent is
    already unpacked: the layer is then unpacked *while* it downloads
    (download → decompress → apply in one pass) instead of afterwards."""
    digest = desc["digest"]
    size = int(desc.get("size") or 0)
    sid = short_id(digest)
    if content.has(digest):
        content.lease_add(lease, digest)
        p.update(sid, "Download complete")
        return
    urls = [u for u in desc.get("urls") or [] if u.startswith(("http://", "https://"))]
    w = None
    while w is None:
        if content.has(digest):        # another pull finished it meanwhile
            p.update(sid, "Download complete")
            return
        try:
            w = content.writer(digest, digest, size or None, lease=lease)
        except (Unavailable, FileNotFoundError):
            # another pull is writing this blob (or just removed its ingest
            # after committing): wait for it
            if cancel.wait(0.1):
                raise Cancelled() from None
    if content.has(digest):
        w.abort()
        p.update(sid, "Download complete")
        return
    done = False
    apply_fn = stream_apply() if stream_apply is not None else None
    if apply_fn is None and tail is not None:
        # opened here, while it surely exists: the descriptor stays valid
        # when commit() renames the file into blobs/
        tail.open(open(os.path.join(w.dir, "data"), "rb"))   # the main thread may follow it
    try:
        sources = [*urls, None]
        for k, src in enumerate(sources):
            stream = _BlobStream(repo, w, digest, size, sid, src, p, config, cancel,
                                 on_write=tail.notify if tail is not None else None)
            try:
                if apply_fn is not None and w.offset == 0:
                    try:
                        apply_fn(stream)
                    except _AlreadyApplied:
                        pass                 # drained below into the content store
                    except (TransportError, RegistryError, Cancelled):
                        raise
                    except SkiffError as e:
                        # corrupt data trips the decompressor before the digest
                        # is known: fetch the rest and let the digest decide
                        stream.drain()
                        try:
                            w.commit()
                        except DigestMismatch:
                            done = True
                            raise DigestMismatch("filesystem layer verification failed "
                                                 f"for digest {digest}") from None
                        done = True
                        raise e
                stream.drain()
                break
            except (TransportError, RegistryError):
                if k == len(sources) - 1:
                    raise            # else the next URL (or the registry) resumes it
        p.update(sid, "Verifying Checksum")
        try:
            w.commit()
        except DigestMismatch:
            done = True              # commit() discarded the ingest
            raise DigestMismatch(f"filesystem layer verification failed for digest {digest}") \
                from None
        done = True
        p.update(sid, "Download complete")
    finally:
        if not done:
            w.close()                  # keep the ingest: the next pull resumes it


class _BlobStream:
    """A blob as a file object: bytes come from the registry (or a foreign
    URL), are written to the content writer and handed to the reader. A
    dropped connection is resumed with ``Range: bytes=<offset>-`` up to
    ``max_download_attempts`` times without the reader noticing."""

    def __init__(self, repo, w, digest, size, sid, url, p: Progress, config: RegistryConfig,
                 cancel: threading.Event, on_write=None):
        self.repo, self.w, self.digest, self.size, self.sid, self.url = \
            repo, w, digest, size, sid, url
        self.p, self.config, self.cancel = p, config, cancel
        self.resp = None
        self.total = size
        self.attempts = 0
        self.on_write = on_write

    def _open(self) -> None:
        w = self.w
        r = self.repo.open_blob(self.digest, w.offset, url=self.url)
        if w.offset and r.status == 200:           # the server ignored Range: skip ahead
            left = w.offset
            while left:
                b = r.read(min(left, READ_CHUNK))
                if not b:
                    raise ConnectionError("unexpected EOF")
                left -= len(b)
        if not self.total:
            self.total = w.offset + int(r.headers.get("Content-Length") or 0)
        self.resp = r

    def _failed(self, e: BaseException, progressed: bool) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None
        if progressed:
            self.attempts = 0          # it made progress: the budget starts again
        self.attempts += 1
        if self.attempts >= self.config.max_download_attempts:
            where = self.url or f"{self.repo.endpoint.base}/v2/{self.repo.path}/blobs/" \
                                f"{self.digest}"
            host = urllib.parse.urlsplit(where).netloc
            raise TransportError(f"error pulling layer {self.digest}: Get \"{where}\": "
                                 f"{_os_reason(e, host)}") from None
        delay = self.config.retry_delay * self.attempts
        secs = max(1, round(delay))
        self.p.update(self.sid, f"Retrying in {secs} second{'s' if secs != 1 else ''}")
        if self.cancel.wait(delay):
            raise Cancelled() from None

    def read(self, n: int = -1) -> bytes:
        w = self.w
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            left = (self.size - w.offset) if self.size else READ_CHUNK
            if left <= 0:
                self.close()
                return b""
            want = min(n if n and n > 0 else READ_CHUNK, left, READ_CHUNK)
            start = w.offset
            try:
                if self.resp is None:
                    self._open()
                b = self.resp.read(want)
                if not b and self.size:
                    raise ConnectionError("unexpected EOF")
            except TRANSIENT as e:
                self._failed(e, w.offset > start)
                continue
            if not b:
                self.close()
                return b""
            w.write(b)
            if self.on_write is not None:
                self.on_write()
            self.p.bytes(self.sid, "Downloading", w.offset, self.total,
                         force=bool(self.size and w.offset >= self.size))
            return b

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None


class _Tail:
    """A download in progress, as seen by the thread that unpacks layers:
    the ingest file's path (bytes appear in it as they arrive) and whether
    the download ended, and how."""

    def __init__(self):
        self.cond = threading.Condition()
        self.f = None
        self.ended = False
        self.error: BaseException | None = None

    def open(self, f) -> None:
        with self.cond:
            self.f = f
            self.cond.notify_all()

    def attach(self) -> bool:
        """True if the download is writing a file that can be followed."""
        with self.cond:
            return self.f is not None and not self.ended

    def close(self) -> None:
        with self.cond:
            if self.f is not None:
                self.f.close()
                self.f = None

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def finish(self, error: BaseException | None) -> None:
        with self.cond:
            self.ended, self.error = True, error
            self.cond.notify_all()


class _TailReader:
    """Reads an ingest file while it is being written; EOF only when the
    download has ended (its error is raised instead, if it failed)."""

    def __init__(self, tail: _Tail, cancel: threading.Event):
        self.tail = tail
        self.cancel = cancel
        self.f = tail.f

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else READ_CHUNK
        while True:
            b = self.f.read(n)
            if b:
                return b
            with self.tail.cond:
                if self.tail.ended:
                    if self.tail.error is not None:
                        raise _DownloadFailed() from None
                    b = self.f.read(n)       # what was flushed at commit
                    return b
                if self.cancel.is_set():
                    raise Cancelled()
                self.tail.cond.wait(0.1)

    def close(self) -> None:
        self.tail.close()


class _DownloadFailed(Exception):
    """The download under a following extraction failed (its own error is
    raised by the download's future)."""


def _extract_following(images, desc: dict, diff_id: str, parent: str | None, chain: str,
                       sid: str, p: Progress, tail: _Tail, future, cancel) -> None:
    with _chain_lock(chain):
        if _snapshots(images).has(chain):
            return
        total = int(desc.get("size") or 0)
        r = _TailReader(tail, cancel)
        try:
            # "Extracting" is shown once the download is complete, as Docker orders it
            got = images.apply_layer(parent, diff_id, desc["digest"],
                                     fileobj=_ProgressReader(r, sid, total, p,
                                                             when=lambda: tail.ended))
        except (_DownloadFailed, SkiffError):
            future.exception()           # wait for the download: its error wins
            if future.exception() is not None:
                raise future.exception() from None
            raise
        finally:
            r.close()
        if got != chain:
            raise DigestMismatch(f"layer chain mismatch: {got} != {chain}")
        future.result()
        p.bytes(sid, "Extracting", total, total, force=True)


class _ProgressReader:
    def __init__(self, f, sid: str, total: int, p: Progress, when=None):
        self.f, self.sid, self.total, self.p, self.n = f, sid, total, p, 0
        self.when = when

    def read(self, n=-1):
        b = self.f.read(n)
        self.n += len(b)
        if b and (self.when is None or self.when()):
            self.p.bytes(self.sid, "Extracting", self.n, self.total)
        return b


_CHAIN_LOCKS: dict[str, threading.Lock] = {}
_CHAIN_LOCKS_GUARD = threading.Lock()


def _chain_lock(chain: str) -> threading.Lock:
    """One unpack of a given chain at a time in this process (two pulls of
    the same image share the work instead of racing on the snapshot)."""
    with _CHAIN_LOCKS_GUARD:
        return _CHAIN_LOCKS.setdefault(chain, threading.Lock())


class _AlreadyApplied(Exception):
    """Another pull unpacked this layer meanwhile: just store the blob."""


def _stream_factory(images, layers, diff_ids, chains, i, streamed: set):
    """For the download of layer ``i``: when it starts and its parent is
    already unpacked, a function that unpacks the layer from the download
    stream (records the chain in ``streamed``); else None."""
    def factory():
        parent = chains[i - 1] if i > 0 else None
        snaps = _snapshots(images)
        if (parent is not None and not snaps.has(parent)) or snaps.has(chains[i]):
            return None

        def apply(stream):
            with _chain_lock(chains[i]):
                if snaps.has(chains[i]):
                    raise _AlreadyApplied()
                got = images.apply_layer(parent, diff_ids[i], layers[i]["digest"],
                                         fileobj=stream)
            if got != chains[i]:
                raise DigestMismatch(f"layer chain mismatch: {got} != {chains[i]}")
            streamed.add(chains[i])
        return apply
    return factory


def _extract(images, content, desc: dict, diff_id: str, parent: str | None, chain: str,
             sid: str, p: Progress, streamed: bool = False) -> None:
    if streamed:           # unpacked while downloading
        total = content.size(desc["digest"])
        p.bytes(sid, "Extracting", total, total, force=True)
    else:
        with _chain_lock(chain):
            if not _snapshots(images).has(chain):
                digest = desc["digest"]
                total = content.size(digest)
                with content.open(digest) as f:
                    got = images.apply_layer(parent, diff_id, digest,
                                             fileobj=_ProgressReader(f, sid, total, p))
                p.bytes(sid, "Extracting", total, total, force=True)
                if got != chain:
                    raise DigestMismatch(f"layer chain mismatch: {got} != {chain}")
    p.update(sid, "Pull complete")


def _retry_locked(fn, timeout: float = 60.0):
    """Run ``fn``; while another pull holds the content store's lock on the
    same small blob (config, manifest), wait and try again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _register(images, ref: Reference, *, manifest_body: bytes, manifest_digest: str,
              config_digest: str, top_digest: str, index_body: bytes | None) -> bool:
    """Hand the pulled image to the image service; True when the tag moved
    (Docker's "Downloaded newer image" versus "Image is up to date")."""
    before = config_digest if ref.digest else None
    if ref.tag and not ref.digest:
        try:
            before = images.resolve(ref.familiar)
        except SkiffError:
            before = None
    img = _retry_locked(lambda: images.add(manifest_body, images.content.read(config_digest),
                                           ref.familiar, manifest_digest=manifest_digest))
    if top_digest != manifest_digest and index_body is not None:
        # the repo digest users see is the index's (what the tag points to)
        _retry_locked(lambda: images.add_repo_digest(
            img.id, f"{ref.familiar_name}@{top_digest}", manifest_bytes=index_body))
    return before != config_digest
