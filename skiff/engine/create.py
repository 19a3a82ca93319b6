"""Docker create request (Config + HostConfig) + image config → OCI spec.

``build_spec`` does what dockerd does between ``POST /containers/create``
and writing a bundle's config.json: merge the request with the image's
defaults, validate it with Docker's messages, and apply Docker's default
security settings (capabilities, seccomp, masked and read-only paths,
device rules). It is pure apart from three reads a spec needs: the
container's own /etc/passwd and /etc/group (read inside its root, never via
NSS), host device nodes for --privileged/--device, and named volumes, which
are created through the ``volume_store`` given (last, after every check
passed, so a refused request leaves nothing behind).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat as _stat

from skiff import errors, oci

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIN_MEMORY = 6 * 1024 * 1024
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_CPU_PERIOD = 100000
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

_PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
_NS_SYSCTL_PREFIXES = ("kernel.msg", "kernel.shm", "fs.mqueue.", "net.")
_NS_SYSCTLS = ("kernel.sem", "kernel.domainname", "kernel.hostname")

_RLIMITS = {
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
    "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as",
}


def _inv(msg: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(msg)


# ---------------------------------------------------------------- helpers
def _strslice(v):
    """Docker's StrSlice: null, a string, or a list of strings."""
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def normalize_cap(name: str) -> str:
    up = name.strip().upper()
    if up == "ALL":
        return "ALL"
    if not up.startswith("CAP_"):
        up = "CAP_" + up
    if up not in oci.CAP_NUMBERS:
        raise _inv(f'unknown capability: "{up}"')
    return up


def tweak_caps(cap_add, cap_drop, privileged: bool, host_caps) -> list[str]:
    """Docker's capability arithmetic: defaults, then drops, then adds;
    ALL on either side. "All" means what the host's bounding set holds."""
    host_all = [c for c in oci.ALL_CAPS if host_caps is None or c in set(host_caps)]
    if privileged:
        return host_all
    adds = [normalize_cap(c) for c in (cap_add or [])]
    drops = [normalize_cap(c) for c in (cap_drop or [])]
    if "ALL" in adds:
        caps = list(host_all)
    elif "ALL" in drops:
        caps = []
    else:
        caps = list(oci.DOCKER_DEFAULT_CAPS)
    dropset = {c for c in drops if c != "ALL"}
    if "ALL" not in adds:
        caps = [c for c in caps if c not in dropset or c in adds]
    else:
        caps = [c for c in caps if c not in dropset]
    for c in adds:
        if c != "ALL" and c not in caps:
            caps.append(c)
    return caps


def host_bounding_caps() -> list[str]:
    """Capabilities in this process's bounding set (the host's limit)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return [c for c, n in oci.CAP_NUMBERS.items() if mask >> n & 1]
    except OSError:
        pass
    return list(oci.ALL_CAPS)


def parse_bytes(s) -> int:
    """RAM sizes as Docker's units.RAMInBytes: 64m, 1g, 512k, plain bytes."""
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtpKMGTP]?)[iI]?[bB]?\s*", str(s))
    if not m:
        raise _inv(f"invalid size: '{s}'")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
            "p": 1 << 50}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def merge_env(base: list[str], override: list[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: keys in ``override`` replace, a
    bare ``KEY`` (no '=') removes."""
    out = list(base)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for e in override or []:
        key = e.split("=", 1)[0]
        if "=" not in e:
            if key in index:
                out[index[key]] = None
            continue
        if key in index and out[index[key]] is not None:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return [e for e in out if e is not None]


# ------------------------------------------------ users inside the rootfs
def _read_in_root(rootfs: str, path: str) -> str | None:
    from skiff.engine import archive

    try:
        fd = archive.open_in_root(rootfs, path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    with os.fdopen(fd, "r", errors="replace") as f:
        return f.read(4 << 20)


def _parse_db(text: str | None, nfields: int):
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < nfields:
            parts += [""] * (nfields - len(parts))
        yield parts


def resolve_user(rootfs: str | None, user: str, group_add=()) -> dict:
    """OCI process.user (+ "home") for Docker's ``User`` forms: name, uid,
    name:group, uid:gid, from the container's own /etc/passwd, /etc/group."""
    user = user or ""
    name, _, grp = user.partition(":")
    passwd = _read_in_root(rootfs, "/etc/passwd") if rootfs else None
    groups = _read_in_root(rootfs, "/etc/group") if rootfs else None
    uid = gid = 0
    home = "/"
    uname = None
    if name == "" and grp == "":
        name = "0"
    if name:
        entry = None
        for p in _parse_db(passwd, 7):
            if p[0] == name or (name.isdigit() and p[2] == name):
                entry = p
                break
        if entry is not None:
            uname = entry[0]
            try:
                uid, gid = int(entry[2]), int(entry[3])
            except ValueError:
                raise _inv(f"unable to find user {name}: invalid passwd entry")
            home = entry[5] or "/"
        elif name.isdigit():
            uid, gid = int(name), 0
        else:
            raise _inv(f"unable to find user {name}: no matching entries in passwd file")
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            for g in _parse_db(groups, 4):
                if g[0] == grp:
                    gid = int(g[2])
                    break
            else:
                raise _inv(f"unable to find group {grp}: no matching entries in group file")
    extra = []
    if uname is not None and not grp:
        for g in _parse_db(groups, 4):
            members = [m for m in g[3].split(",") if m]
            if uname in members and g[2].isdigit():
                extra.append(int(g[2]))
    for ga in group_add or ():
        ga = str(ga)
        if ga.isdigit():
            extra.append(int(ga))
            continue
        for g in _parse_db(groups, 4):
            if g[0] == ga:
                extra.append(int(g[2]))
                break
        else:
            raise _inv(f"Unable to find group {ga}: no matching entries in group file")
    add = sorted(set(extra) | {gid}) if extra else []
    out = {"uid": uid, "gid": gid, "home": home}
    if add:
        out["additionalGids"] = add
    return out


# ------------------------------------------------------------------ mounts
class MountReq:
    """One user mount after parsing, before volumes are resolved."""

    __slots__ = ("type", "source", "target", "readonly", "propagation", "options",
                 "nocopy", "recursive", "mode", "create_host_path", "labels",
                 "driver_opts")

    def __init__(self, type_, source, target, readonly=False, propagation="",
                 options=None, nocopy=False, recursive=True, mode="",
                 create_host_path=False, labels=None, driver_opts=None):
        self.type = type_
        self.source = source
        self.target = target
        self.readonly = readonly
        self.propagation = propagation
        self.options = options or []
        self.nocopy = nocopy
        self.recursive = recursive
        self.mode = mode
        self.create_host_path = create_host_path
        self.labels = labels or {}
        self.driver_opts = driver_opts or {}


def _clean_dest(dest: str, kind: str) -> str:
    if not dest:
        raise _inv(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not dest.startswith("/"):
        raise _inv(f'invalid mount config for type "{kind}": invalid mount path: '
                   f"'{dest}' mount path must be absolute")
    dest = posixpath.normpath(dest)
    if dest.startswith("//"):
        dest = "/" + dest.lstrip("/")
    if dest == "/":
        raise _inv("invalid specification: destination can't be '/'")
    return dest


def parse_bind(spec: str) -> MountReq:
    """A ``HostConfig.Binds`` entry: ``src:dst[:opts]`` or ``dst`` alone."""
    parts = spec.split(":")
    if len(parts) == 1:
        return MountReq("volume", "", _clean_dest(parts[0], "volume"))
    if len(parts) > 3 or not all(parts[:2]):
        raise _inv(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    readonly, prop, nocopy, mode = False, "", False, []
    for o in opts:
        if o in ("ro", "rw"):
            readonly = o == "ro"
            mode.append(o)
        elif o in _PROPAGATIONS:
            prop = o
            mode.append(o)
        elif o == "nocopy":
            nocopy = True
            mode.append(o)
        elif o in ("z", "Z"):
            mode.append(o)
        elif o:
            raise _inv(f"invalid mode: {o}")
    if src.startswith("/"):
        if nocopy:
            raise _inv(f"invalid mode: nocopy")
        return MountReq("bind", posixpath.normpath(src), _clean_dest(dst, "bind"),
                        readonly, prop or "rprivate", nocopy=False, mode=",".join(mode),
                        create_host_path=True)
    if prop:
        raise _inv(f"invalid mode: {prop}")
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", src):
        raise _inv(f'create {src}: "{src}" includes invalid characters for a local '
                   'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. '
                   "If you intended to pass a host directory, use absolute path")
    return MountReq("volume", src, _clean_dest(dst, "volume"), readonly,
                    nocopy=nocopy, mode=",".join(mode))


def _tmpfs_opts(size=None, mode=None, extra=()) -> list[str]:
    opts = ["noexec", "nosuid", "nodev"]
    for o in extra:
        if o in ("exec", "suid", "dev"):
            opts = [x for x in opts if x != "no" + o]
            opts.append(o)
        elif o in ("noexec", "nosuid", "nodev"):
            if o not in opts:
                opts.append(o)
        elif o.startswith("size="):
            opts = [x for x in opts if not x.startswith("size=")]
            opts.append("size=" + str(parse_bytes(o[5:])))
        elif o:
            opts = [x for x in opts if x.split("=")[0] != o.split("=")[0]]
            opts.append(o)
    if size:
        opts = [x for x in opts if not x.startswith("size=")]
        opts.append(f"size={size}")
    if mode:
        opts = [x for x in opts if not x.startswith("mode=")]
        opts.append(f"mode={mode:o}")
    return opts


def parse_mount(m: dict) -> MountReq:
    """A ``HostConfig.Mounts`` entry (the --mount form)."""
    kind = m.get("Type") or ""
    src = m.get("Source") or ""
    dst = m.get("Target") or ""
    ro = bool(m.get("ReadOnly"))
    if kind == "bind":
        if not src:
            raise _inv('invalid mount config for type "bind": field Source must not be empty')
        if not src.startswith("/"):
            raise _inv(f'invalid mount config for type "bind": invalid mount path: '
                       f"'{src}' mount path must be absolute")
        bo = m.get("BindOptions") or {}
        prop = bo.get("Propagation") or "rprivate"
        if prop not in _PROPAGATIONS:
            raise _inv(f"invalid propagation mode: {prop}")
        if m.get("VolumeOptions"):
            raise _inv('invalid mount config for type "bind": field VolumeOptions '
                       "must not be specified")
        req = MountReq("bind", posixpath.normpath(src), _clean_dest(dst, "bind"), ro, prop,
                       recursive=not bo.get("NonRecursive"),
                       create_host_path=bool(bo.get("CreateMountpoint")))
        if not req.create_host_path and not os.path.exists(req.source):
            raise _inv('invalid mount config for type "bind": bind source path does '
                       f"not exist: {req.source}")
        return req
    if kind == "volume":
        vo = m.get("VolumeOptions") or {}
        if m.get("BindOptions"):
            raise _inv('invalid mount config for type "volume": field BindOptions '
                       "must not be specified")
        return MountReq("volume", src, _clean_dest(dst, "volume"), ro,
                        nocopy=bool(vo.get("NoCopy")), labels=vo.get("Labels") or {},
                        driver_opts=(vo.get("DriverConfig") or {}).get("Options") or {})
    if kind == "tmpfs":
        if src:
            raise _inv('invalid mount config for type "tmpfs": field Source must not '
                       "be specified")
        to = m.get("TmpfsOptions") or {}
        extra = []
        for o in to.get("Options") or []:
            extra.append("=".join(str(x) for x in o) if isinstance(o, list) else str(o))
        opts = _tmpfs_opts(to.get("SizeBytes"), to.get("Mode"), extra)
        if ro:
            opts.append("ro")
        return MountReq("tmpfs", "tmpfs", _clean_dest(dst, "tmpfs"), ro, options=opts)
    if kind == "image":
        raise errors.NotImplementedYet("image mounts are not supported")
    raise _inv(f'invalid mount config for type "{kind}": mount type unknown')


def parse_tmpfs(dest: str, opts: str) -> MountReq:
    extra = [o for o in (opts or "").split(",") if o]
    ro = "ro" in extra
    extra = [o for o in extra if o not in ("ro", "rw")]
    o = _tmpfs_opts(extra=extra)
    if ro:
        o.append("ro")
    return MountReq("tmpfs", "tmpfs", _clean_dest(dest, "tmpfs"), ro, options=o)


# ----------------------------------------------------------------- devices
def _device_info(path: str):
    st = os.stat(path)
    if _stat.S_ISCHR(st.st_mode):
        t = "c"
    elif _stat.S_ISBLK(st.st_mode):
        t = "b"
    else:
        return None
    return t, os.major(st.st_rdev), os.minor(st.st_rdev), _stat.S_IMODE(st.st_mode), \
        st.st_uid, st.st_gid


def _devices_under(host: str):
    if os.path.isdir(host) and not os.path.islink(host):
        for dirpath, dirnames, filenames in os.walk(host):
            dirnames[:] = [d for d in dirnames if d not in
                           ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")]
            for f in filenames:
                p = os.path.join(dirpath, f)
                if p == "/dev/console" or os.path.islink(p):
                    continue
                yield p
    else:
        yield host


def host_devices() -> list[dict]:
    out = []
    for p in _devices_under("/dev"):
        try:
            info = _device_info(p)
        except OSError:
            continue
        if info:
            t, ma, mi, mode, uid, gid = info
            out.append({"path": p, "type": t, "major": ma, "minor": mi,
                        "fileMode": mode, "uid": uid, "gid": gid})
    return out


def parse_device_rule(rule: str) -> dict:
    m = re.fullmatch(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})", rule.strip())
    if not m:
        raise _inv(f"invalid device cgroup format '{rule}'")
    out = {"allow": True, "type": m.group(1), "access": m.group(4)}
    if m.group(2) != "*":
        out["major"] = int(m.group(2))
    if m.group(3) != "*":
        out["minor"] = int(m.group(3))
    return out


def _device_mappings(devs) -> tuple[list, list]:
    nodes, rules = [], []
    for d in devs or []:
        host = d.get("PathOnHost") or ""
        dest = d.get("PathInContainer") or host
        perms = d.get("CgroupPermissions") or "rwm"
        if not re.fullmatch(r"[rwm]{1,3}", perms):
            raise _inv(f"invalid device mode: {perms}")
        found = False
        try:
            for p in _devices_under(host):
                info = _device_info(p)
                if not info:
                    continue
                found = True
                t, ma, mi, mode, uid, gid = info
                inner = dest if p == host else posixpath.join(dest, os.path.relpath(p, host))
                nodes.append({"path": inner, "type": t, "major": ma, "minor": mi,
                              "fileMode": mode, "uid": uid, "gid": gid})
                rules.append({"allow": True, "type": t, "major": ma, "minor": mi,
                              "access": perms})
        except OSError as e:
            raise _inv("error gathering device information while adding custom device "
                       f'"{host}": {os.strerror(e.errno).lower()}')
        if not found:
            raise _inv("error gathering device information while adding custom device "
                       f'"{host}": not a device node')
    return nodes, rules


# --------------------------------------------------------------- resources
def _cpuset_ok(s: str) -> bool:
    return bool(re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", s))


def build_resources(hc: dict, warnings: list) -> dict:
    res: dict = {}
    mem = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    resv = int(hc.get("MemoryReservation") or 0)
    if mem < 0:
        mem = 0
    if mem and mem < MIN_MEMORY:
        raise _inv("Minimum memory limit allowed is 6MB")
    if swap > 0 and not mem:
        raise _inv("You should always set the Memory limit when using Memoryswap limit, "
                   "see usage")
    if mem and swap > 0 and swap < mem:
        raise _inv("Minimum memoryswap limit should be larger than memory limit, "
                   "see usage")
    if resv and resv < MIN_MEMORY:
        raise _inv("Minimum memory reservation allowed is 6MB")
    if mem and resv and resv > mem:
        raise _inv("Minimum memory limit can not be less than memory reservation "
                   "limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise _inv(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    memory = {}
    if mem:
        memory["limit"] = mem
        memory["swap"] = swap if swap else mem * 2
    elif swap == -1:
        pass
    if swap == -1 and mem:
        memory["swap"] = -1
    if resv:
        memory["reservation"] = resv
    if swappiness is not None and swappiness != -1:
        memory["swappiness"] = int(swappiness)
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
        if not mem:
            warnings.append("OOM killer is disabled for the container, but no memory "
                            "limit is set, this can result in the system running out of "
                            "resources.")
    if memory:
        res["memory"] = memory

    cpu = {}
    nano = int(hc.get("NanoCpus") or 0)
    period = int(hc.get("CpuPeriod") or 0)
    quota = int(hc.get("CpuQuota") or 0)
    if nano and period:
        raise _inv("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and quota:
        raise _inv("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano:
        ncpu = os.cpu_count() or 1
        if nano < 0 or nano > ncpu * 10**9:
            raise _inv(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                       f"{ncpu} CPUs available")
        cpu["period"] = DEFAULT_CPU_PERIOD
        cpu["quota"] = nano * DEFAULT_CPU_PERIOD // 10**9
    if period:
        if period < 1000 or period > 1000000:
            raise _inv("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                       "than 1s (i.e. 1000000)")
        cpu["period"] = period
    if quota:
        if 0 < quota < 1000:
            raise _inv("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        cpu["quota"] = quota
    if hc.get("CpuShares"):
        shares = int(hc["CpuShares"])
        if shares < 0:
            raise _inv("shares: invalid argument")
        cpu["shares"] = max(shares, 2)
    for key, field in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        v = hc.get(key)
        if v:
            if not _cpuset_ok(v):
                raise _inv(f"Invalid value {v} for cpuset {field}")
            cpu[field] = v
    if hc.get("CpuRealtimePeriod") or hc.get("CpuRealtimeRuntime"):
        if hc.get("CpuRealtimePeriod"):
            cpu["realtimePeriod"] = int(hc["CpuRealtimePeriod"])
        if hc.get("CpuRealtimeRuntime"):
            cpu["realtimeRuntime"] = int(hc["CpuRealtimeRuntime"])
    if cpu:
        res["cpu"] = cpu

    pids = hc.get("PidsLimit")
    if pids is not None and int(pids) > 0:
        res["pids"] = {"limit": int(pids)}

    bw = int(hc.get("BlkioWeight") or 0)
    if bw and not 10 <= bw <= 1000:
        raise _inv("Range of blkio weight is from 10 to 1000")
    blkio = {}
    if bw:
        blkio["weight"] = bw
    for key, field in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                       ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                       ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                       ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        items = []
        for d in hc.get(key) or []:
            try:
                st = os.stat(d["Path"])
            except OSError:
                raise _inv(f"error getting major/minor for device {d.get('Path')}")
            items.append({"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                          "rate": int(d["Rate"])})
        if items:
            blkio[field] = items
    if blkio:
        res["blockIO"] = blkio
    return res


def build_rlimits(ulimits) -> list[dict]:
    out = []
    seen = set()
    for u in ulimits or []:
        name = (u.get("Name") or "").lower()
        if name not in _RLIMITS:
            raise _inv(f"invalid ulimit type: {name}")
        soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        if soft > hard:
            raise _inv(f"ulimit soft limit must be less than or equal to hard limit: "
                       f"{soft} > {hard}")
        if name in seen:
            out = [r for r in out if r["type"] != "RLIMIT_" + name.upper()]
        seen.add(name)
        out.append({"type": "RLIMIT_" + name.upper(), "hard": hard, "soft": soft})
    return out


def parse_security_opts(opts, warnings: list) -> dict:
    out = {"no_new_privileges": False, "seccomp": None, "apparmor": None}
    for opt in opts or []:
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":
            continue
        if "=" in opt:
            key, val = opt.split("=", 1)
        elif ":" in opt:
            key, val = opt.split(":", 1)
        else:
            raise _inv(f'invalid --security-opt 1: "{opt}"')
        if key == "label":
            warnings.append("SELinux labels are not supported by skiff; "
                            f'security option "{opt}" ignored')
        elif key == "apparmor":
            out["apparmor"] = val
            if val != "unconfined":
                warnings.append(f'AppArmor is not supported by skiff; profile "{val}" '
                                "ignored")
        elif key == "seccomp":
            out["seccomp"] = val
        elif key == "no-new-privileges":
            if val.lower() in ("1", "t", "true"):
                out["no_new_privileges"] = True
            elif val.lower() in ("0", "f", "false"):
                out["no_new_privileges"] = False
            else:
                raise _inv(f'invalid --security-opt 2: "{opt}"')
        elif key == "writable-cgroups":
            pass
        else:
            raise _inv(f'invalid --security-opt 2: "{opt}"')
    return out


def _validate_sysctls(sysctls: dict, ipc_host: bool, net_host: bool, uts_host: bool):
    for k in sysctls:
        ok = k.startswith(_NS_SYSCTL_PREFIXES) or k in _NS_SYSCTLS
        if not ok:
            raise _inv(f"sysctl '{k}' is not allowed")
        if k.startswith("net.") and net_host:
            raise _inv(f"sysctl '{k}' not allowed in host network namespace")
        if (k.startswith(("kernel.msg", "kernel.shm", "fs.mqueue.")) or k == "kernel.sem") \
                and ipc_host:
            raise _inv(f"sysctl '{k}' is not allowed in host IPC namespace")
        if k in ("kernel.domainname", "kernel.hostname"):
            raise _inv(f"sysctl '{k}' is not allowed: set it with --hostname/--domainname")


def _possible_cpus() -> list[int]:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return []
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def masked_paths() -> list[str]:
    return list(oci.DOCKER_MASKED_PATHS) + [
        f"/sys/devices/system/cpu/cpu{n}/thermal_throttle" for n in _possible_cpus()]


def _is_cgroup2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def find_init() -> str | None:
    for name in ("docker-init", "tini", "catatonit"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _ns_mode(mode: str, kind: str, container_namespaces: dict | None):
    """("new"|"host"|path) for IpcMode/PidMode/UTSMode."""
    mode = mode or ""
    if mode in ("", "private", "shareable", "none"):
        return "new"
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        path = (container_namespaces or {}).get(kind)
        if not path:
            raise _inv(f"cannot join {kind} namespace of container "
                       f"{mode.split(':', 1)[1]}: it is not running")
        return path
    raise _inv(f"invalid {kind.upper()} mode: {mode}")


def start_error(e: errors.SkiffError) -> errors.SkiffError:
    """Mark an error of the engine's own start work (volume mounts, IPC
    checks) so the engine reports it with Docker's words, not as an OCI
    runtime failure."""
    e.engine_start = True
    return e


def _copy_up_engine_volume(m: dict, rootfs: str | None, container_id: str | None = None):
    """A volume the engine resolved itself (a bind whose source is
    ``<root>/volumes/<name>/_data`` of the local driver) at container start:
    mounted first when it has driver options (type/device/o), then Docker's
    copy-up."""
    src = m.get("source") or ""
    if m.get("type") != "bind" or not src.endswith("/_data"):
        return
    vdir = os.path.dirname(src)
    root = os.path.dirname(vdir)
    if os.path.basename(root) != "volumes" or \
            not os.path.exists(os.path.join(vdir, "skiff.json")):
        return
    from skiff.engine.volumes import VolumeStore

    vs = VolumeStore(root)
    if container_id:
        try:
            vs.mount_for(os.path.basename(vdir), container_id)
        except errors.SkiffError as e:
            raise start_error(e)
    if not rootfs:
        return
    try:
        vs.copy_up(os.path.basename(vdir), rootfs, m["destination"])
    except OSError:
        pass


# ------------------------------------------------------------------- IPC
def shm_host_path(container_dir: str) -> str:
    """Where a ``shareable`` container's /dev/shm lives on the host (as
    Docker's ``<container>/mounts/shm``), so other containers can bind it."""
    return os.path.join(container_dir, "mounts", "shm")


def _is_mountpoint(path: str) -> bool:
    from skiff.engine.volumes import _is_mountpoint as f
    return f(path)


def ipc_join(ref: str, lookup, container_dir) -> dict:
    """``--ipc container:<ref>``: Docker's checks on the donor and what the
    spec needs: {"ipc": its namespace, "ipc_shm": its /dev/shm on the host}.
    ``lookup(ref)`` is the engine's container lookup, ``container_dir(id)``
    its directory. The donor must exist, run, and be shareable
    (``shareable`` or ``host``)."""
    pre = "failed to join IPC namespace: "
    try:
        donor = lookup(ref)
    except errors.NotFound as e:
        raise start_error(errors.InvalidArgument(pre + e.message))
    if not donor.running or not donor.state.get("Pid"):
        raise start_error(errors.Conflict(f"{pre}container {ref} is not running"))
    if donor.state.get("Restarting"):
        raise start_error(errors.Conflict(
            f"{pre}Container {donor.id} is restarting, wait until the container is running"))
    donor_pid = donor.state["Pid"]
    mode = donor.host_config.get("IpcMode") or "private"
    shm = None
    if mode == "host":
        shm = "/dev/shm"
    elif mode == "shareable":
        shm = shm_host_path(container_dir(donor.id))
        if not _is_mountpoint(shm):
            shm = None
    if shm is None or not os.path.isdir(shm):
        raise start_error(errors.InvalidArgument(
            f"failed to join IPC namespace: container {ref}: non-shareable IPC (hint: use "
            "IpcMode:shareable for the donor container)"))
    return {"ipc": f"/proc/{donor_pid}/ns/ipc", "ipc_shm": shm}


def _mount_shareable_shm(path: str, size: int):
    """Docker's shareable /dev/shm: a tmpfs on the host, bound into the
    container and joined by ``--ipc container:`` users."""
    from skiff import sys as ksys

    os.makedirs(path, 0o700, exist_ok=True)
    if _is_mountpoint(path):
        return
    try:
        ksys.mount("shm", path, "tmpfs", ksys.MS_NOSUID | ksys.MS_NODEV | ksys.MS_NOEXEC,
                   f"mode=1777,size={size}")
    except OSError as e:
        raise start_error(errors.Internal(f"mounting shm tmpfs: {e}"))


def release_start_mounts(container_id: str, container_dir: str, volume_store=None):
    """Undo what a start mounted on the host: the shareable /dev/shm and
    the driver-option volumes no other running container holds."""
    from skiff import sys as ksys

    shm = shm_host_path(container_dir)
    while _is_mountpoint(shm):
        try:
            ksys.umount(shm, ksys.MNT_DETACH)
        except OSError:
            break
    for d in (shm, os.path.dirname(shm)):
        try:
            os.rmdir(d)
        except OSError:
            pass
    if volume_store is not None:
        volume_store.unmount_for(container_id)


# ------------------------------------------------------------- build_spec
def merge_command(container_config: dict, image_config: dict) -> list[str]:
    ep = _strslice(container_config.get("Entrypoint"))
    cmd = _strslice(container_config.get("Cmd"))
    if ep == [""]:
        ep = []
    if ep is None or (not ep and container_config.get("Entrypoint") is None):
        ep = _strslice(image_config.get("Entrypoint")) or []
        if not cmd:
            cmd = _strslice(image_config.get("Cmd")) or []
    args = list(ep or []) + list(cmd or [])
    if not args:
        raise _inv("no command specified")
    return args


def build_spec(container_config: dict | None = None, host_config: dict | None = None,
               image_config: dict | None = None, *,
               container_id: str, rootfs: str, hostname: str | None = None,
               mounts_extra=(), netns_path: str | None = None,
               cgroup_parent: str | None = None, host_caps=None,
               volume_store=None, container_namespaces: dict | None = None,
               init_path: str | None = None, warnings: list | None = None,
               mount_points: list | None = None, cgroup2: bool | None = None,
               arch: str | None = None, config: dict | None = None,
               process: dict | None = None, extra_mounts=None,
               cgroups_path: str | None = None, shm_path: str | None = None) -> dict:
    """The OCI runtime spec (config.json as a dict) for a Docker create
    request. ``mounts_extra`` are OCI mounts the engine adds (/etc/hosts,
    /etc/resolv.conf, /etc/hostname), dropped where the user mounts the same
    path. ``container_namespaces`` maps "ipc"/"pid"/"uts"/"network" to
    /proc/<pid>/ns/* paths for the ``container:<id>`` modes. ``warnings``
    (a list) receives Docker's create warnings; ``mount_points`` receives the
    ``Mounts`` entries of ``docker inspect``. Named and anonymous volumes are
    created through ``volume_store`` (a ``skiff.engine.volumes.VolumeStore``)
    after every check has passed.

    Engine form: when the engine has already merged the image config into
    ``config`` and resolved ``process`` (args, env, user, cwd, terminal) and
    every mount (``extra_mounts``: hosts files, binds, volumes, tmpfs, init),
    those are kept as given and this adds Docker's security defaults,
    resources, namespaces and validation around them; ``cgroups_path``
    then overrides the derived one. Volumes among ``extra_mounts`` are
    mounted when they have driver options, and fresh ones get Docker's
    copy-up from the image. ``shm_path``: the host directory where an
    ``IpcMode: shareable`` container's /dev/shm tmpfs is mounted (engine
    form; ``container_namespaces["ipc_shm"]`` is a donor's, for
    ``container:<id>``)."""
    engine_form = process is not None
    if config is not None and container_config is None:
        container_config = config
    if extra_mounts is not None:
        mounts_extra = extra_mounts
    cc = container_config or {}
    hc = host_config or {}
    ic = image_config or {}
    warns = warnings if warnings is not None else []
    privileged = bool(hc.get("Privileged"))
    if host_caps is None:
        host_caps = host_bounding_caps()

    # --- process
    if engine_form:
        args = list(process.get("args") or [])
        if not args:
            raise _inv("no command specified")
    else:
        args = merge_command(cc, ic)
    workdir = (process or {}).get("cwd") or cc.get("WorkingDir") or ic.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise _inv(f"the working directory '{workdir}' is invalid, it needs to be an "
                   "absolute path")
    workdir = posixpath.normpath(workdir)
    tty = bool(cc.get("Tty"))
    uts_mode = hc.get("UTSMode") or ""
    net_mode = hc.get("NetworkMode") or ""
    if uts_mode == "host" and cc.get("Hostname") and not engine_form:
        raise _inv("Conflicting options: hostname and the UTS mode")
    if net_mode.startswith("container:") and cc.get("Hostname") and not engine_form:
        raise _inv("conflicting options: hostname and the network mode")
    hostname = cc.get("Hostname") or hostname or container_id[:12]
    if len(hostname) > 63:
        raise _inv(f"invalid hostname format: {hostname}")
    if engine_form:
        env = list(process.get("env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, "PATH=" + DEFAULT_PATH)
        user = dict(process.get("user") or {"uid": 0, "gid": 0})
        if hc.get("GroupAdd"):
            extra = resolve_user(rootfs, str(user.get("uid", 0)), hc["GroupAdd"])
            gids = set(user.get("additionalGids") or []) | \
                set(extra.get("additionalGids") or [])
            user["additionalGids"] = sorted(gids | {user.get("gid", 0)})
    else:
        env = ["PATH=" + DEFAULT_PATH, "HOSTNAME=" + hostname]
        if tty:
            env.append("TERM=xterm")
        env = merge_env(env, merge_env(list(ic.get("Env") or []), list(cc.get("Env") or [])))
        user_str = cc.get("User") if cc.get("User") else (ic.get("User") or "")
        user = resolve_user(rootfs, user_str, hc.get("GroupAdd") or ())
        home = user.pop("home")
        if not any(e.startswith("HOME=") for e in env):
            env.append("HOME=" + home)

    caps = tweak_caps(hc.get("CapAdd"), hc.get("CapDrop"), privileged, host_caps)
    sec = parse_security_opts(hc.get("SecurityOpt"), warns)

    proc_in = process
    process = {
        "terminal": bool(proc_in.get("terminal")) if engine_form else tty,
        "user": user,
        "args": args,
        "env": env,
        "cwd": workdir,
        "capabilities": {"bounding": list(caps), "effective": list(caps),
                         "permitted": list(caps)},
        "noNewPrivileges": sec["no_new_privileges"],
    }
    if engine_form and proc_in.get("consoleSize"):
        process_out_cs = dict(proc_in["consoleSize"])
    else:
        process_out_cs = None
    if process_out_cs:
        process["consoleSize"] = process_out_cs
    elif tty and hc.get("ConsoleSize") and all(hc["ConsoleSize"]):
        h, w = hc["ConsoleSize"]
        process["consoleSize"] = {"height": int(h), "width": int(w)}
    rl = build_rlimits(hc.get("Ulimits"))
    if rl:
        process["rlimits"] = rl
    oom = hc.get("OomScoreAdj")
    if oom:
        if not -1000 <= int(oom) <= 1000:
            raise _inv(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
        process["oomScoreAdj"] = int(oom)

    # --- namespaces
    namespaces = [{"type": "mount"}]
    ipc = _ns_mode(hc.get("IpcMode"), "ipc", container_namespaces)
    pid = _ns_mode(hc.get("PidMode"), "pid", container_namespaces)
    uts = _ns_mode(uts_mode, "uts", container_namespaces)
    for kind, mode in (("ipc", ipc), ("pid", pid), ("uts", uts)):
        if mode == "new":
            namespaces.append({"type": kind})
        elif mode != "host":
            namespaces.append({"type": kind, "path": mode})
    if net_mode == "host":
        net_host = True
    else:
        net_host = False
        if net_mode.startswith("container:"):
            path = netns_path or (container_namespaces or {}).get("network")
            if not path:
                raise _inv(f"cannot join network of a non running container: "
                           f"{net_mode.split(':', 1)[1]}")
            namespaces.append({"type": "network", "path": path})
        elif netns_path:
            namespaces.append({"type": "network", "path": netns_path})
        else:
            namespaces.append({"type": "network"})
    cg2 = _is_cgroup2() if cgroup2 is None else cgroup2
    cgns = hc.get("CgroupnsMode") or ("private" if cg2 else "host")
    if cgns not in ("private", "host"):
        raise _inv(f"invalid cgroup namespace mode: {cgns}")
    if cgns == "private":
        namespaces.append({"type": "cgroup"})

    sysctls = dict(hc.get("Sysctls") or {})
    _validate_sysctls(sysctls, ipc == "host", net_host, uts == "host")

    # --- mounts
    shm_size = hc.get("ShmSize") or 0
    if shm_size < 0:
        raise _inv("SHM size can not be less than 0")
    shm_size = shm_size or DEFAULT_SHM_SIZE
    reqs: list[MountReq] = []
    tmpfs_opts = {}
    if engine_form:
        # the engine resolved binds and volumes; still validate them and
        # take Docker's tmpfs options from the request
        for b in hc.get("Binds") or []:
            parse_bind(b)
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "tmpfs":
                tmpfs_opts[_clean_dest(m.get("Target") or "", "tmpfs")] = \
                    parse_mount(m).options
        for dst, opts in (hc.get("Tmpfs") or {}).items():
            tmpfs_opts[_clean_dest(dst, "tmpfs")] = parse_tmpfs(dst, opts).options
    for b in ([] if engine_form else hc.get("Binds") or []):
        reqs.append(parse_bind(b))
    for m in ([] if engine_form else hc.get("Mounts") or []):
        reqs.append(parse_mount(m))
    for dst, opts in ([] if engine_form else (hc.get("Tmpfs") or {}).items()):
        reqs.append(parse_tmpfs(dst, opts))
    seen = set()
    for r in reqs:
        if r.target in seen:
            raise _inv(f"Duplicate mount point: {r.target}")
        seen.add(r.target)
    # anonymous volumes declared by the request or the image
    declared = [] if engine_form else \
        list((cc.get("Volumes") or {}).keys()) + list((ic.get("Volumes") or {}).keys())
    for dst in declared:
        d = _clean_dest(dst, "volume")
        if d not in seen:
            seen.add(d)
            reqs.append(MountReq("volume", "", d))
    if any(r.type == "volume" for r in reqs) and volume_store is None:
        raise errors.Internal("volumes requested but no volume store configured")

    ipc_mode = hc.get("IpcMode") or ""
    ipc_none = ipc_mode == "none"
    default_mounts = []
    for m in oci.DEFAULT_MOUNTS:
        m = {k: (list(v) if isinstance(v, list) else v) for k, v in m.items()}
        if m["destination"] == "/dev/shm":
            if ipc != "new" or ipc_none:
                continue
            m["options"] = [o for o in m["options"] if not o.startswith("size=")] + \
                [f"size={shm_size // 1024}k"]
        if m["destination"] == "/sys" and privileged:
            m["options"] = [o for o in m["options"] if o != "ro"]
        if m["destination"] == "/sys/fs/cgroup":
            if cg2:
                m["type"] = m["source"] = "cgroup2"
            if privileged:
                m["options"] = [o for o in m["options"] if o != "ro"]
        default_mounts.append(m)
    if ipc == "host":
        # the host's /dev/shm; /dev/mqueue stays an mqueue mount, made in
        # the (host's) IPC namespace, so it shows the host's queues (as
        # Docker: the host need not have /dev/mqueue mounted)
        default_mounts.append({"destination": "/dev/shm", "type": "bind",
                               "source": "/dev/shm", "options": ["rbind", "rprivate"]})
    user_dests = {r.target for r in reqs}
    if engine_form:
        user_dests = {m["destination"] for m in mounts_extra or ()}
    # /dev/shm shared through the host, as Docker's IpcMounts (a user mount
    # of /dev/shm wins)
    shm_src = None
    if ipc_mode.startswith("container:"):
        shm_src = (container_namespaces or {}).get("ipc_shm")
    elif ipc_mode == "shareable" and engine_form and shm_path and \
            "/dev/shm" not in user_dests:
        shm_src = shm_path
        default_mounts = [m for m in default_mounts if m["destination"] != "/dev/shm"]
    if shm_src and "/dev/shm" not in user_dests:
        if shm_src == shm_path:
            _mount_shareable_shm(shm_path, shm_size)
        default_mounts.append({"destination": "/dev/shm", "type": "bind", "source": shm_src,
                               "options": ["rbind", "rprivate"]})

    def overridden(dest):
        if dest in user_dests:
            return True
        # a user mount of /dev hides the default mounts under it
        return any(dest.startswith(u + "/") for u in user_dests if u == "/dev")

    mounts = [m for m in default_mounts if not overridden(m["destination"])]
    if engine_form:
        # the engine's list, later entries winning for one destination
        last = {}
        for i, m in enumerate(mounts_extra or ()):
            last[posixpath.normpath(m["destination"])] = i
        for i, m in enumerate(mounts_extra or ()):
            dest = posixpath.normpath(m["destination"])
            if last[dest] != i:
                continue
            m = dict(m, options=list(m.get("options") or []))
            if m.get("type") == "tmpfs" and dest in tmpfs_opts:
                m["options"] = list(tmpfs_opts[dest])
            mounts.append(m)
            _copy_up_engine_volume(m, rootfs, container_id)
    else:
        for m in mounts_extra or ():
            if not overridden(m["destination"]):
                mounts.append(dict(m))

    init = hc.get("Init") and not engine_form
    if init:
        init_path = init_path or find_init()
        if not init_path:
            raise _inv("no init binary found: install tini or catatonit, or set "
                       "init-path in the daemon configuration")
        mounts.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind",
                       "source": init_path, "options": ["bind", "ro"]})
        process["args"] = [INIT_PATH_IN_CONTAINER, "--"] + process["args"]

    # --- devices and device cgroup
    dev_nodes, dev_rules = _device_mappings(hc.get("Devices"))
    cg_rules = [parse_device_rule(r) for r in hc.get("DeviceCgroupRules") or []]

    # --- resources
    resources = build_resources(hc, warns)
    if privileged:
        resources["devices"] = [{"allow": True, "access": "rwm"}]
        dev_nodes = host_devices()
    else:
        resources["devices"] = [dict(r) for r in oci.DOCKER_DEVICE_RULES] + [
            {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "access": "rwm"},
        ] + dev_rules + cg_rules

    # --- seccomp
    seccomp = None
    if privileged or sec["seccomp"] == "unconfined":
        seccomp = None
    elif sec["seccomp"]:
        from skiff.engine import seccomp_default

        seccomp = seccomp_default.load_profile(_seccomp_profile_text(sec["seccomp"]), caps, arch)
    else:
        from skiff.engine import seccomp_default

        seccomp = seccomp_default.render(caps, arch)

    user_parent = hc.get("CgroupParent") or ""
    if user_parent:
        # --cgroup-parent wins over the engine's default parent
        if ".." in user_parent.split("/"):
            raise _inv(f"invalid cgroup parent: {user_parent}")
        cgroup_parent = user_parent
        cgroups_path = None
    cgroup_parent = cgroup_parent or "/skiff"
    if cgroups_path:
        cgroup_parent, _, container_id_path = cgroups_path.rpartition("/")
    else:
        container_id_path = container_id
    if not cgroup_parent.startswith("/") and not cgroups_path:
        cgroup_parent = "/" + cgroup_parent
    linux = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cgroups_path or posixpath.join(cgroup_parent, container_id_path),
        "maskedPaths": [] if privileged else masked_paths(),
        "readonlyPaths": [] if privileged else list(oci.DOCKER_READONLY_PATHS),
    }
    if sysctls:
        linux["sysctl"] = sysctls
    if dev_nodes:
        linux["devices"] = dev_nodes
    if seccomp is not None:
        linux["seccomp"] = seccomp

    annotations = {}
    for k, v in (cc.get("Labels") or {}).items():
        annotations[k] = str(v)
    for k, v in (hc.get("Annotations") or {}).items():
        annotations[k] = str(v)

    # --- user mounts; volumes are created only now that all checks passed
    user_mounts = []
    points = []
    created = []
    try:
        for r in reqs:
            if r.type == "bind":
                if r.create_host_path and not os.path.exists(r.source):
                    os.makedirs(r.source, 0o755, exist_ok=True)
                opts = ["rbind" if r.recursive else "bind", r.propagation,
                        "ro" if r.readonly else "rw"]
                user_mounts.append({"destination": r.target, "type": "bind",
                                    "source": r.source, "options": opts})
                points.append({"Type": "bind", "Source": r.source, "Destination": r.target,
                               "Mode": r.mode, "RW": not r.readonly,
                               "Propagation": r.propagation})
            elif r.type == "volume":
                anonymous = not r.source
                vol, new = volume_store.ensure(
                    r.source or None, labels=r.labels, options=r.driver_opts,
                    anonymous=anonymous)
                if new:
                    created.append(vol["Name"])
                src = vol["Mountpoint"]
                if not r.nocopy and rootfs:
                    volume_store.copy_up(vol["Name"], rootfs, r.target)
                user_mounts.append({"destination": r.target, "type": "bind",
                                    "source": src,
                                    "options": ["rbind", "rprivate",
                                                "ro" if r.readonly else "rw"]})
                points.append({"Type": "volume", "Name": vol["Name"], "Source": src,
                               "Destination": r.target, "Driver": "local",
                               "Mode": r.mode or "z", "RW": not r.readonly,
                               "Propagation": ""})
            else:
                user_mounts.append({"destination": r.target, "type": "tmpfs",
                                    "source": "tmpfs", "options": list(r.options)})
                points.append({"Type": "tmpfs", "Source": "", "Destination": r.target,
                               "Mode": "", "RW": not r.readonly, "Propagation": ""})
    except BaseException:
        for name in created:
            try:
                volume_store.remove(name, force=True)
            except Exception:
                pass
        raise
    user_mounts.sort(key=lambda m: m["destination"].count("/"))
    mounts.extend(user_mounts)
    if volume_store is not None:
        for p in points:
            if p["Type"] == "volume":
                volume_store.add_user(p["Name"], container_id)
    if mount_points is not None:
        mount_points.extend(points)

    spec = {
        "ociVersion": oci.OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname if uts != "host" else None,
        "mounts": mounts,
        "linux": linux,
    }
    if spec["hostname"] is None:
        del spec["hostname"]
    if cc.get("Domainname") and uts != "host":
        spec["domainname"] = cc["Domainname"]
    if annotations:
        spec["annotations"] = annotations
    return spec


def _seccomp_profile_text(opt: str) -> str:
    """--security-opt seccomp=<JSON or a file the daemon reads>: the JSON."""
    if opt.lstrip().startswith("{"):
        return opt
    try:
        with open(opt) as f:
            return f.read()
    except OSError as e:
        raise _inv(f"opening seccomp profile ({opt}) failed: {os.strerror(e.errno).lower()}")


def validate(container_config: dict | None, host_config: dict | None, *,
             host_caps=None) -> list[str]:
    """The checks ``docker create`` makes before anything exists, with
    Docker's messages; returns Docker's create warnings. For the engine's
    create (build_spec runs again at start, with the rootfs mounted)."""
    cc = container_config or {}
    hc = host_config or {}
    warns: list[str] = []
    wd = cc.get("WorkingDir")
    if wd and not wd.startswith("/"):
        raise _inv(f"the working directory '{wd}' is invalid, it needs to be an "
                   "absolute path")
    if (hc.get("UTSMode") or "") == "host" and cc.get("Hostname"):
        raise _inv("Conflicting options: hostname and the UTS mode")
    net_mode = hc.get("NetworkMode") or ""
    if net_mode.startswith("container:") and cc.get("Hostname"):
        raise _inv("conflicting options: hostname and the network mode")
    caps = tweak_caps(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")),
                      host_caps if host_caps is not None else host_bounding_caps())
    sec = parse_security_opts(hc.get("SecurityOpt"), warns)
    if sec["seccomp"] and sec["seccomp"] != "unconfined" and not hc.get("Privileged"):
        from skiff.engine import seccomp_default

        seccomp_default.load_profile(_seccomp_profile_text(sec["seccomp"]), caps)
    build_resources(hc, warns)
    build_rlimits(hc.get("Ulimits"))
    oom = hc.get("OomScoreAdj")
    if oom and not -1000 <= int(oom) <= 1000:
        raise _inv(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    if (hc.get("ShmSize") or 0) < 0:
        raise _inv("SHM size can not be less than 0")
    seen = set()
    reqs = [parse_bind(b) for b in hc.get("Binds") or []]
    reqs += [parse_mount(m) for m in hc.get("Mounts") or []]
    reqs += [parse_tmpfs(d, o) for d, o in (hc.get("Tmpfs") or {}).items()]
    for r in reqs:
        if r.target in seen:
            raise _inv(f"Duplicate mount point: {r.target}")
        seen.add(r.target)
    for kind, key in (("ipc", "IpcMode"), ("pid", "PidMode"), ("uts", "UTSMode")):
        mode = hc.get(key) or ""
        if not mode.startswith("container:"):
            _ns_mode(mode, kind, None)
    cgns = hc.get("CgroupnsMode") or "private"
    if cgns not in ("private", "host"):
        raise _inv(f"invalid cgroup namespace mode: {cgns}")
    _validate_sysctls(dict(hc.get("Sysctls") or {}), (hc.get("IpcMode") or "") == "host",
                      net_mode == "host", (hc.get("UTSMode") or "") == "host")
    _device_mappings(hc.get("Devices"))
    for rule in hc.get("DeviceCgroupRules") or []:
        parse_device_rule(rule)
    return warns
