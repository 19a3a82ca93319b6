"""Named volumes, local driver (``docker volume ...``).

Layout (as Docker's): ``<data-root>/volumes/<name>/_data`` holds the
content; ``<data-root>/volumes/<name>/skiff.json`` the metadata (created
time, labels, options, anonymous flag) and ``users`` the IDs of containers
that mount it, so ``rm`` is refused while any does, across daemon restarts.
Every metadata write is atomic (temp file + rename).

Driver options (``--opt type=tmpfs --opt device=tmpfs --opt o=size=10m``,
``type=none,o=bind,device=/dir``) work as Docker's local driver: checked at
create, mounted on ``_data`` when the first container using the volume
starts (``mount_for``) and unmounted when the last one stops
(``unmount_for``). The IDs of the running containers holding the mount are
kept in ``active``, so a restarted daemon still unmounts at the last stop.
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
_ACTIVE = "active"
_VALID_OPTS = ("type", "o", "device", "size")
_MANDATORY_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
# mount(8)-style words of the "o" option that are flags, as moby/sys/mount's
# table (value: (clear, flag)); everything else goes to the data string
_FLAGS = {
    "defaults": (False, 0), "ro": (False, 1), "rw": (True, 1),
    "suid": (True, 2), "nosuid": (False, 2), "dev": (True, 4), "nodev": (False, 4),
    "exec": (True, 8), "noexec": (False, 8), "sync": (False, 16), "async": (True, 16),
    "dirsync": (False, 128), "remount": (False, 32), "mand": (False, 64),
    "nomand": (True, 64), "atime": (True, 1024), "noatime": (False, 1024),
    "diratime": (True, 2048), "nodiratime": (False, 2048), "bind": (False, 4096),
    "rbind": (False, 4096 | 16384), "relatime": (False, 1 << 21),
    "norelatime": (True, 1 << 21), "strictatime": (False, 1 << 24),
    "nostrictatime": (True, 1 << 24),
}
_PROPAGATION = {
    "private": 1 << 18, "rprivate": (1 << 18) | 16384, "shared": 1 << 20,
    "rshared": (1 << 20) | 16384, "slave": 1 << 19, "rslave": (1 << 19) | 16384,
    "unbindable": 1 << 17, "runbindable": (1 << 17) | 16384,
}
# one lock for mount reference counts, whatever VolumeStore object asks
_MOUNT_LOCK = threading.RLock()
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
                err = validate_options(options)
                if err:
                    raise errors.InvalidArgument(f"create {name}: {err}")
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
            # a driver-options mount left behind (daemon killed) goes first:
            # removing the tree under a bind would empty the host directory
            data = os.path.join(d, "_data")
            with _MOUNT_LOCK:
                if _is_mountpoint(data):
                    try:
                        _sys().umount(data, _sys().MNT_DETACH)
                    except OSError:
                        pass
                    if _is_mountpoint(data):
                        raise errors.Conflict(f"remove {name}: volume is still mounted "
                                              f"at {data}")
                try:
                    os.unlink(os.path.join(d, _ACTIVE))
                except OSError:
                    pass
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

    # ----------------------------------------- driver-option mounts
    def options(self, name: str) -> dict:
        return dict((self._meta(name) or {}).get("Options") or {})

    def needs_mount(self, name: str) -> bool:
        o = self.options(name)
        return bool(o.get("type") or o.get("device"))

    def _active(self, name: str) -> list[str]:
        try:
            with open(os.path.join(self.root, name, _ACTIVE)) as f:
                return [x for x in json.load(f) if x]
        except (OSError, ValueError):
            return []

    def _set_active(self, name: str, ids: list[str]):
        path = os.path.join(self.root, name, _ACTIVE)
        if ids:
            _atomic_write(path, json.dumps(ids).encode())
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def mount_for(self, name: str, container_id: str) -> str:
        """Mount volume ``name`` (when it has driver options and is not
        mounted yet) for a starting container; returns its ``_data`` path.
        Docker's errors: ``error while mounting volume '<path>': failed to
        mount local volume: mount <dev>:<path>, flags: 0x..: <errno text>``."""
        data = os.path.join(self.root, name, "_data")
        if not self.needs_mount(name):
            return data
        with _MOUNT_LOCK:
            active = self._active(name)
            if not _is_mountpoint(data):
                try:
                    _mount_local(self.options(name), data)
                except _MountError as e:
                    raise errors.Internal(f"error while mounting volume '{data}': {e}")
                active = []
            if container_id not in active:
                active.append(container_id)
            self._set_active(name, active)
        return data

    def unmount_for(self, container_id: str) -> list[str]:
        """The container stopped: drop it from every volume it held mounted
        and unmount those no running container holds any more. Returns the
        names unmounted."""
        out = []
        with _MOUNT_LOCK:
            for n in self.names():
                active = self._active(n)
                if container_id not in active:
                    continue
                active = [x for x in active if x != container_id]
                self._set_active(n, active)
                if active:
                    continue
                data = os.path.join(self.root, n, "_data")
                while _is_mountpoint(data):
                    try:
                        _sys().umount(data)
                    except OSError:
                        try:
                            _sys().umount(data, _sys().MNT_DETACH)
                        except OSError:
                            break
                out.append(n)
        return out

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


def _ram_in_bytes(v: str) -> int:
    """go-units RAMInBytes: 10m, 1g, 512k, 1.5GiB, plain bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)[iI]?[bB]?", str(v).strip())
    if not m:
        raise ValueError(f"invalid size: '{v}'")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
            "p": 1 << 50}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def validate_options(opts: dict) -> str | None:
    """Docker's local-driver option checks; the message, or None if fine."""
    for k in opts:
        if k not in _VALID_OPTS:
            return f'invalid option: "{k}"'
    if "size" in opts:
        try:
            size = _ram_in_bytes(opts["size"])
        except ValueError as e:
            return str(e)
        if size > 0:
            # Docker sets the size as an XFS project quota; skiff has none
            return "quota size requested but no quota support"
    for k, needs in _MANDATORY_OPTS.items():
        if k in opts:
            for r in needs:
                if r not in opts:
                    return f'missing required option: "{r}"'
    return None


def _sys():
    import skiff.sys as s
    return s


class _MountError(Exception):
    pass


def _parse_mount_options(o: str) -> tuple[int, int, str]:
    """(flags, propagation flags, data) from a mount(8) option string."""
    flags = prop = 0
    data = []
    for w in (o or "").split(","):
        if not w:
            continue
        if w in _FLAGS:
            clear, f = _FLAGS[w]
            flags = flags & ~f if clear else flags | f
        elif w in _PROPAGATION:
            prop |= _PROPAGATION[w]
        else:
            data.append(w)
    return flags, prop, ",".join(data)


def _mount_local(opts: dict, target: str):
    """mount ``device`` on ``target`` with ``type`` and ``o``, as
    moby/sys/mount.Mount does (bind + ro remounts read-only)."""
    device = opts.get("device") or ""
    if not device:
        raise _MountError("missing device in volume options")
    fstype = opts.get("type") or ""
    flags, prop, data = _parse_mount_options(opts.get("o") or "")
    s = _sys()

    def fail(op, src, fl, d, e):
        out = f"{op} {src}:{target}" if src else f"{op} {target}"
        if fl:
            out += f", flags: {fl:#x}"
        if d:
            out += f", data: {d}"
        text = os.strerror(e.errno) if e.errno else str(e)
        raise _MountError(f"failed to mount local volume: {out}: "
                          f"{text[:1].lower()}{text[1:]}")

    try:
        s.mount(device, target, fstype if fstype != "none" else None, flags, data or None)
    except OSError as e:
        fail("mount", device, flags, data, e)
    try:
        if prop:
            s.mount(None, target, None, prop, None)
        if flags & (s.MS_BIND | s.MS_RDONLY) == (s.MS_BIND | s.MS_RDONLY):
            s.mount(None, target, None, flags | s.MS_REMOUNT, None)
    except OSError as e:
        try:
            s.umount(target, s.MNT_DETACH)
        except OSError:
            pass
        fail("remount", "", flags | s.MS_REMOUNT, "", e)


def _unescape_mountinfo(p: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p)


def _is_mountpoint(path: str) -> bool:
    """Whether ``path`` is a mount point in this mount namespace (a bind of
    a directory on the same filesystem counts, unlike os.path.ismount)."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split(" ", 5)
                if len(parts) > 4 and _unescape_mountinfo(parts[4]) == real:
                    return True
    except OSError:
        pass
    return False


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
