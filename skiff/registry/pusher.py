"""``push``: layers (HEAD → already there; cross-repository mount from a
repository the image came from; else a monolithic or chunked upload), the
config, then the manifest under the tag. Progress as docker push prints it.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from ..errors import ImageNotFound, InvalidArgument, NotFound, SkiffError, Unauthorized
from .client import (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST, TRANSIENT, Pool, RegistryError,
                     Repository, TransportError, _os_reason)
from .config import RegistryConfig
from .progress import Progress, short_id
from .puller import _credentials
from .reference import Reference, parse

DOCKER_CONFIG_MT = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG_MT = "application/vnd.oci.image.config.v1+json"


def _push_error(e: Exception, ref: Reference) -> Exception:
    if isinstance(e, RegistryError) and (e.http_status in (401, 403) or
                                         e.code in ("DENIED", "UNAUTHORIZED")):
        return Unauthorized(f"{e}") if "denied" in str(e) else Unauthorized(
            "denied: requested access to the resource is denied")
    return e


def manifest_for(image, content) -> tuple[bytes, str]:
    """The manifest to push: the one the image was pulled with when the
    content store still has it (the digest then stays the same), else a new
    one from the image's config and layer descriptors."""
    record = getattr(image, "record", None) or {}
    for md in record.get("manifests") or []:
        if not content.has(md):
            continue
        body = content.read(md)
        m = json.loads(body)
        if "layers" not in m or (m.get("config") or {}).get("digest") != image.id:
            continue                   # an index, or not this image's manifest
        if any(not content.has(d.get("digest", "")) for d in m["layers"]):
            continue                   # its blobs are gone (an older store's GC): a new one
        mt = m.get("mediaType") or MT_DOCKER_MANIFEST
        return body, mt
    layers = [_compressed(content, d) for d in image.layers]
    oci = any(d.get("mediaType", "").startswith("application/vnd.oci.") for d in layers)
    cfg_digest = image.id
    cfg_size = content.size(cfg_digest)
    if oci:
        mt = MT_OCI_MANIFEST
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": OCI_CONFIG_MT, "digest": cfg_digest, "size": cfg_size},
               "layers": layers}
    else:
        mt = MT_DOCKER_MANIFEST
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": DOCKER_CONFIG_MT, "digest": cfg_digest,
                          "size": cfg_size},
               "layers": layers}
    return json.dumps(man, indent=3).encode(), mt


UNCOMPRESSED = {"application/vnd.docker.image.rootfs.diff.tar":
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.oci.image.layer.v1.tar": "application/vnd.oci.image.layer.v1.tar+gzip"}
DESCRIPTOR_KEYS = ("mediaType", "size", "digest", "urls", "annotations")


class _GzipReader:
    """Deterministic gzip (mtime 0, level 6) of a stream, read-side."""

    def __init__(self, src):
        import zlib
        self.src = src
        self.z = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.buf = b""
        self.eof = False

    def read(self, n=-1):
        while not self.eof and (n < 0 or len(self.buf) < n):
            b = self.src.read(1 << 20)
            if b:
                self.buf += self.z.compress(b)
            else:
                self.buf += self.z.flush()
                self.eof = True
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _compressed(content, desc: dict) -> dict:
    """A registry descriptor for a local layer: uncompressed layers (from
    docker load / commit) are gzip-compressed first, as docker push does; the
    compression is deterministic, so the digest is the same at every push."""
    d = {k: desc[k] for k in DESCRIPTOR_KEYS if k in desc}
    mt = d.get("mediaType", "")
    if mt in UNCOMPRESSED:
        with content.open(d["digest"]) as f:
            digest = content.add_stream(_GzipReader(f))
        d = {"mediaType": UNCOMPRESSED[mt], "size": content.size(digest), "digest": digest}
    return d


def push(images, ref, *, auth=None, config: RegistryConfig | None = None, progress=None,
         cancel: threading.Event | None = None, all_tags: bool = False) -> str:
    """Push the local image ``ref`` to its registry; returns the manifest
    digest (of the last tag with ``all_tags``: every local tag of the
    repository, as the API's push without ``tag`` / ``docker push -a``).
    ``images`` is the ImageService."""
    config = config or RegistryConfig()
    ref = ref if isinstance(ref, Reference) else parse(ref)
    if ref.digest and not ref.tag:
        raise InvalidArgument("cannot push a digest reference")
    if all_tags:
        tags = sorted({parse(t).tag for im in images.images() for t in im.repo_tags
                       if parse(t).name == ref.name})
    else:
        tags = [ref.tag or "latest"]
    for t in tags:
        if not images.exists(ref.with_tag(t).familiar):
            tags = []
    if not tags:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    creds = _credentials(auth, ref, config)
    p = Progress(progress)
    cancel = cancel or threading.Event()
    pool = Pool(config)
    p.message(f"The push refers to repository [{ref.name}]")
    try:
        digest = ""
        for t in tags:
            digest = _push_tag(images, ref.with_tag(t), creds, config, p, cancel, pool)
        return digest
    finally:
        pool.close()


def _push_tag(images, ref: Reference, creds, config: RegistryConfig, p: Progress,
              cancel: threading.Event, pool: Pool) -> str:
    tag = ref.tag
    try:
        image = images.get(ref.familiar)
    except (ImageNotFound, NotFound):
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}") \
            from None
    content = images.content
    try:
        repo = Repository(ref, config, creds, "pull,push", pool=pool).open()
        body, mt = manifest_for(image, content)
        man = json.loads(body)
        layers = man.get("layers") or []
        diff_ids = list(getattr(image, "diff_ids", []) or [])
        ids = [short_id(diff_ids[i] if i < len(diff_ids) else d["digest"])
               for i, d in enumerate(layers)]
        sources = _mount_sources(image, ref)
        order = list(range(len(layers)))[::-1]       # docker lists the top layer first
        seen = set()
        for i in order:
            if ids[i] not in seen:
                seen.add(ids[i])
                p.update(ids[i], "Preparing")
        n = max(1, config.max_concurrent_uploads)
        for k, i in enumerate(order):
            if k >= n:
                p.update(ids[i], "Waiting")
        done: dict[str, object] = {}
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="skiff-push") as ex:
            futs = []
            for i in order:
                d = layers[i]
                if d["digest"] in done:
                    continue
                if d.get("urls") or "foreign" in d.get("mediaType", "") or \
                        "nondistributable" in d.get("mediaType", ""):
                    p.update(ids[i], "Skipped foreign layer")
                    continue
                done[d["digest"]] = fut = ex.submit(_push_layer, repo, content, d, ids[i],
                                                    sources, p, config, cancel)
                futs.append(fut)
            try:
                for f in futs:
                    f.result()
            except BaseException:
                cancel.set()
                raise
        cfg_digest = man["config"]["digest"]
        if repo.blob_size(cfg_digest) is None:
            with content.open(cfg_digest) as f:
                repo.upload_blob(cfg_digest, content.size(cfg_digest), f)
        digest = repo.put_manifest(tag, body, mt)
        if not digest:
            import hashlib
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        p.message(f"{tag}: digest: {digest} size: {len(body)}")
        p.aux({"Tag": tag, "Digest": digest, "Size": len(body)})
        _record(images, image, ref, digest, body)
        return digest
    except (RegistryError, TransportError) as e:
        raise _push_error(e, ref) from None


def _mount_sources(image, ref: Reference) -> list[str]:
    """Repositories on the same registry this image is known to come from
    (its repo digests / tags), for cross-repository mounts."""
    out = []
    for name in list(getattr(image, "repo_digests", []) or []) + \
            list(getattr(image, "repo_tags", []) or []):
        try:
            r = parse(name.split("@")[0])
        except SkiffError:
            continue
        if r.domain == ref.domain and r.path != ref.path and r.path not in out:
            out.append(r.path)
    return out


def _push_layer(repo: Repository, content, desc: dict, sid: str, sources: list[str],
                p: Progress, config: RegistryConfig, cancel: threading.Event) -> None:
    digest = desc["digest"]
    if cancel.is_set():
        return
    if repo.blob_size(digest) is not None:
        p.update(sid, "Layer already exists")
        return
    for src in sources:
        try:
            if repo.mount_blob(digest, src):
                p.update(sid, f"Mounted from {src}")
                return
        except (RegistryError, Unauthorized):
            continue
    if not content.has(digest):
        raise NotFound(f"layer {digest} of this image is not in the content store")
    size = content.size(digest)
    attempt = 0
    while True:            # a broken upload starts a new upload session (docker: 5 tries)
        attempt += 1
        try:
            with content.open(digest) as f:
                repo.upload_blob(digest, size, f,
                                 on_bytes=lambda n: p.bytes(sid, "Pushing", n, size),
                                 chunk_size=config.chunk_size)
            break
        except TRANSIENT as e:
            if attempt >= config.max_upload_attempts:
                raise TransportError(f"error pushing layer {digest}: {_os_reason(e)}") \
                    from None
            delay = config.retry_delay * attempt
            secs = max(1, round(delay))
            p.update(sid, f"Retrying in {secs} second{'s' if secs != 1 else ''}")
            if cancel.wait(delay):
                return
    p.bytes(sid, "Pushing", size, size, force=True)
    p.update(sid, "Pushed")


def _record(images, image, ref: Reference, digest: str, body: bytes) -> None:
    """The image now has ``name@digest`` (docker push adds the RepoDigest),
    and the manifest is kept so the next push sends the same bytes."""
    from .puller import _retry_locked
    try:
        _retry_locked(lambda: images.add_repo_digest(
            image.id, f"{ref.familiar_name}@{digest}", manifest_bytes=body))
    except SkiffError:
        pass
