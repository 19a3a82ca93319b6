"""ImageService: the facade the engine (and the registry client) call.

State under ``root`` (the daemon's data root):

    image/content/                 ContentStore (configs, layer blobs, manifests)
    image/imagedb/<id hex>.json    one record per image: layers, parent,
                                   manifest digests, created/tagged times
    image/repositories.json        tags and digests → image IDs
    image/tmp/                     archives being loaded
    storage/                       SnapshotStore (snapshots, container layers)

An image ID is the sha256 of its config bytes, as in Docker. Layers are
stored once: a layer blob once in the content store (by digest), its
unpacked form once in storage (by chain ID), whatever the number of images
that use it.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass, field

from skiff import errors
from skiff import sys as ksys
from skiff.image import manifest as mf
from skiff.image import reference
from skiff.image.archive.compress import LayerError
from skiff.image.content import ContentStore, digest_bytes, validate_digest
from skiff.storage.snapshots import SnapshotStore, chain_ids as _chain_ids


def _now_rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    d = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}000Z"


def _parse_time(s: str | None) -> float:
    if not s:
        return 0.0
    try:
        base, _, frac = s.rstrip("Z").partition(".")
        tz = 0
        if "+" in frac or "-" in frac:
            pass
        frac_digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        d = _dt.datetime.strptime(base[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=_dt.timezone.utc)
        return d.timestamp() + (int(frac_digits) / 10 ** len(frac_digits) if frac_digits else 0) \
            + tz
    except ValueError:
        return 0.0


def _path_match(pattern: str, s: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` do not cross "/"."""
    rx, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                return False               # Go: ErrBadPattern, no match
            body = pattern[i + 1:j]
            if body.startswith("^"):
                body = "!" + body[1:]
            rx += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            rx += re.escape(pattern[i])
        else:
            rx += re.escape(c)
        i += 1
    return re.fullmatch(rx, s) is not None


def _ref_match(pattern: str, ref: str) -> bool:
    """Docker's reference filter (FamiliarMatch): the pattern against the
    familiar reference ("busybox:latest", "host/x@sha256:…") or its name."""
    if "@" in ref:
        name = ref.split("@", 1)[0]
    else:
        head, sep, tail = ref.rpartition(":")
        name = head if sep and "/" not in tail else ref
    return _path_match(pattern, ref) or _path_match(pattern, name)


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


@dataclass
class Image:
    id: str
    config: dict
    diff_ids: list[str]
    chain_ids: list[str]
    layers: list[dict]                 # descriptors {mediaType, digest, size}
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    parent: str = ""
    created: float = 0.0
    record: dict = field(default_factory=dict, repr=False)

    @property
    def short_id(self) -> str:
        return self.id[7:19]


class _TeeToContent:
    """Read from ``src`` and write the same bytes into a content writer."""

    def __init__(self, src, writer):
        self.src = src
        self.w = writer

    def read(self, n=-1):
        b = self.src.read(n)
        if b:
            self.w.write(b)
        return b


class ImageService:
    def __init__(self, root: str, storage_root: str | None = None):
        self.root = os.path.abspath(root)
        self.image_root = os.path.join(self.root, "image")
        self.content = ContentStore(os.path.join(self.image_root, "content"))
        self.dbdir = os.path.join(self.image_root, "imagedb")
        self.tmpdir = os.path.join(self.image_root, "tmp")
        for d in (self.dbdir, self.tmpdir):
            os.makedirs(d, exist_ok=True)
        self.storage = SnapshotStore(storage_root or os.path.join(self.root, "storage"))
        self.repos_path = os.path.join(self.image_root, "repositories.json")
        self._lock = threading.RLock()
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        """Drop leftovers of loads/commits/exports whose process is gone
        (another ImageService on the same root may be working right now).
        A leftover export mount is unmounted first: rmtree must never walk
        into a container's filesystem."""
        for name in os.listdir(self.tmpdir):
            parts = name.split("-")
            if len(parts) >= 3 and parts[1].isdigit():
                pid = int(parts[1])
                if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
                    continue
            p = os.path.join(self.tmpdir, name)
            if os.path.ismount(p):
                try:
                    ksys.umount(p, ksys.MNT_DETACH)
                except OSError:
                    continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass

    # ------------------------------------------------------------------ db
    def _repos(self) -> dict:
        try:
            with open(self.repos_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("tags", {})
        data.setdefault("digests", {})
        return data

    def _save_repos(self, data: dict) -> None:
        _write_json(self.repos_path, data)

    def _record_path(self, image_id: str) -> str:
        return os.path.join(self.dbdir, validate_digest(image_id)[7:] + ".json")

    def _record(self, image_id: str) -> dict | None:
        try:
            with open(self._record_path(image_id)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def _ids(self) -> list[str]:
        return ["sha256:" + n[:-5] for n in os.listdir(self.dbdir)
                if n.endswith(".json") and len(n) == 69]

    def _image(self, image_id: str, repos: dict | None = None) -> Image:
        rec = self._record(image_id)
        if rec is None:
            raise errors.ImageNotFound(image_id)
        repos = repos if repos is not None else self._repos()
        config = json.loads(self.content.read(image_id))
        diff_ids = list(config.get("rootfs", {}).get("diff_ids") or [])
        chains = _chain_ids(diff_ids)
        size = 0
        for c in chains:
            try:
                size += self.storage.meta(c).get("size", 0)
            except errors.NotFound:
                pass
        tags = sorted(t for t, i in repos["tags"].items() if i == image_id)
        digests = sorted(t for t, i in repos["digests"].items() if i == image_id)
        return Image(id=image_id, config=config, diff_ids=diff_ids, chain_ids=chains,
                     layers=rec.get("layers", []), repo_tags=tags, repo_digests=digests,
                     size=size, parent=rec.get("parent", ""),
                     created=_parse_time(config.get("created")), record=rec)

    def images(self) -> list[Image]:
        repos = self._repos()
        out = []
        for i in self._ids():
            try:
                out.append(self._image(i, repos))
            except (errors.NotFound, ValueError):
                continue
        return out

    # --------------------------------------------------------------- lookup
    def resolve(self, ref_or_id: str) -> str:
        """Image ID for a reference, full or short ID."""
        return self._resolve(ref_or_id)[0]

    def _resolve(self, ref_or_id: str) -> tuple[str, str]:
        """(image ID, how): how is "id", "tag", "digest" or "prefix"."""
        s = ref_or_id.strip() if isinstance(ref_or_id, str) else ""
        if not s:
            raise errors.ImageNotFound(ref_or_id)
        m = reference.ID_RE.match(s)
        if m:
            iid = "sha256:" + m.group(1)
            if self._record(iid) is not None:
                return iid, "id"
            raise errors.ImageNotFound(iid)
        repos = self._repos()
        parse_error = None
        try:
            r = reference.parse(s)
        except errors.InvalidArgument as e:
            r, parse_error = None, e
        if r is not None:
            if r.digest:
                iid = repos["digests"].get(f"{r.name}@{r.digest}")
                if iid:
                    return iid, "digest"
            elif r.tag:
                iid = repos["tags"].get(f"{r.name}:{r.tag}")
                if iid:
                    return iid, "tag"
        hexpart = s[7:] if s.startswith("sha256:") else s
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) < 64:
            found = [i for i in self._ids() if i[7:].startswith(hexpart)]
            if len(found) == 1:
                return found[0], "prefix"
            if len(found) > 1:
                raise errors.InvalidArgument(
                    f"ambiguous image ID prefix {s!r}: matches {len(found)} images")
        if r is None and not s.startswith("sha256:"):
            raise parse_error or errors.InvalidArgument("invalid reference format")
        if r is not None and not s.startswith("sha256:"):
            # Docker names the normalised reference: "No such image: foo:latest"
            raise errors.ImageNotFound(r.tagged if not r.digest else f"{r.name}@{r.digest}")
        raise errors.ImageNotFound(ref_or_id)

    def get(self, ref_or_id: str) -> Image:
        return self._image(self.resolve(ref_or_id))

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.resolve(ref_or_id)
            return True
        except (errors.NotFound, errors.InvalidArgument):
            return False

    # ------------------------------------------------------------- register
    def _register(self, config_bytes: bytes, layers: list[dict], *, tags=(),
                  repo_digests=(), parent: str = "", manifest_digest: str | None = None,
                  manifest_bytes: bytes | None = None) -> Image:
        """Store config (and manifest), write the image record and tags."""
        with self._lock:  # under the lock: a concurrent rmi's GC cannot drop the config
            iid = self.content.add_bytes(config_bytes)
            rec = self._record(iid) or {"id": iid, "layers": layers, "parent": parent,
                                        "created_at": time.time(), "manifests": []}
            if parent and not rec.get("parent"):
                rec["parent"] = parent
            if manifest_digest and manifest_bytes is not None:
                self.content.add_bytes(manifest_bytes, manifest_digest)
                if manifest_digest not in rec["manifests"]:
                    rec["manifests"].append(manifest_digest)
            _write_json(self._record_path(iid), rec)
            for t in tags:
                self._set_tag(t, iid)
            if repo_digests:
                repos = self._repos()
                for d in repo_digests:
                    repos["digests"][d] = iid
                self._save_repos(repos)
        return self._image(iid)

    def add_repo_digest(self, image: str, repo_digest: str,
                        manifest_bytes: bytes | None = None) -> None:
        """Record ``name@sha256:…`` as a RepoDigest of ``image`` (an ID or
        reference), as docker push does. With ``manifest_bytes`` (the manifest
        of that digest) the manifest is kept with the image: a later push
        sends the same bytes, and the blobs it names count as referenced."""
        r = reference.parse(repo_digest)
        if not r.digest:
            raise errors.InvalidArgument(f"{repo_digest}: not a digest reference")
        iid = self.resolve(image)
        repo_digest = f"{r.name}@{r.digest}"
        with self._lock:
            rec = self._record(iid)
            if rec is None:
                raise errors.ImageNotFound(f"No such image: {image}")
            if manifest_bytes is not None:
                self.content.add_bytes(manifest_bytes, r.digest)
                rec.setdefault("manifests", [])
                if r.digest not in rec["manifests"]:
                    rec["manifests"].append(r.digest)
                    _write_json(self._record_path(iid), rec)
            repos = self._repos()
            repos["digests"][repo_digest] = iid
            self._save_repos(repos)

    def _set_tag(self, tag: str, iid: str) -> None:
        r = reference.parse(tag)
        if r.digest:
            raise errors.InvalidArgument("refusing to create a tag with a digest reference")
        with self._lock:
            repos = self._repos()
            repos["tags"][r.tagged] = iid
            self._save_repos(repos)
            rec = self._record(iid)
            if rec is not None:
                rec["last_tag_time"] = time.time()
                _write_json(self._record_path(iid), rec)

    def tag(self, src: str, repo: str, tag: str | None = None) -> None:
        iid = self.resolve(src)
        if tag:
            ref = f"{repo}:{tag}"
        else:
            ref = repo
        r = reference.parse(ref)
        if r.digest:
            raise errors.InvalidArgument("refusing to create a tag with a digest reference")
        self._set_tag(str(r), iid)

    def _config_check(self, config: dict, nlayers: int) -> list[str]:
        diff_ids = config.get("rootfs", {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != nlayers:
            raise errors.InvalidArgument(
                f"invalid image: config has {len(diff_ids or [])} diff IDs for "
                f"{nlayers} layers")
        for d in diff_ids:
            validate_digest(d)
        return diff_ids

    # --------------------------------------------------------------- layers
    def apply_layer(self, parent_chain: str | None, diff_id: str, digest: str | None = None,
                    fileobj=None, **limits) -> str:
        """Make sure the snapshot for (parent chain + diff_id) exists; returns
        its chain ID. Reads ``fileobj`` if given, else blob ``digest`` from
        the content store. Used by load, import, commit and by pull (which
        may call it as soon as a layer is downloaded)."""
        validate_digest(diff_id)
        chain = diff_id if parent_chain is None else _chain_ids([parent_chain, diff_id])[1]
        if self.storage.has(chain):
            return chain
        close = False
        if fileobj is None:
            if not digest:
                raise errors.InvalidArgument("apply_layer needs a blob digest or a stream")
            fileobj = self.content.open(digest)
            close = True
        try:
            got, _ = self.storage.apply(parent_chain, fileobj, diff_id=diff_id, digest=digest,
                                        **limits)
        finally:
            if close:
                fileobj.close()
        return got

    def add(self, manifest, config: bytes, ref: str | None = None, *,
            manifest_digest: str | None = None, **limits) -> Image:
        """Register an image whose manifest, config and layer blobs are in
        the content store (a pull). Unpacks missing layers, records the repo
        digest and tags ``ref``."""
        if isinstance(manifest, (bytes, bytearray)):
            manifest_bytes = bytes(manifest)
            m = json.loads(manifest_bytes)
        else:
            m = manifest
            manifest_bytes = mf.canonical(m)
        manifest_digest = manifest_digest or digest_bytes(manifest_bytes)
        cfg = json.loads(config)
        layers = [{"mediaType": l.get("mediaType", mf.DOCKER_LAYER_GZIP),
                   "digest": validate_digest(l["digest"]), "size": l.get("size", 0)}
                  for l in m.get("layers", [])]
        diff_ids = self._config_check(cfg, len(layers))
        parent = None
        for l, d in zip(layers, diff_ids):
            l["diff_id"] = d
            parent = self.apply_layer(parent, d, l["digest"], **limits)
        tags, rdigests = [], []
        if ref:
            r = reference.parse(ref)
            if r.tag and not r.digest:
                tags.append(r.tagged)
            rdigests.append(f"{r.name}@{manifest_digest}")
        return self._register(bytes(config), layers, tags=tags, repo_digests=rdigests,
                              manifest_digest=manifest_digest, manifest_bytes=manifest_bytes)

    # ------------------------------------------------------------- JSON API
    @staticmethod
    def _config_json(cfg: dict) -> dict:
        base = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                "AttachStdout": False, "AttachStderr": False, "Tty": False,
                "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
                "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                "OnBuild": None, "Labels": None}
        base.update(cfg or {})
        return base

    def _shared_counts(self, images: list[Image]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for im in images:
            for c in im.chain_ids:
                counts[c] = counts.get(c, 0) + 1
        return counts

    def _layer_size(self, chain: str) -> int:
        try:
            return self.storage.meta(chain).get("size", 0)
        except errors.NotFound:
            return 0

    def _summary(self, im: Image, counts: dict[str, int] | None = None,
                 containers: int = -1) -> dict:
        shared = -1
        if counts is not None:
            shared = sum(self._layer_size(c) for c in im.chain_ids if counts.get(c, 0) > 1)
        tags = im.repo_tags
        return {"Id": im.id, "ParentId": im.parent or "", "RepoTags": tags,
                "RepoDigests": im.repo_digests, "Created": int(im.created),
                "Size": im.size, "SharedSize": shared,
                "Labels": (im.config.get("config") or {}).get("Labels") or {},
                "Containers": containers}

    def list_json(self, filters: dict | None = None, all: bool = False,
                  containers: dict[str, int] | None = None) -> list[dict]:
        """GET /images/json. ``filters``: Docker's {"dangling": ["true"],
        "reference": [...], "label": [...], "before": [...], "since": [...]}
        (values may also be plain strings/bools)."""
        filters = {k: (v if isinstance(v, (list, tuple)) else
                       (list(v.keys()) if isinstance(v, dict) else [v]))
                   for k, v in (filters or {}).items()}
        for k in filters:
            if k not in ("dangling", "reference", "label", "before", "since", "until"):
                raise errors.InvalidArgument(f"invalid filter '{k}'")
        images = self.images()
        out = []
        before = since = None
        if filters.get("before"):
            before = self.get(str(filters["before"][0])).created
        if filters.get("since"):
            since = self.get(str(filters["since"][0])).created
        for im in images:
            if "dangling" in filters:
                want = str(filters["dangling"][0]).lower() in ("true", "1")
                if want != (not im.repo_tags):
                    continue
            tags = digests = None
            if filters.get("reference"):
                # Docker lists only the references that match (not every
                # tag of the image), and skips an image none of whose do
                pats = [str(p) for p in filters["reference"]]
                tags = [t for t in im.repo_tags if any(_ref_match(p, t) for p in pats)]
                digests = [d for d in im.repo_digests if any(_ref_match(p, d) for p in pats)]
                if not tags and not digests:
                    continue
            if filters.get("label"):
                labels = (im.config.get("config") or {}).get("Labels") or {}
                ok = True
                for lf in filters["label"]:
                    k, eq, v = str(lf).partition("=")
                    if k not in labels or (eq and labels[k] != v):
                        ok = False
                if not ok:
                    continue
            if before is not None and not im.created < before:
                continue
            if since is not None and not im.created > since:
                continue
            summary = self._summary(im, None, (containers or {}).get(im.id, 0)
                                    if containers is not None else -1)
            if tags is not None:
                summary["RepoTags"], summary["RepoDigests"] = tags, digests
            out.append(summary)
        out.sort(key=lambda d: d["Created"], reverse=True)
        return out

    def inspect_json(self, ref: str) -> dict:
        im = self.get(ref)
        cfg = im.config
        lowers = [self.storage.path(c) for c in reversed(im.chain_ids)]
        graph = {"Name": "overlay2", "Data": {}}
        if lowers:
            graph["Data"] = {"UpperDir": lowers[0],
                             "MergedDir": os.path.join(os.path.dirname(lowers[0]), "merged"),
                             "WorkDir": os.path.join(os.path.dirname(lowers[0]), "work")}
            if len(lowers) > 1:
                graph["Data"]["LowerDir"] = ":".join(lowers[1:])
        rec = im.record
        out = {
            "Id": im.id,
            "RepoTags": im.repo_tags,
            "RepoDigests": im.repo_digests,
            "Parent": im.parent or "",
            "Comment": next((h.get("comment", "") for h in reversed(cfg.get("history") or [])),
                            ""),
            "Created": cfg.get("created", ""),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": self._config_json(cfg.get("config")),
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": im.size,
            "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": im.diff_ids},
            "Metadata": {"LastTagTime": _now_rfc3339(rec["last_tag_time"])
                         if rec.get("last_tag_time") else "0001-01-01T00:00:00Z"},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        return out

    def history_json(self, ref: str) -> list[dict]:
        im = self.get(ref)
        hist = im.config.get("history") or []
        out = []
        li = 0
        for h in hist:
            size = 0
            if not h.get("empty_layer"):
                if li < len(im.chain_ids):
                    c = im.chain_ids[li]
                    size = self._layer_size(c)
                li += 1
            out.append({"Id": "<missing>", "Created": int(_parse_time(h.get("created"))),
                        "CreatedBy": h.get("created_by", ""), "Tags": None,
                        "Size": size, "Comment": h.get("comment", "")})
        if not out:
            out = [{"Id": "<missing>", "Created": int(im.created), "CreatedBy": "",
                    "Tags": None, "Size": im.size, "Comment": ""}]
        # rows that end a locally known parent image show its ID and tags
        p, seen = im.parent, set()
        while p and p not in seen:
            seen.add(p)
            try:
                pim = self._image(p)
            except errors.NotFound:
                break
            n = len(pim.config.get("history") or [])
            if 0 < n <= len(out):
                out[n - 1]["Id"] = pim.id
                out[n - 1]["Tags"] = pim.repo_tags or None
            p = pim.parent
        out.reverse()
        out[0]["Id"] = im.id
        out[0]["Tags"] = im.repo_tags or None
        return out

    # ---------------------------------------------------------- containers
    def prepare_container(self, container_id: str, image: str | None) -> dict:
        """Create the container's writable layer on the image's chain."""
        if image:
            im = self.get(image)
            return self.storage.prepare(container_id, im.chain_ids, im.id)
        return self.storage.prepare(container_id, [], None)

    def mount_container(self, container_id: str, target: str | None = None) -> str:
        return self.storage.mount(container_id, target)

    def unmount_container(self, container_id: str, target: str | None = None) -> None:
        self.storage.unmount(container_id, target)

    def remove_container(self, container_id: str) -> None:
        self.storage.remove_container(container_id)

    def container_changes(self, container_id: str) -> list[dict]:
        return self.storage.changes(container_id)

    def container_size(self, container_id: str) -> int:
        return self.storage.container_size(container_id)

    # -------------------------------------------------------------- remove
    def _referenced_blobs(self) -> set[str]:
        keep = set()
        for i in self._ids():
            rec = self._record(i)
            if rec is None:
                continue
            keep.add(i)
            keep.update(l["digest"] for l in rec.get("layers", []))
            for md in rec.get("manifests", []):
                keep.add(md)
                keep.update(self._manifest_blobs(md))
        return keep

    def _manifest_blobs(self, digest: str) -> list[str]:
        """The blobs a stored image manifest names (config and layers; a
        push records manifests naming compressed blobs of its own)."""
        try:
            m = json.loads(self.content.read(digest))
        except (errors.SkiffError, OSError, ValueError):
            return []
        if not isinstance(m, dict):
            return []
        out = [d["digest"] for d in m.get("layers") or [] if isinstance(d, dict) and d.get("digest")]
        cfg = m.get("config")
        if isinstance(cfg, dict) and cfg.get("digest"):
            out.append(cfg["digest"])
        return out

    def _chains_in_use(self, exclude: str | None = None) -> set[str]:
        used = set()
        for im in self.images():
            if im.id != exclude:
                used.update(im.chain_ids)
        for cid in self.storage.container_ids():
            try:
                used.update(self.storage.container_meta(cid).get("chain", []))
            except errors.NotFound:
                pass
        return used

    def _users(self, iid: str, in_use) -> list[str]:
        if not in_use:
            return []
        if isinstance(in_use, dict):
            v = in_use.get(iid)
            if v is None:
                return []
            return list(v) if isinstance(v, (list, tuple, set)) else [str(v)]
        return ["?"] if iid in in_use else []

    def remove(self, ref: str, force: bool = False, noprune: bool = False,
               in_use=None) -> list[dict]:
        """DELETE /images/{name}. ``in_use``: set of image IDs used by
        containers, or {image ID: [container IDs]}."""
        with self._lock:
            iid, how = self._resolve(ref)
            im = self._image(iid)
            repos = self._repos()
            by_name = how in ("tag", "digest")
            out: list[dict] = []
            users = self._users(iid, in_use)
            if by_name:
                r = reference.parse(ref)
                key = r.tagged if not r.digest else f"{r.name}@{r.digest}"
                if len(im.repo_tags) + len(im.repo_digests) > 1 and \
                        (len(im.repo_tags) > 1 or r.digest):
                    self._untag(repos, key)
                    out = [{"Untagged": key}]
                    if not r.digest and not any(reference.parse(t).name == r.name
                                                for t in im.repo_tags if t != key):
                        # Docker: the repository's last tag takes its digests along
                        for d in im.repo_digests:
                            if d.split("@", 1)[0] == r.name:
                                self._untag(repos, d)
                                out.append({"Untagged": d})
                    return out
                if users and not force:
                    raise errors.Conflict(
                        f"conflict: unable to remove repository reference \"{ref}\" "
                        f"(must force) - container {users[0][:12]} is using its referenced "
                        f"image {iid[7:19]}")
            else:
                if len(im.repo_tags) > 1 and not force:
                    raise errors.Conflict(
                        f"conflict: unable to delete {iid[7:19]} (must be forced) - image is "
                        f"referenced in multiple repositories")
                if users and not force:
                    raise errors.Conflict(
                        f"conflict: unable to delete {iid[7:19]} (must be forced) - image "
                        f"is being used by stopped container {users[0][:12]}")
            for t in im.repo_tags + im.repo_digests:
                self._untag(repos, t)
                out.append({"Untagged": t})
            if users and force:
                # The image stays (dangling) while a container uses it: its
                # config and blobs are what a commit or save of that
                # container builds on. It goes with the last container
                # (image prune).
                return out
            out.extend(self._delete_image(iid))
            return out

    def _untag(self, repos: dict, key: str) -> None:
        repos["tags"].pop(key, None)
        repos["digests"].pop(key, None)
        self._save_repos(repos)

    def _delete_image(self, iid: str) -> list[dict]:
        im = self._image(iid)
        os.unlink(self._record_path(iid))
        out = [{"Deleted": iid}]
        used = self._chains_in_use()
        for c in reversed(im.chain_ids):
            if c in used:
                break
            try:
                self.storage.remove(c)
                out.append({"Deleted": c})
            except errors.Conflict:
                break
        self.content.gc(self._referenced_blobs())
        return out

    def prune(self, all: bool = False, filters: dict | None = None, in_use=None) -> dict:
        """POST /images/prune: dangling images (or every unused one)."""
        deleted: list[dict] = []
        reclaimed = 0
        with self._lock:
            before = self._usage_bytes()
            images = self.images()
            parents = {im.parent for im in images if im.parent}
            for im in images:
                if im.repo_tags and not all:
                    continue
                if im.id in parents and not all:
                    continue  # an untagged parent of another image is not dangling
                if self._users(im.id, in_use):
                    continue
                if filters and filters.get("label"):
                    labels = (im.config.get("config") or {}).get("Labels") or {}
                    lf = filters["label"]
                    lf = lf if isinstance(lf, list) else [lf]
                    ok = True
                    for l in lf:
                        k, eq, v = str(l).partition("=")
                        if k not in labels or (eq and labels[k] != v):
                            ok = False
                    if not ok:
                        continue
                repos = self._repos()
                for t in im.repo_tags + im.repo_digests:
                    self._untag(repos, t)
                    deleted.append({"Untagged": t})
                deleted.extend(self._delete_image(im.id))
            self.gc()
            reclaimed = max(0, before - self._usage_bytes())
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _usage_bytes(self) -> int:
        return sum(self.storage.usage(c) for c in self.storage.list()) + self.content.usage()

    def df(self, containers: dict[str, int] | None = None) -> dict:
        """Data for GET /system/df: {"LayersSize", "Images": [...]}; each
        image has Size, SharedSize (bytes in layers other images also use)
        and UniqueSize (Size - SharedSize)."""
        images = self.images()
        counts = self._shared_counts(images)
        out = []
        for im in images:
            s = self._summary(im, counts, (containers or {}).get(im.id, 0))
            s["UniqueSize"] = s["Size"] - s["SharedSize"]
            out.append(s)
        layers = sum(self._layer_size(c) for c in counts)
        return {"LayersSize": layers, "Images": out}

    # -------------------------------------------------------- import / commit
    def _new_config(self, base: dict | None, diff_ids: list[str], history: dict,
                    config_section: dict, author: str = "") -> bytes:
        now = _now_rfc3339()
        cfg = {}
        if base:
            cfg.update({k: v for k, v in base.items()
                        if k not in ("rootfs", "history", "created", "config",
                                     "container_config", "container", "author")})
        plat = mf.host_platform()
        cfg.setdefault("architecture", plat["architecture"])
        cfg.setdefault("os", "linux")
        if author:
            cfg["author"] = author
        cfg["config"] = config_section
        cfg["created"] = now
        hist = list((base or {}).get("history") or [])
        h = {"created": now}
        h.update({k: v for k, v in history.items() if v})
        hist.append(h)
        cfg["history"] = hist
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        return mf.canonical(cfg)

    def _store_layer_stream(self, fileobj, parent_chain: str | None, lease=None, **limits):
        """Tee a layer stream into the content store while applying it.
        Returns (descriptor, chain ID, apply result). ``lease`` keeps the
        blob from a concurrent GC until the image is registered."""
        ref = f"layer-{os.getpid()}-{secrets.token_hex(8)}"
        w = self.content.writer(ref, lease=lease)
        try:
            tee = _TeeToContent(fileobj, w)
            chain, res = self.storage.apply(parent_chain, tee, **limits)
            digest = w.commit()
        except BaseException:
            w.abort()
            raise
        desc = {"mediaType": mf.docker_layer_type(res.compression), "digest": digest,
                "size": res.compressed_size, "diff_id": res.diff_id}
        return desc, chain, res

    def import_tar(self, fileobj, repo: str | None = None, tag: str | None = None,
                   changes=(), message: str = "", source: str = "-", **limits) -> Image:
        """docker import: a root filesystem tar (plain, gzip or zstd) → a
        one-layer image."""
        tags = []
        if repo:
            r = reference.parse(f"{repo}:{tag}" if tag else repo)
            tags.append(r.tagged)
        config_section = mf.parse_changes(changes, {})
        with self.content.lease() as lease:
            desc, chain, res = self._store_layer_stream(fileobj, None, lease, **limits)
            hist = {"created_by": "", "comment": message or f"Imported from {source}"}
            cfg = self._new_config(None, [res.diff_id], hist, config_section)
            return self._register(cfg, [desc], tags=tags)

    def commit(self, container_id: str, image_id: str | None = None,
               config_changes: dict | None = None, author: str = "", comment: str = "",
               repo: str | None = None, tag: str | None = None, changes=(),
               created_by: str = "") -> Image:
        """docker commit: the container's upper directory becomes a new layer
        on top of the image's layers (which are reused, not copied).
        ``config_changes``: container-config keys (Cmd, Env, ...) to set on
        the new image (the engine passes the container's config merged with
        the request body); ``changes``: Dockerfile lines (--change). The
        container should be paused by the caller."""
        from skiff.image.archive.diff import write_tree

        meta = self.storage.container_meta(container_id)
        base_id = image_id or meta.get("image")
        base = self._image(self.resolve(base_id)) if base_id else None
        if base and base.chain_ids != meta.get("chain", []):
            raise errors.Conflict(f"container {container_id} was not created from image "
                                  f"{base.id}")
        with self.content.lease() as lease:
            return self._commit(container_id, meta, base, lease, config_changes, author,
                                comment, repo, tag, changes, created_by)

    def _commit(self, container_id, meta, base, lease, config_changes, author, comment, repo,
                tag, changes, created_by) -> Image:
        from skiff.image.archive.diff import write_tree

        upper = self.storage.upper_dir(container_id)
        tmp = os.path.join(self.tmpdir, f"commit-{os.getpid()}-{secrets.token_hex(8)}.tar")
        try:
            with open(tmp, "wb") as f:
                write_tree(upper, f, whiteouts=True)
            parent_chain = base.chain_ids[-1] if base and base.chain_ids else None
            with open(tmp, "rb") as f:
                desc, chain, res = self._store_layer_stream(f, parent_chain, lease)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        base_cfg = base.config if base else None
        section = dict((base_cfg or {}).get("config") or {})
        for k, v in (config_changes or {}).items():
            if k in ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr",
                     "Tty", "OpenStdin", "StdinOnce", "Image", "MacAddress",
                     "NetworkDisabled") or v is None:
                continue
            section[k] = v
        section = mf.parse_changes(changes, section)
        diff_ids = (base.diff_ids if base else []) + [res.diff_id]
        hist = {"created_by": created_by, "author": author, "comment": comment}
        cfg = json.loads(self._new_config(base_cfg, diff_ids, hist, section, author))
        cfg["container"] = container_id
        tags = []
        if repo:
            r = reference.parse(f"{repo}:{tag}" if tag else repo)
            tags.append(r.tagged)
        layers = (list(base.layers) if base else []) + [desc]
        return self._register(mf.canonical(cfg), layers, tags=tags,
                              parent=base.id if base else "")

    def export_container(self, container_id: str, fileobj, rootfs: str | None = None) -> None:
        """docker export: the container's whole filesystem as a tar.

        ``rootfs``: where the engine has the container's filesystem mounted
        (a running container: overlayfs refuses a second mount of the same
        upper dir). If None, the default mount point is used when mounted,
        else a private temporary mount is made and removed."""
        from skiff.image.archive.diff import write_tree

        self.storage.container_meta(container_id)
        default = os.path.join(self.storage.ctrdir, container_id, "merged")
        # wherever it is mounted already (a running container's bundle rootfs)
        for cand in [rootfs, default] + self.storage._mounts_of(container_id):
            if cand and os.path.ismount(cand):
                write_tree(cand, fileobj)
                return
        target = os.path.join(self.tmpdir, f"export-{os.getpid()}-{secrets.token_hex(8)}")
        os.makedirs(target)
        try:
            try:
                self.storage.mount(container_id, target)
            except OSError as e:
                if e.errno == 16:
                    raise errors.Conflict(
                        f"container {container_id} is mounted elsewhere: pass its rootfs "
                        f"to export") from None
                raise
            try:
                write_tree(target, fileobj)
            finally:
                self.storage.unmount(container_id, target)
        finally:
            os.rmdir(target)

    def gc(self, min_age: float = 600.0) -> dict:
        """Remove snapshots no image or container uses (older than
        ``min_age`` seconds and not made from a blob leased by a pull in
        progress) and unreferenced, unleased blobs."""
        removed = []
        with self._lock:
            used = self._chains_in_use()
            leased = self.content.leased()
            now = time.time()
            metas = {}
            for c in self.storage.list():
                try:
                    metas[c] = self.storage.meta(c)
                except errors.NotFound:
                    continue
            # newest (children) first: a parent stays while any child stays
            for c, m in sorted(metas.items(), key=lambda kv: -kv[1].get("created", 0)):
                if c in used or any(mm.get("parent") == c and x not in removed
                                    for x, mm in metas.items()):
                    continue
                if now - m.get("created", 0) < min_age or m.get("blob") in leased:
                    continue
                try:
                    self.storage.remove(c)
                    removed.append(c)
                except errors.Conflict:
                    pass
            blobs = self.content.gc(self._referenced_blobs())
        return {"snapshots": removed, "blobs": blobs}

    # ------------------------------------------------------------ save/load
    from skiff.image.archive.docker_archive import load as _load_archive  # noqa: E402
    from skiff.image.archive.docker_archive import save as _save_archive  # noqa: E402
    from skiff.image.archive.docker_archive import save_layout as _save_layout  # noqa: E402

    def load(self, fileobj, quiet: bool = False) -> list[str]:
        """docker load: a Docker archive (docker save, skopeo docker-archive)
        or an OCI archive. Returns Docker's lines ("Loaded image: x:y" or
        "Loaded image ID: sha256:...")."""
        return self._load_archive(fileobj)

    def load_layout(self, path: str, ref: str | None = None) -> list[str]:
        """Load from an OCI image layout directory (umoci, skopeo oci:)."""
        from skiff.image.archive.docker_archive import load_dir
        return load_dir(self, path, ref)

    def save(self, refs, fileobj) -> None:
        """docker save: a tar that is both a Docker archive (manifest.json,
        what `docker load` reads) and an OCI image layout (index.json)."""
        self._save_archive(refs, fileobj)

    def save_layout(self, refs, path: str) -> None:
        """Write an OCI image layout directory."""
        self._save_layout(refs, path)
