"""The verbs of skiff-runtime (runc's semantics and messages): create, run,
exec, list, pause, resume, ps, update, features, spec. start, state, kill
and delete live in lifecycle.py (they start faster without this module)."""

import posix
import sys

from skiff.runtime import fastjson
from skiff.runtime.lifecycle import (_destroy, _one_id, _rmtree, _start,  # noqa: F401
                                     cmd_delete, cmd_kill, cmd_start, cmd_state,
                                     parse_signal)
from skiff.runtime.state import Container, RuntimeFailure, list_ids, load, now_rfc3339, \
    proc_start_time



class _LazyOS:
    """``os`` for the verbs that need it (create, exec, ...), imported at
    first use: start, state, kill and delete run on ``posix`` alone, which
    saves ~2 ms of their start-up (see state.py)."""

    def __getattr__(self, name):
        import os as real
        globals()["os"] = real
        return getattr(real, name)


os = _LazyOS()

def _write_pid_file(path, pid):
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


# --------------------------------------------------------------------------- spec

def cmd_spec(root, opts, pos, log):
    from skiff.testing.busybox import runc_default_spec
    bundle = opts.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise RuntimeFailure("File config.json exists. Remove it first.")
    spec = runc_default_spec(["sh"], terminal=True)
    spec["root"]["readonly"] = True
    with open(path, "w") as f:
        f.write(fastjson.dumps(spec, indent="\t" and 2))
    return 0


# --------------------------------------------------------------------------- create / run

def _connect_console(path):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeFailure(f"failed to connect to console socket {path}: "
                             f"{e.strerror.lower()}") from None
    return s


def _create(root, opts, pos, log, console_sock=None):
    from skiff.runtime import hooks, process, spec
    cid = _one_id("create", pos)
    bundle = os.path.abspath(opts.get("bundle") or os.getcwd())
    cfg = spec.load_bundle(bundle)
    if cfg.process.terminal and console_sock is None:
        if not opts.get("console_socket"):
            raise RuntimeFailure("cannot allocate tty if runc will detach without setting "
                                 "console socket")
    elif not cfg.process.terminal and opts.get("console_socket"):
        raise RuntimeFailure("cannot use console socket if runc will not detach or "
                             "allocate tty")
    os.makedirs(root, mode=0o711, exist_ok=True)
    cdir = os.path.join(root, cid)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise RuntimeFailure("container with given ID already exists") from None
    mgr = None
    try:
        fifo = os.path.join(cdir, "exec.fifo")
        old = os.umask(0)
        try:
            os.mkfifo(fifo, 0o622)
        finally:
            os.umask(old)
        from skiff.runtime import cgroups
        mgr = cgroups.for_spec(cid, cgroup_linux(cfg))  # made by spawn_init
        if cfg.process.terminal and console_sock is None:
            console_sock = _connect_console(opts["console_socket"])
        base_state = {"ociVersion": cfg.oci_version, "id": cid, "status": "creating",
                      "bundle": bundle}
        if cfg.annotations:
            base_state["annotations"] = cfg.annotations

        def on_hooks(pid):
            st = dict(base_state, pid=pid)
            for name in ("prestart", "createRuntime", "createContainer"):
                if cfg.hooks[name]:
                    hooks.run_hooks(cfg.hooks[name], st, name)

        init_opts = {"fifo": fifo, "no_pivot": bool(opts.get("no_pivot")),
                     "preserve_fds": int(opts.get("preserve_fds") or 0),
                     "state": dict(base_state, pid=0),
                     "seccomp_cache": os.path.join(root, ".seccomp-cache")}
        if console_sock is not None:
            init_opts["console_fd"] = console_sock.fileno()
            init_opts["console_sock_obj"] = console_sock
        # compiled (and cached) here, where pyseccomp can be imported
        prog = process.prepare_seccomp(cfg.seccomp, init_opts["seccomp_cache"])
        # an O_PATH handle on the fifo, opened here as host root: the init (maybe
        # an unprivileged user namespace's root) reopens it through /proc/self/fd
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        init_opts["fifo_fd"] = fifo_fd
        made = []

        def on_started(pid):
            # saved while the init still sets itself up (in parallel), and so
            # that a create killed from here on leaves a container `delete`
            # can remove, cgroup included
            data = {"ociVersion": cfg.oci_version, "id": cid, "pid": pid,
                    "start_time": proc_start_time(pid), "bundle": bundle,
                    "rootfs": cfg.root_path, "created": now_rfc3339(),
                    "annotations": cfg.annotations, "cgroup": mgr.to_state(),
                    "hooks": cfg.raw.get("hooks") or {}, "process": cfg.raw["process"],
                    "seccomp": (cfg.raw.get("linux") or {}).get("seccomp")}
            made.append(Container(root, cid, data))
            made[0].save()

        try:
            pid = process.spawn_init(cfg, cid, init_opts, mgr, on_hooks, prog, on_started)
        finally:
            os.close(fifo_fd)
        c = made[0]
        if opts.get("pid_file"):
            _write_pid_file(opts["pid_file"], pid)
        return c
    except BaseException:
        if mgr is not None:
            try:
                mgr.destroy()
            except Exception:  # noqa: BLE001
                pass
        _rmtree(cdir)
        raise


# runc specconv AllowedDevices: appended after the spec's own device rules
ALLOWED_DEVICES = [
    {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
]


def cgroup_linux(cfg):
    """The spec's ``linux`` section with runc's default device rules and an
    allow rule per linux.devices entry added to resources.devices."""
    linux = dict(cfg.raw.get("linux") or {})
    res = dict(linux.get("resources") or {})
    rules = list(res.get("devices") or [])
    rules += ALLOWED_DEVICES
    for d in cfg.devices:
        if d.type in ("c", "b"):
            rules.append({"allow": True, "type": d.type, "major": d.major, "minor": d.minor,
                          "access": "rwm"})
    res["devices"] = rules
    linux["resources"] = res
    return linux


def cmd_create(root, opts, pos, log):
    _create(root, opts, pos, log)
    return 0


def cmd_run(root, opts, pos, log):
    from skiff import sys as k
    detach = opts.get("detach")
    proxy = None
    if not detach:
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    if not detach and not opts.get("console_socket"):
        from skiff.runtime import spec
        bundle = os.path.abspath(opts.get("bundle") or os.getcwd())
        if spec.load_bundle(bundle).process.terminal:
            from skiff.runtime.tty import ConsoleProxy
            proxy = ConsoleProxy()
    c = _create(root, opts, pos, log, console_sock=proxy.child_sock if proxy else None)
    try:
        if proxy:
            proxy.receive_master()
        _start(c, log)
    except BaseException:
        _destroy(c, log, force=True)
        raise
    if detach:
        return 0
    code = wait_foreground(c.pid, proxy)
    if not opts.get("keep"):
        _destroy(c, log, force=True)
    return code


_FORWARD = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
            "SIGCONT", "SIGALRM")


def wait_foreground(pid, proxy=None):
    """Wait for ``pid`` (re-parented to us: we are a subreaper), forwarding
    signals; reap other orphans on the way. → runc's exit status."""
    import _signal

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass
        if proxy is not None and signum == _signal.SIGWINCH:
            proxy.resize()
    for name in _FORWARD:
        _signal.signal(getattr(_signal, name), forward)
    if proxy is not None:
        proxy.start_copy()
    while True:
        if proxy is not None:
            proxy.pump(timeout=0.05)
            try:
                wpid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 255
            if wpid == 0:
                continue
        else:
            try:
                wpid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 255
        if wpid == pid:
            if proxy is not None:
                proxy.drain()
                proxy.close()
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


# --------------------------------------------------------------------------- state / list

def cmd_list(root, opts, pos, log):
    fmt = opts.get("format") or "table"
    states = []
    for cid in list_ids(root):
        try:
            states.append(load(root, cid).runc_state())
        except RuntimeFailure:
            continue
    if opts.get("quiet"):
        for s in states:
            print(s["id"])
        return 0
    if fmt == "json":
        sys.stdout.write((fastjson.dumps(states) if states else "null") + "\n")
        return 0
    if fmt != "table":
        raise RuntimeFailure(f"invalid format option")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for s in states:
        rows.append([s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                     s["owner"]])
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(6)]
    for r in rows:
        sys.stdout.write("".join(cell.ljust(widths[i]) if i < 5 else cell
                                 for i, cell in enumerate(r)) + "\n")
    return 0


# --------------------------------------------------------------------------- kill / delete

# --------------------------------------------------------------------------- exec

def _exec_process(c, opts, pos):
    from skiff.runtime import spec
    if opts.get("process"):
        with open(opts["process"], "rb") as f:
            raw = fastjson.loads(f.read())
        return spec.parse_process(raw), raw
    if len(pos) < 2:
        raise RuntimeFailure("process args cannot be empty")
    raw = dict(c.data["process"])
    raw["args"] = pos[1:]
    raw["terminal"] = bool(opts.get("tty"))
    raw.pop("consoleSize", None)
    if opts.get("env"):
        raw["env"] = list(raw.get("env") or []) + opts["env"]
    if opts.get("cwd"):
        raw["cwd"] = opts["cwd"]
    if opts.get("no_new_privs"):
        raw["noNewPrivileges"] = True
    if opts.get("cap"):
        caps = {s: list(v) for s, v in (raw.get("capabilities") or {}).items()}
        for cap in opts["cap"]:
            for s in ("bounding", "effective", "permitted", "ambient"):
                caps.setdefault(s, [])
                if cap not in caps[s]:
                    caps[s].append(cap)
        raw["capabilities"] = caps
    user = dict(raw.get("user") or {})
    if opts.get("user"):
        from skiff.runtime import user as userdb
        from skiff.runtime.rootfs import secure_join
        rootfs = c.data["rootfs"]
        try:
            uid, gid = userdb.parse_user_arg(opts["user"],
                                             secure_join(rootfs, "/etc/passwd"),
                                             secure_join(rootfs, "/etc/group"))
        except ValueError as e:
            raise RuntimeFailure(str(e)) from None
        user.update(uid=uid, gid=gid)
    if opts.get("additional_gids"):
        user["additionalGids"] = [int(g) for g in opts["additional_gids"]]
    raw["user"] = user
    return spec.parse_process(raw), raw


def cmd_exec(root, opts, pos, log):
    from skiff.runtime import process
    if not pos:
        raise RuntimeFailure('runc: "exec" requires a minimum of 1 argument(s)')
    c = load(root, pos[0])
    st = c.status()
    if st == "stopped":
        raise RuntimeFailure("cannot exec in a stopped container")
    if st == "paused" and not opts.get("ignore_paused"):
        raise RuntimeFailure("cannot exec in a paused container (use --ignore-paused to "
                             "override)")
    proc, raw_proc = _exec_process(c, opts, pos)
    detach = opts.get("detach")
    proxy = None
    sock = None
    if proc.terminal:
        if opts.get("console_socket"):
            sock = _connect_console(opts["console_socket"])
        elif detach:
            raise RuntimeFailure("cannot allocate tty if runc will detach without setting "
                                 "console socket")
        else:
            from skiff.runtime.tty import ConsoleProxy
            proxy = ConsoleProxy()
            sock = proxy.child_sock
    elif opts.get("console_socket"):
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate "
                             "tty")
    if not detach:
        from skiff import sys as k
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    xopts = {"preserve_fds": int(opts.get("preserve_fds") or 0),
             "seccomp": c.data.get("seccomp"),
             "seccomp_cache": os.path.join(root, ".seccomp-cache")}
    if sock is not None:
        xopts["console_fd"] = sock.fileno()
    try:
        prog = process.prepare_seccomp(c.data.get("seccomp"), xopts["seccomp_cache"])
        xopts["raw_process"] = raw_proc
        pid = process.spawn_exec(c.pid, proc, xopts, c.cgroup(), prog)
    finally:
        if sock is not None and proxy is None:
            sock.close()
    if proxy:
        proxy.receive_master()
    if opts.get("pid_file"):
        _write_pid_file(opts["pid_file"], pid)
    if detach:
        return 0
    return wait_foreground(pid, proxy)


# --------------------------------------------------------------------------- pause / resume / ps

def _cgroup_or_fail(c):
    mgr = c.cgroup()
    if mgr is None:
        raise RuntimeFailure("container has no cgroup")
    return mgr


def cmd_pause(root, opts, pos, log):
    c = load(root, _one_id("pause", pos))
    if c.status() != "running":
        raise RuntimeFailure("container not running")
    _cgroup_or_fail(c).freeze()
    return 0


def cmd_resume(root, opts, pos, log):
    c = load(root, _one_id("resume", pos))
    if c.status() != "paused":
        raise RuntimeFailure("container not paused")
    _cgroup_or_fail(c).thaw()
    return 0


def cmd_ps(root, opts, pos, log):
    if not pos:
        raise RuntimeFailure('runc: "ps" requires a minimum of 1 argument(s)')
    c = load(root, pos[0])
    if c.status() == "stopped":
        raise RuntimeFailure("container not running")
    pids = _cgroup_or_fail(c).pids()
    if (opts.get("format") or "table") == "json":
        sys.stdout.write(fastjson.dumps(pids) + "\n")
        return 0
    import subprocess
    psargs = pos[1:] or ["-ef"]
    out = subprocess.run(["ps", *psargs], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeFailure(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise RuntimeFailure("couldn't find PID field in ps output") from None
    print(lines[0])
    want = set(pids)
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in want:
            print(line)
    return 0


def cmd_features(root, opts, pos, log):
    from skiff.runtime.spec import MOUNT_FLAGS, PROPAGATION, HOOK_NAMES
    feats = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.0.2-dev",
             "hooks": list(HOOK_NAMES),
             "mountOptions": sorted(list(MOUNT_FLAGS) + list(PROPAGATION)),
             "linux": {"namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user",
                                      "uts"],
                       "cgroup": {"v1": True, "v2": True},
                       "seccomp": {"enabled": True}}}
    sys.stdout.write(fastjson.dumps(feats, indent=4) + "\n")
    return 0


_UPDATE_FLAGS = {
    "memory": ("memory", "limit"), "memory_reservation": ("memory", "reservation"),
    "memory_swap": ("memory", "swap"), "kernel_memory": ("memory", "kernel"),
    "cpu_shares": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
    "cpu_period": ("cpu", "period"), "cpuset_cpus": ("cpu", "cpus"),
    "cpuset_mems": ("cpu", "mems"), "pids_limit": ("pids", "limit"),
    "blkio_weight": ("blockIO", "weight"),
}


def _size(v):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    v = v.strip().lower().rstrip("b")
    if v and v[-1] in units:
        return int(float(v[:-1]) * units[v[-1]])
    return int(v)


def cmd_update(root, opts, pos, log):
    """`runc update`: new linux.resources from --resources FILE|- or flags."""
    c = load(root, _one_id("update", pos))
    if c.status() == "stopped":
        raise RuntimeFailure("container not running")
    res = {}
    if opts.get("resources"):
        src = opts["resources"]
        text = sys.stdin.read() if src == "-" else open(src).read()
        try:
            res = fastjson.loads(text)
        except ValueError as e:
            raise RuntimeFailure(f"unable to parse resources: {e}") from None
    for key, (section, field) in _UPDATE_FLAGS.items():
        if opts.get(key) is None:
            continue
        v = opts[key]
        if field in ("cpus", "mems"):
            val = v
        elif section == "memory":
            val = -1 if v.strip() == "-1" else _size(v)
        else:
            try:
                val = int(v)
            except ValueError:
                raise RuntimeFailure(f"invalid value for {key.replace('_', '-')}: {v}") from None
        res.setdefault(section, {})[field] = val
    _cgroup_or_fail(c).update(res)
    return 0
