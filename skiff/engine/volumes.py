"""Named volumes, local driver (``docker volume ...``).

Layout (as Docker's): ``<data-root>/volumes/<name>/_data`` holds the
content; ``<data-root>/volumes/<name>/skiff.json`` the metadata (created
time, labels, options, anonymous flag) and ``users`` the IDs of containers
that mount it, so ``rm`` is refused while any does, across daemon restarts.
Every metadata write is atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat as _stat
import threading
from datetime import datetime, timezone

from skiff import errors

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_META = "skiff.json"
_USERS = "users"
_ANON_LABEL = "com.docker.volume.anonymous"


def _now_rfc3339() -> str:
    s = datetime.now(timezone.utc).astimezone().replace(microsecond=0).isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def _atomic_write(path: str, data: bytes):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_filters(filters) -> dict:
    """Docker's filters query value: JSON ``{"key": ["v"]}`` or the old
    ``{"key": {"v": true}}`` form."""
    if not filters:
        return {}
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError:
            raise errors.InvalidArgument(f"invalid filter: {filters}")
    out = {}
    for k, v in (filters or {}).items():
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            v = [v]
        out[k] = list(v)
    return out


def _match_labels(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels:
            return False
        if eq and labels[k] != v:
            return False
    return True


class VolumeStore:
    """The local volume driver. ``root`` is ``<data-root>/volumes``."""

    def __init__(self, root: str, in_use=None):
        self.root = root
        # optional callable(name) -> [container ids] the engine supplies, so
        # volumes mounted by containers it knows count as in use too
        self.in_use = in_use
        os.makedirs(root, 0o701, exist_ok=True)
        self._lock = threading.RLock()

    # -------------------------------------------------------- internals
    def _dir(self, name: str) -> str:
        if not NAME_RE.fullmatch(name or ""):
            raise errors.InvalidArgument(
                f'create {name}: "{name}" includes invalid characters for a local volume '
                'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to '
                "pass a host directory, use absolute path")
        return os.path.join(self.root, name)

    def _meta(self, name: str) -> dict | None:
        try:
            with open(os.path.join(self.root, name, _META)) as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError:
            return {"CreatedAt": "", "Labels": {}, "Options": {}}

    def _exists(self, name: str) -> bool:
        return NAME_RE.fullmatch(name or "") is not None and \
            os.path.isdir(os.path.join(self.root, name, "_data"))

    def users(self, name: str) -> list[str]:
        """IDs of the containers using volume ``name``."""
        out = self._recorded_users(name)
        if self.in_use is not None:
            try:
                for cid in self.in_use(name) or ():
                    if cid not in out:
                        out.append(cid)
            except Exception:
                pass
        return out

    def _recorded_users(self, name: str) -> list[str]:
        try:
            with open(os.path.join(self.root, name, _USERS)) as f:
                return [x for x in json.load(f) if x]
        except (OSError, ValueError):
            return []

    def _set_users(self, name: str, users: list[str]):
        _atomic_write(os.path.join(self.root, name, _USERS), json.dumps(users).encode())

    def _json(self, name: str, meta: dict | None = None) -> dict:
        meta = meta if meta is not None else (self._meta(name) or {})
        return {
            "CreatedAt": meta.get("CreatedAt", ""),
            "Driver": "local",
            "Labels": meta.get("Labels") or {},
            "Mountpoint": os.path.join(self.root, name, "_data"),
            "Name": name,
            "Options": meta.get("Options") or {},
            "Scope": "local",
        }

    # ----------------------------------------------------------- public
    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if self._exists(n))

    def create(self, name: str | None = None, driver: str | None = "local",
               labels: dict | None = None, options: dict | None = None,
               anonymous: bool = False) -> dict:
        """Create (or, as Docker does, return the existing) volume."""
        if driver not in (None, "", "local"):
            raise errors.NotFound(f"plugin \"{driver}\" not found")
        for k in options or {}:
            if k not in ("type", "device", "o", "size"):
                raise errors.InvalidArgument(f"invalid option: \"{k}\"")
        return self.ensure(name, labels=labels, options=options,
                           anonymous=anonymous or not name)[0]

    def get_or_create(self, name: str | None, labels=None, options=None,
                      anonymous: bool = False) -> dict:
        """The volume ``name`` (a fresh random name when empty), created if
        missing."""
        return self.ensure(name, labels=labels, options=options, anonymous=anonymous)[0]

    def ensure(self, name: str | None, labels=None, options=None,
               anonymous: bool = False) -> tuple[dict, bool]:
        """(volume, created) for ``name``, creating it when missing."""
        with self._lock:
            if not name:
                name = secrets.token_hex(32)
                anonymous = True
            d = self._dir(name)
            if self._exists(name):
                return self._json(name), False
            if options:
                # Docker's local driver would mount type/device/o at each
                # use; skiff keeps volumes as plain directories and says so
                raise errors.NotImplementedYet(
                    "local volume driver options (type, device, o, size) are not "
                    "supported by skiff: volumes are plain directories")
            labels = dict(labels or {})
            if anonymous:
                labels.setdefault(_ANON_LABEL, "")
            meta = {"CreatedAt": _now_rfc3339(), "Labels": labels,
                    "Options": dict(options or {}), "Anonymous": anonymous,
                    "Fresh": True}
            os.makedirs(d, 0o701, exist_ok=True)
            try:
                _atomic_write(os.path.join(d, _META), json.dumps(meta).encode())
                os.mkdir(os.path.join(d, "_data"), 0o755)
            except FileExistsError:
                pass
            except BaseException:
                shutil.rmtree(d, ignore_errors=True)
                raise
            return self._json(name, meta), True

    def inspect(self, name: str) -> dict:
        if not self._exists(name):
            raise errors.NotFound(f"get {name}: no such volume")
        return self._json(name)

    def list_json(self, filters=None) -> dict:
        f = parse_filters(filters)
        for k in f:
            if k not in ("dangling", "name", "label", "driver"):
                raise errors.InvalidArgument(f"invalid filter '{k}'")
        out = []
        for n in self.names():
            meta = self._meta(n) or {}
            if "name" in f and not any(x in n for x in f["name"]):
                continue
            if "driver" in f and "local" not in f["driver"]:
                continue
            if "label" in f and not _match_labels(meta.get("Labels") or {}, f["label"]):
                continue
            if "dangling" in f:
                want = f["dangling"][0].lower() in ("1", "true")
                if want != (not self.users(n)):
                    continue
            out.append(self._json(n, meta))
        return {"Volumes": out, "Warnings": []}

    def remove(self, name: str, force: bool = False, _ignore: str | None = None) -> None:
        with self._lock:
            if not self._exists(name):
                if force:
                    return
                raise errors.NotFound(f"get {name}: no such volume")
            users = [u for u in self.users(name) if u != _ignore]
            if users:
                raise errors.Conflict(f"remove {name}: volume is in use - "
                                      f"[{', '.join(users)}]")
            d = self._dir(name)
            # rename first so a half-removed volume never looks alive
            trash = os.path.join(self.root, f".removing-{name}-{secrets.token_hex(4)}")
            os.rename(d, trash)
            shutil.rmtree(trash)

    def prune(self, filters=None) -> dict:
        f = parse_filters(filters)
        for k in f:
            if k not in ("label", "label!", "all"):
                raise errors.InvalidArgument(f"invalid filter '{k}'")
        all_ = f.get("all", ["false"])[0].lower() in ("1", "true")
        deleted, reclaimed = [], 0
        for n in self.names():
            meta = self._meta(n) or {}
            labels = meta.get("Labels") or {}
            if self.users(n):
                continue
            # Docker (API >= 1.42) prunes only anonymous volumes unless all=true
            if not all_ and not meta.get("Anonymous") and _ANON_LABEL not in labels:
                continue
            if "label" in f and not _match_labels(labels, f["label"]):
                continue
            if "label!" in f and _match_labels(labels, f["label!"]):
                continue
            size = _du(os.path.join(self.root, n, "_data"))
            try:
                self.remove(n)
            except errors.SkiffError:
                continue
            deleted.append(n)
            reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def df(self) -> list[dict]:
        out = []
        for n in self.names():
            j = self._json(n)
            j["UsageData"] = {"Size": _du(j["Mountpoint"]), "RefCount": len(self.users(n))}
            out.append(j)
        return out

    # -------------------------------------------- container attachment
    def add_user(self, name: str, container_id: str) -> None:
        with self._lock:
            if not self._exists(name):
                raise errors.NotFound(f"get {name}: no such volume")
            users = self._recorded_users(name)
            if container_id not in users:
                users.append(container_id)
                self._set_users(name, users)

    def release(self, container_id: str, remove_anonymous: bool = False) -> list[str]:
        """Forget ``container_id`` as a user of every volume; with
        ``remove_anonymous`` (``docker rm -v``, ``--rm``) delete its anonymous
        volumes no other container uses. Returns the names removed."""
        removed = []
        with self._lock:
            for n in self.names():
                users = self._recorded_users(n)
                if container_id not in users:
                    continue
                users = [u for u in users if u != container_id]
                self._set_users(n, users)
                meta = self._meta(n) or {}
                others = [u for u in self.users(n) if u != container_id]
                if remove_anonymous and not others and meta.get("Anonymous"):
                    try:
                        self.remove(n, _ignore=container_id)
                        removed.append(n)
                    except errors.SkiffError:
                        pass
        return removed

    def copy_up(self, name: str, rootfs: str, dest: str) -> bool:
        """Docker's copy-up: the first time a fresh volume is mounted, the
        image's content at ``dest`` is copied into it (only if the volume is
        still empty). Reads the rootfs inside its root (no host symlinks)."""
        with self._lock:
            meta = self._meta(name)
            if not meta or not meta.get("Fresh"):
                return False
            data = os.path.join(self.root, name, "_data")
            meta["Fresh"] = False
            try:
                if os.listdir(data):
                    return False
                from skiff.engine import archive

                try:
                    src = archive.open_in_root(rootfs, dest, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    return False
                try:
                    dfd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        st = os.fstat(src)
                        os.fchmod(dfd, _stat.S_IMODE(st.st_mode))
                        os.fchown(dfd, st.st_uid, st.st_gid)
                        _copy_tree(src, dfd)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(src)
                return True
            finally:
                _atomic_write(os.path.join(self.root, name, _META),
                              json.dumps(meta).encode())


def _copy_tree(sfd: int, dfd: int):
    """Copy a directory's entries fd to fd, never following symlinks."""
    for e in os.scandir(sfd):
        n = e.name
        st = os.stat(n, dir_fd=sfd, follow_symlinks=False)
        m = st.st_mode
        if _stat.S_ISDIR(m):
            os.mkdir(n, 0o700, dir_fd=dfd)
            s2 = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=sfd)
            d2 = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
            try:
                _copy_tree(s2, d2)
                os.fchmod(d2, _stat.S_IMODE(m))
                os.fchown(d2, st.st_uid, st.st_gid)
                os.utime(d2, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(s2)
                os.close(d2)
        elif _stat.S_ISREG(m):
            s2 = os.open(n, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
            try:
                d2 = os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o600, dir_fd=dfd)
                try:
                    while True:
                        b = os.read(s2, 1 << 20)
                        if not b:
                            break
                        os.write(d2, b)
                    os.fchown(d2, st.st_uid, st.st_gid)
                    os.fchmod(d2, _stat.S_IMODE(m))
                    os.utime(d2, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(d2)
            finally:
                os.close(s2)
        elif _stat.S_ISLNK(m):
            os.symlink(os.readlink(n, dir_fd=sfd), n, dir_fd=dfd)
            os.chown(n, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        elif _stat.S_ISCHR(m) or _stat.S_ISBLK(m) or _stat.S_ISFIFO(m):
            os.mknod(n, m, st.st_rdev, dir_fd=dfd)
            os.chown(n, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)


def _du(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for f in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total
