"""Specconv: validate an OCI config.json once and convert it into internal,
typed objects (runc's libcontainer/specconv). Everything after this module
works on trusted data.

Plain ``__slots__`` classes rather than dataclasses: ``dataclasses`` imports
``inspect`` (~15 ms), too much for a command that runs per container.
"""

import os

from skiff.sys import (MS_BIND, MS_DIRSYNC, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME,
                       MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW, MS_PRIVATE, MS_RDONLY, MS_REC,
                       MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SLAVE, MS_STRICTATIME,
                       MS_SYNCHRONOUS, MS_UNBINDABLE, NAMESPACE_FLAGS)


from skiff.runtime.state import SpecError  # noqa: E402,F401 — defined in a lean module


# option -> (clear?, flag)   (runc libcontainer/specconv parseMountOptions)
MOUNT_FLAGS = {
    "acl": (False, 0), "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND), "defaults": (False, 0), "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME), "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC), "iversion": (False, 1 << 23), "lazytime": (False, 1 << 25),
    "loud": (True, 1 << 15), "mand": (False, MS_MANDLOCK), "noacl": (True, 0),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME), "noexec": (False, MS_NOEXEC),
    "noiversion": (True, 1 << 23), "nolazytime": (True, 1 << 25), "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME), "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID), "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC), "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "silent": (False, 1 << 15), "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID), "sync": (False, MS_SYNCHRONOUS),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# recursive mount attributes (mount_setattr), runc 1.1: rro, rrw, rnosuid, ...
RECURSIVE_ATTRS = {"rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
                   "rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rnoatime",
                   "ratime", "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow"}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Mount:
    __slots__ = ("destination", "type", "source", "flags", "clear_flags", "propagation",
                 "data", "recursive", "options")

    def __repr__(self):
        return f"Mount({self.type} {self.source} -> {self.destination} flags={self.flags:#x})"

    @property
    def is_bind(self):
        return bool(self.flags & MS_BIND)


class Device:
    __slots__ = ("path", "type", "major", "minor", "mode", "uid", "gid")


class Hook:
    __slots__ = ("path", "args", "env", "timeout")

    def as_dict(self):
        return {"path": self.path, "args": self.args, "env": self.env, "timeout": self.timeout}


class User:
    __slots__ = ("uid", "gid", "umask", "additional_gids", "username")


class Process:
    __slots__ = ("terminal", "console_size", "user", "args", "env", "cwd", "caps", "rlimits",
                 "no_new_privileges", "oom_score_adj", "apparmor", "selinux_label")


class Config:
    __slots__ = ("raw", "bundle", "oci_version", "root_path", "root_readonly", "hostname",
                 "domainname", "process", "mounts", "hooks", "namespaces", "uid_mappings",
                 "gid_mappings", "devices", "resources", "cgroups_path", "sysctl",
                 "masked_paths", "readonly_paths", "rootfs_propagation", "seccomp",
                 "annotations", "personality")

    def ns_path(self, name):
        for t, p in self.namespaces:
            if t == name:
                return p
        return None

    def has_ns(self, name):
        return any(t == name for t, _ in self.namespaces)


def _want(cond, msg):
    if not cond:
        raise SpecError(msg)


def _list(d, key, where):
    v = d.get(key)
    if v is None:
        return []
    _want(isinstance(v, list), f"{where}.{key} must be an array")
    return v


def _int(v, where, lo=None):
    _want(isinstance(v, int) and not isinstance(v, bool), f"{where} must be an integer")
    if lo is not None:
        _want(v >= lo, f"{where} must be >= {lo}")
    return v


def parse_mount_options(options, where="mount"):
    flags = 0
    clear = 0
    prop = 0
    data = []
    recursive = []
    for opt in options or []:
        _want(isinstance(opt, str), f"{where}.options must be strings")
        if opt in MOUNT_FLAGS:
            is_clear, f = MOUNT_FLAGS[opt]
            if is_clear:
                flags &= ~f
                clear |= f
            else:
                flags |= f
                clear &= ~f
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt in RECURSIVE_ATTRS:
            recursive.append(opt)
        else:
            data.append(opt)
    return flags, clear, prop, ",".join(data), recursive


def parse_mount(m, i):
    where = f"mounts[{i}]"
    _want(isinstance(m, dict), f"{where} must be an object")
    dest = m.get("destination")
    _want(isinstance(dest, str) and dest, f"{where}.destination is required")
    _want(os.path.isabs(dest), f"mount destination {dest} not absolute")
    mnt = Mount()
    mnt.destination = os.path.normpath(dest)
    mnt.type = m.get("type") or ""
    mnt.source = m.get("source") or ""
    mnt.options = list(m.get("options") or [])
    (mnt.flags, mnt.clear_flags, mnt.propagation, mnt.data,
     mnt.recursive) = parse_mount_options(mnt.options, where)
    if mnt.type == "bind":
        mnt.flags |= MS_BIND
    if not mnt.type and not (mnt.flags & MS_BIND):
        raise SpecError(f"{where}: mount type is required for {dest}")
    return mnt


def parse_hook(h, where):
    _want(isinstance(h, dict) and isinstance(h.get("path"), str) and h["path"],
          f"{where}.path is required")
    _want(os.path.isabs(h["path"]), f"{where}.path must be absolute")
    hk = Hook()
    hk.path = h["path"]
    hk.args = list(h.get("args") or [h["path"]])
    hk.env = list(h.get("env") or [])
    hk.timeout = h.get("timeout")
    if hk.timeout is not None:
        _int(hk.timeout, f"{where}.timeout", 1)
    return hk


def parse_caps(c, where):
    from skiff.oci import CAP_NUMBERS
    out = {}
    c = c or {}
    _want(isinstance(c, dict), f"{where} must be an object")
    for s in CAP_SETS:
        nums = []
        for name in c.get(s) or []:
            num = CAP_NUMBERS.get(name if str(name).startswith("CAP_") else f"CAP_{name}")
            if num is None:
                # runc ignores unknown capabilities with a warning; so do we
                continue
            nums.append(num)
        out[s] = nums
    return out


def parse_process(p, where="process"):
    _want(isinstance(p, dict), f"{where} must be an object")
    pr = Process()
    pr.terminal = bool(p.get("terminal", False))
    cs = p.get("consoleSize") or {}
    pr.console_size = (cs.get("height", 0), cs.get("width", 0)) if cs else None
    args = p.get("args")
    _want(isinstance(args, list) and args and all(isinstance(a, str) for a in args),
          "args must not be empty")
    pr.args = args
    env = _list(p, "env", where)
    _want(all(isinstance(e, str) for e in env), f"{where}.env must be strings")
    pr.env = env
    cwd = p.get("cwd", "")
    _want(isinstance(cwd, str) and cwd, "Cwd property must not be empty")
    _want(os.path.isabs(cwd), "cwd must be an absolute path")
    pr.cwd = cwd
    u = p.get("user") or {}
    user = User()
    user.uid = _int(u.get("uid", 0), f"{where}.user.uid", 0)
    user.gid = _int(u.get("gid", 0), f"{where}.user.gid", 0)
    user.umask = u.get("umask")
    user.additional_gids = [_int(g, f"{where}.user.additionalGids", 0)
                            for g in (u.get("additionalGids") or [])]
    user.username = u.get("username")
    pr.user = user
    pr.caps = parse_caps(p.get("capabilities"), f"{where}.capabilities")
    rl = []
    seen = set()
    for i, r in enumerate(_list(p, "rlimits", where)):
        t = r.get("type")
        _want(t in RLIMITS, f"rlimit {t!r} not supported")
        _want(t not in seen, f"duplicate rlimit {t}")
        seen.add(t)
        rl.append((RLIMITS[t], _int(r.get("soft", 0), f"{where}.rlimits[{i}].soft"),
                   _int(r.get("hard", 0), f"{where}.rlimits[{i}].hard")))
    pr.rlimits = rl
    pr.no_new_privileges = bool(p.get("noNewPrivileges", False))
    pr.oom_score_adj = p.get("oomScoreAdj")
    if pr.oom_score_adj is not None:
        _int(pr.oom_score_adj, f"{where}.oomScoreAdj")
    pr.apparmor = p.get("apparmorProfile")
    pr.selinux_label = p.get("selinuxLabel")
    return pr


def parse_id_mappings(lst, where):
    out = []
    for i, m in enumerate(lst or []):
        out.append((_int(m.get("containerID"), f"{where}[{i}].containerID", 0),
                    _int(m.get("hostID"), f"{where}[{i}].hostID", 0),
                    _int(m.get("size"), f"{where}[{i}].size", 1)))
    return out


def parse_device(d, where):
    dev = Device()
    _want(isinstance(d.get("path"), str) and os.path.isabs(d["path"]),
          f"{where}.path must be absolute")
    dev.path = os.path.normpath(d["path"])
    dev.type = d.get("type")
    _want(dev.type in ("c", "b", "u", "p"), f"{where}.type {dev.type!r} invalid")
    if dev.type != "p":
        dev.major = _int(d.get("major"), f"{where}.major", 0)
        dev.minor = _int(d.get("minor"), f"{where}.minor", 0)
    else:
        dev.major = dev.minor = 0
    dev.mode = d.get("fileMode", 0o666)
    dev.uid = d.get("uid", 0)
    dev.gid = d.get("gid", 0)
    return dev


def parse_config(raw, bundle):
    """config.json dict + bundle dir → Config (raises SpecError)."""
    _want(isinstance(raw, dict), "config.json must be a JSON object")
    c = Config()
    c.raw = raw
    c.bundle = bundle
    c.oci_version = raw.get("ociVersion", "")
    root = raw.get("root")
    _want(isinstance(root, dict) and root.get("path"), "Root must be specified")
    rp = root["path"]
    c.root_path = rp if os.path.isabs(rp) else os.path.join(bundle, rp)
    _want(os.path.isdir(c.root_path),
          f"rootfs ({c.root_path}) does not exist")
    c.root_readonly = bool(root.get("readonly", False))
    c.hostname = raw.get("hostname") or ""
    c.domainname = raw.get("domainname") or ""
    _want("process" in raw and raw["process"] is not None, "Process must be specified")
    c.process = parse_process(raw["process"])
    c.mounts = [parse_mount(m, i) for i, m in enumerate(_list(raw, "mounts", "config"))]
    c.hooks = {}
    hooks = raw.get("hooks") or {}
    _want(isinstance(hooks, dict), "hooks must be an object")
    for name in HOOK_NAMES:
        c.hooks[name] = [parse_hook(h, f"hooks.{name}[{i}]")
                         for i, h in enumerate(_list(hooks, name, "hooks"))]
    c.annotations = raw.get("annotations") or {}
    linux = raw.get("linux") or {}
    _want(isinstance(linux, dict), "linux must be an object")
    c.namespaces = []
    seen = set()
    for i, ns in enumerate(_list(linux, "namespaces", "linux")):
        t = ns.get("type")
        _want(t in NAMESPACE_FLAGS, f"namespace type {t!r} is not supported")
        _want(t not in seen, f"malformed spec file: duplicated ns {t!r}")
        seen.add(t)
        path = ns.get("path") or None
        if path is not None:
            _want(os.path.isabs(path), f"namespace {t} path must be absolute")
        c.namespaces.append((t, path))
    c.uid_mappings = parse_id_mappings(linux.get("uidMappings"), "linux.uidMappings")
    c.gid_mappings = parse_id_mappings(linux.get("gidMappings"), "linux.gidMappings")
    if c.has_ns("user") and not c.ns_path("user"):
        _want(c.uid_mappings and c.gid_mappings,
              "user namespaces enabled, but no user mapping found")
    elif c.uid_mappings or c.gid_mappings:
        if not c.has_ns("user"):
            raise SpecError("user namespaces not enabled, but mappings present")
    if c.hostname:
        _want(c.has_ns("uts"), "unable to set hostname without a private UTS namespace")
    c.devices = [parse_device(d, f"linux.devices[{i}]")
                 for i, d in enumerate(_list(linux, "devices", "linux"))]
    c.resources = linux.get("resources") or {}
    c.cgroups_path = linux.get("cgroupsPath") or ""
    c.sysctl = linux.get("sysctl") or {}
    _want(isinstance(c.sysctl, dict), "linux.sysctl must be an object")
    c.masked_paths = [p for p in _list(linux, "maskedPaths", "linux")]
    c.readonly_paths = [p for p in _list(linux, "readonlyPaths", "linux")]
    rp = linux.get("rootfsPropagation") or ""
    _want(rp == "" or rp in PROPAGATION, f"rootfsPropagation {rp!r} invalid")
    c.rootfs_propagation = PROPAGATION.get(rp, 0)
    c.seccomp = linux.get("seccomp")
    c.personality = linux.get("personality")
    return c


def load_bundle(bundle):
    """Read <bundle>/config.json → Config. Errors as runc words them."""
    from skiff.runtime import fastjson
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = fastjson.loads(f.read())
    except FileNotFoundError:
        raise SpecError("JSON specification file config.json not found") from None
    except fastjson.JSONDecodeError as e:
        raise SpecError(f"failed to parse config.json: {e}") from None
    return parse_config(raw, os.path.abspath(bundle))
