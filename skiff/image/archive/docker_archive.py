"""Image archives: Docker's (``docker save``/``docker load``, skopeo
``docker-archive:``) and OCI image layouts and archives (umoci, skopeo
``oci:``/``oci-archive:``).

``save`` writes the format Docker 25+ writes: one tar that is at the same
time an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) and a
Docker archive (``manifest.json`` whose paths point into ``blobs/``).

``load`` unpacks the archive with the same safe applier as layers (so a
hostile archive cannot write outside a private temporary directory), then
opens every file named by the archive with openat2(RESOLVE_IN_ROOT) on that
directory: symlinked layer files (older ``docker save`` output) work, and a
symlink pointing outside the archive resolves inside it.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import tarfile
import time

from skiff import errors
from skiff import sys as ksys
from skiff.image import manifest as mf
from skiff.image import reference
from skiff.image.archive.apply import apply_layer
from skiff.image.content import digest_bytes, validate_digest

COPY_BUF = 1 << 20


class _Dir:
    """A directory whose files are only ever opened inside it."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self):
        os.close(self.fd)

    def open(self, rel: str):
        try:
            fd = ksys.openat2(self.fd, rel, os.O_RDONLY, 0,
                              ksys.RESOLVE_IN_ROOT | ksys.RESOLVE_NO_MAGICLINKS)
        except FileNotFoundError:
            raise errors.InvalidArgument(f"invalid archive: {rel} is missing") from None
        except IsADirectoryError:
            raise errors.InvalidArgument(f"invalid archive: {rel} is a directory") from None
        return os.fdopen(fd, "rb")

    def exists(self, rel: str) -> bool:
        try:
            self.open(rel).close()
            return True
        except errors.InvalidArgument:
            return False

    def read(self, rel: str, limit: int = 64 << 20) -> bytes:
        with self.open(rel) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise errors.InvalidArgument(f"invalid archive: {rel} is too large")
        return data

    def json(self, rel: str):
        try:
            return json.loads(self.read(rel))
        except ValueError as e:
            raise errors.InvalidArgument(f"invalid archive: {rel}: {e}") from None


def _blob_path(digest: str) -> str:
    validate_digest(digest)
    return f"blobs/sha256/{digest[7:]}"


# --------------------------------------------------------------------- load
def load(svc, fileobj) -> list[str]:
    work = os.path.join(svc.tmpdir, f"load-{os.getpid()}-{secrets.token_hex(8)}")
    os.makedirs(work)
    try:
        try:
            apply_layer(fileobj, work)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(f"invalid archive: {e.message}") from None
        return load_dir(svc, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_dir(svc, path: str, ref: str | None = None) -> list[str]:
    d = _Dir(path)
    try:
        if d.exists("manifest.json"):
            entries = _docker_entries(d)
        elif d.exists("index.json"):
            entries = _oci_entries(d, ref)
        else:
            raise errors.InvalidArgument(
                "invalid archive: neither manifest.json nor index.json found "
                "(not a docker save or OCI archive)")
        if not entries:
            raise errors.InvalidArgument("invalid archive: no images in it")
        lines = []
        for e in entries:
            before = svc._repos()["tags"]
            with svc.content.lease() as lease:
                im = _load_one(svc, d, e, lease)
            for t in e["tags"]:
                old = before.get(t)
                if old and old != im.id:
                    lines.append(f"The image {t} already exists, renaming the old one with ID "
                                 f"{old} to empty string")
            if e["tags"]:
                lines += [f"Loaded image: {t}" for t in e["tags"]]
            else:
                lines.append(f"Loaded image ID: {im.id}")
        return lines
    finally:
        d.close()


def _docker_entries(d: _Dir) -> list[dict]:
    mj = d.json("manifest.json")
    if not isinstance(mj, list):
        raise errors.InvalidArgument("invalid archive: manifest.json is not a list")
    out = []
    for m in mj:
        if not isinstance(m, dict) or "Config" not in m:
            raise errors.InvalidArgument("invalid archive: manifest.json entry without Config")
        layers = [{"path": p, "digest": None, "mediaType": None} for p in m.get("Layers") or []]
        tags = []
        for t in m.get("RepoTags") or []:
            tags.append(reference.parse(t).tagged)
        out.append({"config_path": m["Config"], "config_digest": None, "layers": layers,
                    "tags": tags, "manifest": None})
    return out


def _oci_entries(d: _Dir, want: str | None) -> list[dict]:
    index = d.json("index.json")
    out = []

    def walk(desc, names):
        mt = desc.get("mediaType")
        dg = validate_digest(desc["digest"])
        if mt in mf.INDEX_TYPES:
            sub = d.json(_blob_path(dg))
            chosen = mf.pick_platform(sub.get("manifests") or [])
            if chosen:
                walk(chosen, names)
            return
        raw = d.read(_blob_path(dg))
        if digest_bytes(raw) != dg:
            raise errors.DigestMismatch(f"invalid archive: manifest {dg} does not match "
                                        f"its digest")
        m = json.loads(raw)
        if m.get("mediaType") in mf.INDEX_TYPES or "manifests" in m:
            chosen = mf.pick_platform(m.get("manifests") or [])
            if chosen:
                walk(chosen, names)
            return
        layers = [{"path": _blob_path(l["digest"]), "digest": l["digest"],
                   "mediaType": l.get("mediaType")} for l in m.get("layers", [])]
        out.append({"config_path": _blob_path(m["config"]["digest"]),
                    "config_digest": m["config"]["digest"], "layers": layers,
                    "tags": names, "manifest": (raw, dg)})

    for desc in index.get("manifests") or []:
        ann = desc.get("annotations") or {}
        full = ann.get(mf.CONTAINERD_NAME_ANNOTATION)
        short = ann.get(mf.REF_NAME_ANNOTATION)
        names = []
        if want:
            if want not in (short, full) and not (full and reference.parse(full).tagged == want):
                continue
        if full:
            names.append(reference.parse(full).tagged)
        elif short:
            # a bare tag ("latest", umoci/skopeo) names no repository; a full
            # reference (older docker/containerd) does
            if ":" in short or "/" in short:
                try:
                    names.append(reference.parse(short).tagged)
                except errors.InvalidArgument:
                    pass
        walk(desc, names)
    if want and not out:
        raise errors.ImageNotFound(want)
    return out


def _load_one(svc, d: _Dir, e: dict, lease=None):
    config = d.read(e["config_path"])
    if e["config_digest"] and digest_bytes(config) != e["config_digest"]:
        raise errors.DigestMismatch(f"invalid archive: config {e['config_digest']} does not "
                                    f"match its digest")
    try:
        cfg = json.loads(config)
    except ValueError:
        raise errors.InvalidArgument("invalid archive: image config is not JSON") from None
    diff_ids = svc._config_check(cfg, len(e["layers"]))
    parent = None
    layers = []
    for l, diff_id in zip(e["layers"], diff_ids):
        desc, parent = _ingest_layer(svc, d, l, diff_id, parent, lease)
        layers.append(desc)
    mbytes, mdigest = e["manifest"] if e["manifest"] else (None, None)
    return svc._register(config, layers, tags=e["tags"], manifest_digest=mdigest,
                         manifest_bytes=mbytes)


def _ingest_layer(svc, d: _Dir, l: dict, diff_id: str, parent: str | None, lease=None):
    from skiff.storage.snapshots import chain_ids
    chain = diff_id if parent is None else chain_ids([parent, diff_id])[1]
    with d.open(l["path"]) as f:
        if svc.storage.has(chain) and l["digest"] and svc.content.has(l["digest"]):
            digest = l["digest"]
            if lease:
                lease.add(digest)
            size = svc.content.size(digest)
            head = f.read(4)
        elif svc.storage.has(chain):
            digest = svc.content.add_stream(f, l["digest"], lease=lease)
            size = svc.content.size(digest)
            with svc.content.open(digest) as g:
                head = g.read(4)
        else:
            desc, chain2, res = svc._store_layer_stream(f, parent, lease, diff_id=diff_id,
                                                        digest=l["digest"])
            if l["mediaType"]:
                desc["mediaType"] = l["mediaType"]
            return desc, chain2
    from skiff.image.archive.compress import detect
    mt = l["mediaType"] or mf.docker_layer_type(detect(head))
    return {"mediaType": mt, "digest": digest, "size": size, "diff_id": diff_id}, chain


# --------------------------------------------------------------------- save
def _plan(svc, refs) -> list[dict]:
    plan = []
    if isinstance(refs, str):
        refs = [refs]
    for ref in refs:
        iid, how = svc._resolve(ref)
        im = svc._image(iid)
        if how == "tag":
            tags = [reference.parse(ref).tagged]
        elif how == "digest":
            tags = []
        else:
            tags = list(im.repo_tags) if how == "prefix" and False else []
        for p in plan:
            if p["image"].id == iid:
                p["tags"] += [t for t in tags if t not in p["tags"]]
                break
        else:
            plan.append({"image": im, "tags": tags})
    return plan


def _manifest_for(svc, im) -> bytes:
    config_size = svc.content.size(im.id)
    layers = []
    for l in im.layers:
        if not svc.content.has(l["digest"]):
            raise errors.NotFound(f"layer blob {l['digest']} of image {im.id} is missing "
                                  f"from the content store")
        layers.append({"mediaType": mf.to_oci_layer_type(l["mediaType"]),
                       "digest": l["digest"], "size": svc.content.size(l["digest"])})
    m = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
         "config": {"mediaType": mf.OCI_CONFIG, "digest": im.id, "size": config_size},
         "layers": layers}
    return json.dumps(m, indent=None, separators=(",", ":")).encode()


def _index_and_blobs(svc, plan):
    blobs: dict[str, tuple[str, bytes | None]] = {}  # digest -> (path in store, bytes)
    manifests = []
    dmanifest = []
    for p in plan:
        im = p["image"]
        mbytes = _manifest_for(svc, im)
        mdg = digest_bytes(mbytes)
        blobs[mdg] = ("", mbytes)
        blobs[im.id] = (svc.content.path(im.id), None)
        for l in im.layers:
            blobs[l["digest"]] = (svc.content.path(l["digest"]), None)
        names = p["tags"] or [None]
        for name in names:
            desc = {"mediaType": mf.OCI_MANIFEST, "digest": mdg, "size": len(mbytes)}
            if name:
                r = reference.parse(name)
                full = r.name if "/" in r.name and ("." in r.name.split("/")[0] or ":" in
                                                    r.name.split("/")[0] or
                                                    r.name.startswith("localhost/")) \
                    else ("docker.io/" + (r.name if "/" in r.name else "library/" + r.name))
                desc["annotations"] = {mf.CONTAINERD_NAME_ANNOTATION: f"{full}:{r.tag}",
                                       mf.REF_NAME_ANNOTATION: r.tag}
            manifests.append(desc)
        dmanifest.append({"Config": _blob_path(im.id), "RepoTags": p["tags"] or None,
                          "Layers": [_blob_path(l["digest"]) for l in im.layers]})
    index = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": manifests}
    return index, blobs, dmanifest


def save(svc, refs, fileobj) -> None:
    plan = _plan(svc, refs)
    index, blobs, dmanifest = _index_and_blobs(svc, plan)
    tf = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
    tf.copybufsize = COPY_BUF
    now = int(time.time())

    def add_bytes(name, data, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), mode, now
        tf.addfile(ti, io.BytesIO(data))

    def add_dir(name):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, now
        tf.addfile(ti)

    add_dir("blobs")
    add_dir("blobs/sha256")
    for dg, (path, data) in blobs.items():
        if data is not None:
            add_bytes(_blob_path(dg), data)
        else:
            with open(path, "rb") as f:
                ti = tarfile.TarInfo(_blob_path(dg))
                ti.size, ti.mode, ti.mtime = os.fstat(f.fileno()).st_size, 0o644, now
                tf.addfile(ti, f)
    add_bytes("index.json", json.dumps(index).encode())
    add_bytes("manifest.json", json.dumps(dmanifest).encode())
    add_bytes("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    tf.close()


def save_layout(svc, refs, path: str) -> None:
    """Write (or add to) an OCI image layout directory."""
    plan = _plan(svc, refs)
    index, blobs, _ = _index_and_blobs(svc, plan)
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    for dg, (src, data) in blobs.items():
        dst = os.path.join(path, _blob_path(dg))
        if os.path.exists(dst):
            continue
        tmp = dst + ".tmp"
        if data is not None:
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            shutil.copyfile(src, tmp)
        os.rename(tmp, dst)
    ip = os.path.join(path, "index.json")
    if os.path.exists(ip):
        with open(ip) as f:
            old = json.load(f)
        keep = []
        newnames = {(m.get("annotations") or {}).get(mf.REF_NAME_ANNOTATION)
                    for m in index["manifests"]}
        for m in old.get("manifests") or []:
            if (m.get("annotations") or {}).get(mf.REF_NAME_ANNOTATION) not in newnames:
                keep.append(m)
        index["manifests"] = keep + index["manifests"]
    with open(ip + ".tmp", "w") as f:
        json.dump(index, f)
    os.rename(ip + ".tmp", ip)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
