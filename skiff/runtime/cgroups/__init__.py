"""Control groups for skiff-runtime: cgroup v1, hybrid and v2, runc's semantics.

Host layouts (:func:`detect`)
-----------------------------
- ``"v2"``:     one cgroup2 tree at /sys/fs/cgroup (most current distributions).
- ``"v1"``:     one cgroup (v1) hierarchy per controller (or co-mounted group).
- ``"hybrid"``: v1 hierarchies plus a cgroup2 tree at /sys/fs/cgroup/unified
  (this development machine; it holds no controller used for limits). As runc
  does, the container also gets a directory there and is put into it.

Where a container's cgroup goes (:func:`resolve_path`), as runc's cgroupfs driver
--------------------------------------------------------------------------------
- ``linux.cgroupsPath`` absolute (``/skiff/abc``): that path under the root of
  each hierarchy (``/sys/fs/cgroup/memory/skiff/abc``, ``/sys/fs/cgroup/skiff/abc``).
- relative (``skiff/abc``), or empty (then the container id is used): under the
  runtime's own cgroup of each hierarchy (v1), or under the *parent* of its own
  cgroup (v2: its own cgroup holds processes and cannot delegate controllers).
- ``/`` (the root cgroup) is refused with InvalidArgument.
- systemd form ``slice:prefix:name`` (``system.slice:docker:abc``): skiff has no
  systemd driver; it is mapped to the cgroupfs path systemd would use,
  ``/system.slice/docker-abc.scope`` (a slice ``a-b.slice`` nests as
  ``/a.slice/a-b.slice``; empty slice = ``system.slice``). The limits are the
  same; systemd simply does not know the unit.

API (what skiff-runtime's create/delete/pause/resume/ps/kill call)
-----------------------------------------------------------------
::

    from skiff.runtime import cgroups
    mgr = cgroups.for_spec(container_id, spec["linux"])  # pure: computes paths
    mgr.create()           # validate resources, mkdir, write limits (no partial
                           # state on error: what was made is removed, then raise)
                           # = mgr.prepare() (mkdir) + mgr.apply_limits()
    v2dir, tasks = mgr.entry()   # how a new process enters without the kernel's
                           # global lock: born in v2dir (skiff.sys.clone3),
                           # then join_self([(fd, path) of tasks]) in the child (v1)
    mgr.add(pid)           # or move a process in (cgroup.procs: waits for that
                           # lock); before the child unshares its cgroup
                           # namespace, and before it execs the user program
    state["cgroup"] = mgr.to_state()     # JSON-able; persist with the container
    mgr = cgroups.from_state(state["cgroup"])    # in a later command
    mgr.update(resources)  # `runc update`: write new linux.resources
    mgr.freeze(); mgr.thaw(); mgr.freezer_state()  # "FROZEN" | "THAWED" | "FREEZING"
    mgr.pids()             # every pid in the cgroup and its sub-cgroups (sorted)
    mgr.signal_all(sig)    # `kill --all`: freeze, signal every pid, thaw
    mgr.oom_kills()        # processes killed by the memory limit (State.OOMKilled)
    mgr.stats()            # Docker's stats JSON pieces: cpu_stats, memory_stats,
                           # pids_stats, blkio_stats (the engine adds read/name/id,
                           # networks, and precpu_stats from its previous sample)
    mgr.destroy()          # SIGKILL whatever is left, wait, rmdir; tolerant of
                           # races and of an already removed cgroup. Only when
                           # create() made the directory (mgr.owned, kept in
                           # to_state): a pre-existing cgroup named by
                           # cgroupsPath is joined but never emptied.
    mgr.exists()           # the cgroup directory is still there

``create(resources=None)`` takes ``linux.resources`` (already given to
:func:`for_spec`). Errors: :class:`skiff.errors.InvalidArgument` for a spec the
kernel cannot express (checked before anything is created), ``OSError`` whose
text names the control file and value when the kernel refuses a write.

Resource mapping (``linux.resources`` → files), as runc:
memory.limit/reservation/swap → v1 memory.limit_in_bytes / soft_limit_in_bytes /
memsw.limit_in_bytes (swap is memory+swap); v2 memory.max / memory.low /
memory.swap.max (= swap - limit, -1 = max). cpu.shares → cpu.shares (v1) or
cpu.weight = 1 + (shares-2)*9999/262142 (v2); quota/period → cfs_quota_us /
cfs_period_us (v1) or cpu.max "quota period" (v2); cpus/mems → cpuset.* (v1
copies the parent's cpus/mems into each new level first). pids.limit → pids.max.
blockIO weight → blkio.weight or blkio.bfq.weight (v1), io.bfq.weight or
io.weight = 1 + (w-10)*9999/990 (v2); throttles → blkio.throttle.*_device (v1),
io.max "maj:min rbps=.. wbps=.. riops=.. wiops=.." (v2). devices → devices.allow
/ devices.deny in order (v1); on v2 an eBPF cgroup-device program built from the
same rules with v1's semantics (:mod:`.devices`, :mod:`.bpf`). hugepageLimits,
network (net_cls/net_prio) and unified (v2 only) are written when the controller
exists. Controllers missing on the host are skipped, as runc does.

Imports: stdlib only; :mod:`.bpf` is loaded only on v2 with device rules.
"""

import errno
import os
import time

from skiff.errors import InvalidArgument

from . import convert
from ._io import read, read_int, read_kv, write

CGROUP_ROOT = "/sys/fs/cgroup"
SIGKILL = 9  # numeric: the signal module (enum) is not worth its import time here
# v1 controllers runc manages; named hierarchies (name=systemd) are joined too
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "devices", "freezer", "blkio", "pids",
                  "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")


class Layout:
    """Where the hierarchies are: ``mode``, ``v1`` (controller → mountpoint),
    ``v1_roots`` (controller → mount root), ``unified`` (cgroup2 mountpoint)."""

    def __init__(self, mode, v1=None, v1_roots=None, unified=None, unified_root="/"):
        self.mode = mode
        self.v1 = v1 or {}
        self.v1_roots = v1_roots or {}
        self.unified = unified
        self.unified_root = unified_root

    def __repr__(self):
        return f"<Layout {self.mode} v1={sorted(self.v1)} unified={self.unified}>"


def parse_mountinfo(text: str) -> Layout:
    v1, roots, unified, uroot = {}, {}, None, "/"
    for line in text.splitlines():
        parts = line.split()
        try:
            sep = parts.index("-")
        except ValueError:
            continue
        fstype = parts[sep + 1]
        root, mnt = parts[3], parts[4].replace("\\040", " ")
        if fstype == "cgroup2":
            if unified is None or mnt == CGROUP_ROOT:
                unified, uroot = mnt, root
        elif fstype == "cgroup":
            opts = parts[sep + 3].split(",") if len(parts) > sep + 3 else []
            ctrls = [o for o in opts if o in V1_CONTROLLERS or o.startswith("name=")]
            for c in ctrls:
                v1.setdefault(c, mnt)
                roots.setdefault(c, root)
    if not v1:
        if unified is None:
            return Layout("none")
        return Layout("v2", unified=unified, unified_root=uroot)
    return Layout("hybrid" if unified else "v1", v1, roots, unified, uroot)


_layout = None


def detect() -> Layout:
    """The host's cgroup layout (cached for the process)."""
    global _layout
    if _layout is None:
        with open("/proc/self/mountinfo") as f:
            _layout = parse_mountinfo(f.read())
    return _layout


def own_cgroups(text: str | None = None) -> dict[str, str]:
    """/proc/self/cgroup → {controller: path}; the v2 entry is under ""."""
    if text is None:
        with open("/proc/self/cgroup") as f:
            text = f.read()
    out = {}
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def clean_path(p: str) -> str:
    """runc's CleanPath: lexical clean; a relative path cannot climb out."""
    if not p:
        return ""
    absolute = p.startswith("/")
    parts = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    s = "/".join(parts)
    return "/" + s if absolute else s


def systemd_to_cgroupfs(spec_path: str) -> str:
    """``slice:prefix:name`` → the cgroupfs path systemd uses for that scope."""
    slice_, prefix, name = spec_path.split(":")
    if not name:
        raise InvalidArgument(f"invalid cgroupsPath {spec_path!r}: systemd form needs a name")
    slice_ = slice_ or "system.slice"
    if not slice_.endswith(".slice") or "/" in slice_:
        raise InvalidArgument(f"invalid slice name {slice_!r} in cgroupsPath")
    base = slice_[:-len(".slice")]
    path = ""
    if base != "-":
        acc = []
        for word in base.split("-"):
            if not word:
                raise InvalidArgument(f"invalid slice name {slice_!r} in cgroupsPath")
            acc.append(word)
            path += "/" + "-".join(acc) + ".slice"
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix
                                                  else f"{name}.scope")
    return path + "/" + unit


def inner_path(container_id: str, cgroups_path: str | None) -> str:
    """The cgroup path as runc computes it before it meets a hierarchy:
    absolute ("/x/y"), relative ("x/y", joined to the runtime's own cgroup),
    or the container id (relative) when no cgroupsPath is given. The root
    cgroup itself is refused (a container there would share every host
    process's cgroup, and delete would have to leave it)."""
    p = cgroups_path or ""
    if p and not p.startswith("/") and p.count(":") == 2:
        return systemd_to_cgroupfs(p)
    p = clean_path(p)
    if p == "/":
        raise InvalidArgument(f"invalid cgroupsPath {cgroups_path!r}: "
                              "a container cannot use the root cgroup")
    if not p:
        p = clean_path(container_id)
        if not p or "/" in p:
            raise InvalidArgument(f"invalid container id {container_id!r} for a cgroup name")
    return p


def resolve_path(container_id: str, cgroups_path: str | None, layout: Layout | None = None,
                 own: dict[str, str] | None = None) -> dict[str, str]:
    """{controller: directory} for the container (v2: key ""; hybrid: v1 keys
    plus "" for the unified tree). Pure given ``layout`` and ``own``."""
    layout = layout or detect()
    inner = inner_path(container_id, cgroups_path)
    absolute = inner.startswith("/")
    if not absolute and own is None:
        own = own_cgroups()
    out = {}

    def under(mnt, mroot, ownpath, v2):
        if absolute:
            return os.path.join(mnt, inner.lstrip("/"))
        base = ownpath or "/"
        if v2:
            base = os.path.dirname(base.rstrip("/")) or "/"
        if mroot != "/" and (base + "/").startswith(mroot.rstrip("/") + "/"):
            base = base[len(mroot.rstrip("/")):] or "/"
        return os.path.join(mnt, base.lstrip("/"), inner)

    if layout.mode == "v2":
        out[""] = under(layout.unified, layout.unified_root, (own or {}).get(""), True)
        return {k: os.path.normpath(v) for k, v in out.items()}
    if layout.mode == "none":
        raise InvalidArgument("no cgroup filesystem is mounted on this host")
    for ctrl, mnt in layout.v1.items():
        out[ctrl] = under(mnt, layout.v1_roots.get(ctrl, "/"), (own or {}).get(ctrl), False)
    if layout.mode == "hybrid":
        out[""] = under(layout.unified, layout.unified_root, (own or {}).get(""), True)
    return {k: os.path.normpath(v) for k, v in out.items()}


def for_spec(container_id: str, linux: dict | None, layout: Layout | None = None) -> "Manager":
    """A manager for the container described by the spec's ``linux`` section
    (``cgroupsPath`` and ``resources``). Computes paths; touches nothing."""
    linux = linux or {}
    res = linux.get("resources") or {}
    convert.validate(res)
    layout = layout or detect()
    paths = resolve_path(container_id, linux.get("cgroupsPath"), layout)
    return Manager(layout.mode, paths, res, mounts=_mounts(layout))


def from_state(state: dict) -> "Manager":
    """Rebuild a manager from :meth:`Manager.to_state` output."""
    m = Manager(state["mode"], dict(state["paths"]), {}, mounts=dict(state.get("mounts", {})))
    m.owned = bool(state.get("owned", True))
    return m


def _mounts(layout: Layout) -> dict[str, str]:
    m = dict(layout.v1)
    if layout.unified:
        m[""] = layout.unified
    return m


class Manager:
    """One container's cgroup on every hierarchy. See the module docstring."""

    def __init__(self, mode: str, paths: dict[str, str], resources: dict | None = None,
                 mounts: dict[str, str] | None = None):
        self.mode = mode
        self.paths = paths
        self.resources = resources or {}
        self.mounts = mounts or {}
        # True when create() made the container's own directory: only then
        # does destroy() kill what is inside (a pre-existing, shared cgroup
        # named by cgroupsPath is never emptied by force)
        self.owned = False

    def __repr__(self):
        return f"<cgroups.Manager {self.mode} {self.path}>"

    # -- where -------------------------------------------------------------
    @property
    def path(self) -> str:
        """The main directory (v2 path, or the memory/pids/first v1 path)."""
        if self.mode == "v2":
            return self.paths[""]
        for c in ("memory", "pids", "cpu", "devices"):
            if c in self.paths:
                return self.paths[c]
        return next(iter(self.paths.values()))

    def _v1_paths(self) -> dict[str, str]:
        return {k: v for k, v in self.paths.items() if k}

    def _dirs(self) -> list[str]:
        """Distinct directories (co-mounted controllers share one)."""
        seen = []
        for v in self.paths.values():
            if v not in seen:
                seen.append(v)
        return seen

    def _procs_dir(self) -> str:
        if self.mode == "v2":
            return self.paths[""]
        for c in ("freezer", "pids", "devices", "memory", "cpu"):
            if c in self.paths:
                return self.paths[c]
        return self._dirs()[0]

    def to_state(self) -> dict:
        return {"mode": self.mode, "paths": dict(self.paths), "mounts": dict(self.mounts),
                "owned": self.owned}

    def exists(self) -> bool:
        return os.path.isdir(self._procs_dir())

    # -- lifecycle ---------------------------------------------------------
    def create(self, resources: dict | None = None) -> None:
        """mkdir on every hierarchy and write the limits. On any error the
        directories made here are removed again before the error is raised."""
        self.prepare(resources)
        self.apply_limits()

    def prepare(self, resources: dict | None = None, v2_only: bool = False) -> None:
        """The first half of create(): validate, mkdir on every hierarchy, and
        what a process needs before it may enter (cpuset's cpus and mems, v2's
        controllers); no limits yet (apply_limits). ``v2_only``: just the
        cgroup v2 directory (a process can be born there); a later call makes
        the rest. On error what was made is removed again."""
        if not hasattr(self, "_made"):
            res = convert.validate(resources if resources is not None else self.resources)
            self._pending = res
            self._made = []
        made = self._made
        try:
            for key, d in self.paths.items():
                if v2_only and key:
                    continue
                mnt = self.mounts.get(key)
                new = _makedirs(d, mnt)
                made += new
                if d == self._procs_dir() and d in new:
                    self.owned = True
                if key == "cpuset" and mnt:
                    from . import v1
                    v1.ensure_cpuset(mnt, d)
                if self.mode == "v2" and mnt:
                    from . import v2
                    v2.enable_controllers(mnt, d)
        except BaseException:
            self._undo()
            raise

    def apply_limits(self) -> None:
        """The second half of create(): write the limits given to prepare()
        (it may run while a process already entered). On error the
        directories prepare() made are removed (once they are empty)."""
        try:
            self._apply(self._pending)
        except BaseException:
            self._undo()
            raise

    def _undo(self) -> None:
        for d in reversed(getattr(self, "_made", [])):
            try:
                os.rmdir(d)
            except OSError:
                pass
        self._made = []
        self.owned = False

    def entry(self, v1: bool = True) -> tuple[str | None, list[str]]:
        """How a new process enters without the kernel's global lock (see
        :func:`join_self`): (the cgroup v2 directory to be born in with
        clone3(CLONE_INTO_CGROUP), or None on pure v1; the v1 ``tasks``
        files a freshly forked, single-threaded child writes "0" into)."""
        v2dir = self.paths.get("")
        tasks = []
        for key, d in self.paths.items():
            if v1 and key and os.path.join(d, "tasks") not in tasks:
                tasks.append(os.path.join(d, "tasks"))
        return v2dir, tasks

    def _apply(self, res: dict, update=False) -> None:
        if self.mode == "v2":
            from . import v2
            v2.apply(self.paths[""], res, update=update)
        else:
            from . import v1
            v1.apply(self._v1_paths(), res, update=update)

    def add(self, pid: int, v2_only: bool = False) -> None:
        """Move ``pid`` (a whole process) into the cgroup on every hierarchy
        (or only the cgroup v2 one). This waits for the kernel's global lock
        (see :func:`join_self`): the runtime uses it only when a process
        could not be born in its cgroup."""
        for d in self._dirs():
            if v2_only and d != self.paths.get(""):
                continue
            write(d, "cgroup.procs", pid)

    def update(self, resources: dict) -> None:
        """Apply new ``linux.resources`` to a live cgroup (``runc update``)."""
        res = convert.validate(resources)
        self._apply(res, update=True)
        self.resources = res

    # -- freezer -----------------------------------------------------------
    def freezer_state(self) -> str:
        """"FROZEN", "FREEZING" or "THAWED" (v1 wording, on v2 too);
        "THAWED" when there is no freezer."""
        if self.mode == "v2":
            d = self.paths[""]
            try:
                want = read(d, "cgroup.freeze").strip()
            except FileNotFoundError:
                return "THAWED"
            if want != "1":
                return "THAWED"
            events = read(d, "cgroup.events")
            return "FROZEN" if "frozen 1" in events else "FREEZING"
        d = self.paths.get("freezer")
        if not d:
            return "THAWED"
        try:
            return read(d, "freezer.state").strip()
        except FileNotFoundError:
            return "THAWED"

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process; returns when the kernel reports frozen.
        Raises OSError(EBUSY) and thaws again if it cannot within ``timeout``."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if self.mode == "v2":
            d = self.paths[""]
            write(d, "cgroup.freeze", "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            check = lambda: want in read(d, "cgroup.events")  # noqa: E731
        else:
            d = self.paths.get("freezer")
            if not d:
                raise OSError(errno.ENOTSUP, "the freezer cgroup is not mounted")
            word = "FROZEN" if frozen else "THAWED"
            write(d, "freezer.state", word)
            check = lambda: read(d, "freezer.state").strip() == word  # noqa: E731
        deadline = time.monotonic() + timeout
        delay = 0.0005
        n = 0
        while not check():
            n += 1
            if time.monotonic() > deadline:
                if frozen:
                    self._set_frozen(False, 2.0)
                raise OSError(errno.EBUSY, "timed out waiting for the freezer "
                              f"({'freeze' if frozen else 'thaw'}) of {d}")
            if self.mode != "v2" and frozen and n % 50 == 0:
                # v1 can get stuck in FREEZING: thaw and retry (as runc does)
                write(d, "freezer.state", "THAWED")
                write(d, "freezer.state", "FROZEN")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- processes ---------------------------------------------------------
    def pids(self) -> list[int]:
        """Every pid in the cgroup, sub-cgroups included."""
        out = set()
        for dirpath, _, files in os.walk(self._procs_dir()):
            if "cgroup.procs" in files:
                try:
                    out.update(int(x) for x in read(dirpath, "cgroup.procs").split())
                except OSError:
                    pass
        return sorted(out)

    def signal_all(self, sig: int = SIGKILL) -> None:
        """Send ``sig`` to every process (frozen meanwhile so none can fork
        away, as runc's signalAllProcesses). A cgroup that was paused stays
        paused, except for SIGKILL, which needs the tasks thawed to act."""
        was_frozen = self.freezer_state() in ("FROZEN", "FREEZING")
        frozen = False
        try:
            try:
                self.freeze(timeout=5.0)
                frozen = True
            except OSError:
                pass
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen and (not was_frozen or sig == SIGKILL):
                try:
                    self.thaw()
                except OSError:
                    pass

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill what is left (SIGKILL), wait for it to leave, and remove the
        directories (deepest first). A cgroup already gone is fine. A cgroup
        this manager did not create (``owned`` false: cgroupsPath named an
        existing one) is not emptied: its directories are removed only if no
        process is left in them."""
        if not self.exists():
            self._rmdirs()
            return
        if not self.owned:
            try:
                self._rmdirs(time.monotonic() + 0.1, recursive=False)
            except OSError:
                pass
            return
        d = self._procs_dir()
        kill_file = os.path.join(d, "cgroup.kill")
        deadline = time.monotonic() + timeout
        while self.pids():
            if self.mode == "v2" and os.path.exists(kill_file):
                try:
                    write(d, "cgroup.kill", 1)
                except OSError:
                    self.signal_all(SIGKILL)
            else:
                self.signal_all(SIGKILL)
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self._rmdirs(deadline)

    def _rmdirs(self, deadline: float | None = None, recursive: bool = True) -> None:
        deadline = deadline or time.monotonic() + 2.0
        errors = []
        for top in self._dirs():
            if not os.path.isdir(top):
                continue
            subdirs = [dp for dp, _, _ in os.walk(top)] if recursive else [top]
            for d in reversed(subdirs):
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:
                        # EBUSY: a dying task has not left yet
                        if e.errno == errno.EBUSY and time.monotonic() < deadline:
                            time.sleep(0.01)
                            continue
                        errors.append(f"{d}: {e.strerror}")
                        break
        if errors:
            raise OSError(errno.EBUSY, "failed to remove cgroup: " + "; ".join(errors))

    def oom_kills(self) -> int:
        """How many processes the memory limit has OOM-killed so far (Docker's
        State.OOMKilled; read it before destroy)."""
        if self.mode == "v2":
            return read_kv(self.paths[""], "memory.events").get("oom_kill", 0)
        d = self.paths.get("memory")
        return read_kv(d, "memory.oom_control").get("oom_kill", 0) if d else 0

    # -- stats -------------------------------------------------------------
    def stats(self) -> dict:
        """Usage figures in Docker's stats JSON shapes (cpu in nanoseconds)."""
        if self.mode == "v2":
            return _stats_v2(self.paths[""])
        return _stats_v1(self._v1_paths())


def join_self(tasks: list[tuple[int, str]]) -> None:
    """Move the calling thread into cgroup v1 directories: write "0"
    (ourselves) into each ``tasks`` file given as (fd open for writing,
    path). Call it in a freshly forked, single-threaded child, where the
    thread is the whole process and its children follow it. The fds may
    have been opened by the parent as host root: the kernel checks the
    opener's credentials, so this works from a new user namespace too.

    Why not cgroup.procs: moving a whole thread group takes the kernel's
    global cgroup_threadgroup_rwsem for writing, and the first writer after
    a quiet spell waits for an RCU grace period (6-20 ms measured on the
    development VM, every create; runc pays it too), while holding
    cgroup_mutex, so every mkdir in a cgroup filesystem waits behind it as
    well. On recent kernels (measured on 6.18) a thread moving itself skips
    that lock ("if the thread is current, it won't exit or change pid under
    our hands"); older ones take it, and it still works. The v2 part is
    clone3(CLONE_INTO_CGROUP) (skiff.sys.clone3). Raises OSError naming the
    directory."""
    for fd, path in tasks:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise OSError(e.errno, f"failed to join cgroup {os.path.dirname(path)}: "
                          f"{e.strerror}", path) from None


def _makedirs(d: str, mount: str | None) -> list[str]:
    """mkdir -p; returns the directories actually created (deepest last)."""
    made = []
    missing = []
    cur = d
    while not os.path.isdir(cur):
        if mount and os.path.normpath(cur) == os.path.normpath(mount):
            break
        missing.append(cur)
        nxt = os.path.dirname(cur)
        if nxt == cur:
            break
        cur = nxt
    for m in reversed(missing):
        try:
            os.mkdir(m, 0o755)
            made.append(m)
        except FileExistsError:
            pass
    return made


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds, as Docker's ``system_cpu_usage``
    (sum of /proc/stat's first line, USER_HZ ticks)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    hz = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields) * 1_000_000_000 // hz


def _stats_common_cpu() -> dict:
    return {"system_cpu_usage": system_cpu_usage(), "online_cpus": os.cpu_count() or 1}


def _stats_v1(paths: dict[str, str]) -> dict:
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    ca = paths.get("cpuacct")
    if ca:
        cpu["cpu_usage"]["total_usage"] = read_int(ca, "cpuacct.usage", 0)
        try:
            cpu["cpu_usage"]["percpu_usage"] = [int(x) for x in
                                                read(ca, "cpuacct.usage_percpu").split()]
        except OSError:
            pass
        st = read_kv(ca, "cpuacct.stat")
        hz = os.sysconf("SC_CLK_TCK")
        cpu["cpu_usage"]["usage_in_usermode"] = st.get("user", 0) * 1_000_000_000 // hz
        cpu["cpu_usage"]["usage_in_kernelmode"] = st.get("system", 0) * 1_000_000_000 // hz
    if paths.get("cpu"):
        st = read_kv(paths["cpu"], "cpu.stat")
        cpu["throttling_data"] = {"periods": st.get("nr_periods", 0),
                                  "throttled_periods": st.get("nr_throttled", 0),
                                  "throttled_time": st.get("throttled_time", 0)}
    cpu.update(_stats_common_cpu())
    mem = {}
    m = paths.get("memory")
    if m:
        mem = {"usage": read_int(m, "memory.usage_in_bytes", 0),
               "max_usage": read_int(m, "memory.max_usage_in_bytes", 0),
               "failcnt": read_int(m, "memory.failcnt", 0),
               "limit": read_int(m, "memory.limit_in_bytes", 0),
               "stats": read_kv(m, "memory.stat")}
    pids = {}
    if paths.get("pids"):
        pids = {"current": read_int(paths["pids"], "pids.current", 0)}
        lim = read_int(paths["pids"], "pids.max")
        if lim:
            pids["limit"] = lim
    blk = {"io_service_bytes_recursive": [], "io_serviced_recursive": []}
    if paths.get("blkio"):
        for key, f in (("io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"),
                       ("io_serviced_recursive", "blkio.throttle.io_serviced_recursive")):
            try:
                text = read(paths["blkio"], f)
            except OSError:
                continue
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    maj, mnr = parts[0].split(":")
                    blk[key].append({"major": int(maj), "minor": int(mnr), "op": parts[1],
                                     "value": int(parts[2])})
    return {"cpu_stats": cpu, "memory_stats": mem, "pids_stats": pids, "blkio_stats": blk}


def _stats_v2(d: str) -> dict:
    st = read_kv(d, "cpu.stat")
    cpu = {"cpu_usage": {"total_usage": st.get("usage_usec", 0) * 1000,
                         "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
                         "usage_in_usermode": st.get("user_usec", 0) * 1000},
           "throttling_data": {"periods": st.get("nr_periods", 0),
                               "throttled_periods": st.get("nr_throttled", 0),
                               "throttled_time": st.get("throttled_usec", 0) * 1000}}
    cpu.update(_stats_common_cpu())
    mem = {}
    if os.path.exists(os.path.join(d, "memory.current")):
        mem = {"usage": read_int(d, "memory.current", 0), "stats": read_kv(d, "memory.stat")}
        lim = read_int(d, "memory.max")
        mem["limit"] = lim if lim is not None else 0
        peak = read_int(d, "memory.peak")
        if peak is not None:
            mem["max_usage"] = peak
    pids = {}
    if os.path.exists(os.path.join(d, "pids.current")):
        pids = {"current": read_int(d, "pids.current", 0)}
        lim = read_int(d, "pids.max")
        if lim:
            pids["limit"] = lim
    blk = {"io_service_bytes_recursive": [], "io_serviced_recursive": []}
    try:
        text = read(d, "io.stat")
    except OSError:
        text = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        maj, mnr = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, names in (("io_service_bytes_recursive", ("rbytes", "wbytes")),
                           ("io_serviced_recursive", ("rios", "wios"))):
            for name, op in zip(names, ("read", "write")):
                if name in kv:
                    blk[key].append({"major": maj, "minor": mnr, "op": op,
                                     "value": int(kv[name])})
    return {"cpu_stats": cpu, "memory_stats": mem, "pids_stats": pids, "blkio_stats": blk}
