"""runc's process model, in Python.

create (the command's process, "parent")
  ├─ clone3 → the container's init, born in every new namespace (pid 1 of
  │         its pid namespace) and in the cgroup v2 directory; joins the
  │         namespaces named by path and the v1 hierarchies (``tasks``, once
  │         the parent has made them); mounts, devices, pivot_root,
  │         hostname, sysctl, masked/readonly paths, rlimits, console, user,
  │         capabilities, no_new_privs; says "ready"; then blocks opening
  │         exec.fifo for writing.
  │   (a pid or user namespace joined by path, or an old kernel: a first
  │    stage joins/creates the namespaces, then forks the init and exits)
  └─ makes the v1 cgroups, writes the limits and the state file meanwhile;
     runs the create hooks; writes the pid file, exits 0.
start opens exec.fifo for reading: the init's open returns, it loads seccomp
and execs the user's program.

exec clones its process straight into the init's pid namespace (and cgroup);
it setns into the others itself. The two sides talk over pipes, one JSON
message a line. No process ever *moves* into a cgroup (cgroups.join_self
says why).

Safety (CVE-2019-5736 / CVE-2024-21626 classes): every process that enters
the container is non-dumpable (PR_SET_DUMPABLE 0) until execve, so no
process in the container can open its /proc/<pid>/exe, /proc/<pid>/fd,
map_files (the interpreter and its libraries) or cwd; what /proc/<pid>/exe
leads to cannot be written: the runtime's interpreter is on a read-only
mount (exeguard.py), or else the stage that enters the container is
re-exec'd from a sealed memfd copy of it (``sealed_interpreter``); every fd above stdio (and the
preserved ones) is closed right before execve; the cwd is checked to be
inside the container after chdir.
"""

import os

from skiff import sys as k
from skiff.runtime import fastjson
from skiff.runtime.state import RuntimeFailure

_NS_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount", "time")


# --------------------------------------------------------------------------- sync pipes

class Channel:
    """One JSON message per line over a pair of pipes."""

    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self.buf = b""
        self.in_init = True  # False: the other side is an exec's process

    def send(self, **msg):
        data = (fastjson.dumps(msg) + "\n").encode()
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def recv(self):
        """Next message, or None at EOF."""
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return fastjson.loads(line)

    def tell(self, **msg):
        """send(), where the other side may have failed and exited already:
        then raise the error it reported."""
        try:
            self.send(**msg)
        except BrokenPipeError:
            err = self.recv()
            if err is not None and err.get("type") == "error":
                raise init_error(err, self.in_init) from None
            raise RuntimeFailure("container init exited unexpectedly") from None

    def expect(self, typ):
        msg = self.recv()
        if msg is None:
            raise RuntimeFailure("container init exited unexpectedly")
        if msg.get("type") == "error":
            raise init_error(msg, self.in_init)
        if msg.get("type") != typ:
            raise RuntimeFailure(f"unexpected message from init: {msg}")
        return msg

    def close(self):
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def init_error(msg, in_init=True):
    """The failure a stage reported, in runc's words: "unable to start
    container process: " + (in a container's init, for anything but the
    executable lookup) "error during container init: " + what failed."""
    text = msg["msg"]
    if msg.get("cgroup"):
        return RuntimeFailure("unable to start container process: "
                              "unable to apply cgroup configuration: " + text)
    if in_init and not msg.get("exec"):
        text = "error during container init: " + text
    return RuntimeFailure("unable to start container process: " + text)


def channel_pair():
    """→ (parent side, child side)"""
    c2p_r, c2p_w = os.pipe()
    p2c_r, p2c_w = os.pipe()
    return Channel(c2p_r, p2c_w), Channel(p2c_r, c2p_w)


def _child(ch, fn, *args):
    """Run fn in a forked child; report an exception to the parent; never return."""
    code = 1
    try:
        fn(ch, *args)
        code = 0
    except BaseException as e:  # noqa: BLE001 — the child must never return
        try:
            msg = _describe(e)
            if os.environ.get("SKIFF_RUNTIME_TRACEBACK"):
                import traceback
                msg += "\n" + traceback.format_exc()
            ch.send(type="error", msg=msg, exec=isinstance(e, ExecFailure))
        except BaseException:
            try:  # the parent is gone (after start): say it on stderr
                os.write(2, f"skiff-runtime: {msg}\n".encode())
            except BaseException:
                pass
    finally:
        os._exit(code)


def _describe(e):
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e) or type(e).__name__


# --------------------------------------------------------------------------- namespaces

def _id_map_text(maps):
    return "".join(f"{c} {h} {n}\n" for c, h, n in maps)


def write_id_maps(pid, uid_maps, gid_maps):
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(_id_map_text(uid_maps))
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(_id_map_text(gid_maps))


def _join_namespaces(join_paths):
    """setns into each namespace named by path, in _NS_ORDER (user first)."""
    fds = []
    for t in _NS_ORDER:
        p = join_paths.get(t)
        if p:
            try:
                fds.append((t, os.open(p, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise RuntimeFailure(f"failed to open namespace {t} {p}: {e.strerror}") from None
    for t, fd in fds:
        try:
            k.setns(fd, k.NAMESPACE_FLAGS[t])
        except OSError as e:
            raise RuntimeFailure(f"failed to join namespace {t}: {e.strerror}") from None
        os.close(fd)


def _stage1(ch, cfg, join_paths, prog, opts=None):
    """In the first child: enter or create namespaces (a new cgroup namespace
    is left to the init: it must be made once the init is in its cgroup),
    fork the init."""
    k.prctl(k.PR_SET_DUMPABLE, 0)
    _join_namespaces(join_paths)
    new = [t for t, p in cfg.namespaces if not p]
    if "user" in new:
        k.unshare(k.CLONE_NEWUSER)
        ch.send(type="userns")
        ch.expect("mapped")
        k.prctl(k.PR_SET_DUMPABLE, 0)
    if cfg.has_ns("user"):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    for t in new:
        if t not in ("user", "cgroup"):
            flags |= k.NAMESPACE_FLAGS[t]
    if flags:
        k.unshare(flags)
    pid = os.fork()
    if pid == 0:
        _child(ch, _stage2, cfg, prog, opts)
    ch.send(type="pid", pid=pid)


def direct_flags(cfg):
    """The CLONE_NEW* flags of one clone3 that makes the init itself, born in
    every new namespace (no first stage that unshares and forks again, as
    crun does), or None when the spec needs the two stages: a pid or time
    namespace joined by path (they take effect for children only), a user
    namespace joined, or a new user namespace beside a namespace joined by
    path (that join must come first, as host root). A new cgroup namespace
    is left to the init (it is made once the init is in its cgroup)."""
    join = {t for t, p in cfg.namespaces if p}
    new = [t for t, p in cfg.namespaces if not p]
    if join & {"pid", "time", "user"} or ("user" in new and join):
        return None
    flags = 0
    for t in new:
        if t != "cgroup":
            flags |= k.NAMESPACE_FLAGS[t]
    return flags


def _init_direct(ch, cfg, join_paths, prog, opts):
    """The init born by one clone3 in its new namespaces: wait for the id
    mappings of a new user namespace (the parent writes them), join the
    namespaces named by path, then be the init."""
    k.prctl(k.PR_SET_DUMPABLE, 0)
    if ("user", None) in cfg.namespaces:
        ch.expect("mapped")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    _join_namespaces(join_paths)
    _stage2(ch, cfg, prog, opts)


# --------------------------------------------------------------------------- the init

def _preimport(proc):
    """Everything the init needs after pivot_root must be imported before:
    the host's files (interpreter library, skiff) are out of reach then."""
    import _signal  # noqa: F401
    from skiff.runtime import caps, hooks, rootfs, user  # noqa: F401
    if proc.terminal:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401


def _stage2(ch, cfg, prog, opts=None):
    from skiff.runtime import rootfs
    _preimport(cfg.process)
    os.setsid()
    k.prctl(k.PR_SET_DUMPABLE, 0)
    if opts is None:  # after a sealed re-exec: sent by the parent
        opts = ch.expect("config")
    in_userns = cfg.has_ns("user")
    root = cfg.root_path
    if not cfg.has_ns("mount"):
        raise RuntimeFailure("a mount namespace is required")
    # the parent moves us into the container's cgroup meanwhile (the first
    # move into a cgroup waits for an RCU grace period: milliseconds, so the
    # mounts that do not depend on it go first)
    in_cgroup = False
    new_cgroupns = ("cgroup", None) in cfg.namespaces
    rootfs.prepare_root(root, cfg.rootfs_propagation)
    cgroupns = cfg.has_ns("cgroup")
    for m in cfg.mounts:
        if not in_cgroup and m.type in ("cgroup", "cgroup2"):
            _join_cgroup(ch, new_cgroupns, opts.get("v1_tasks"))
            in_cgroup = True
        try:
            rootfs.mount_one(root, m, cgroupns)
        except OSError as e:
            raise RuntimeFailure(f"error mounting {m.source!r} to rootfs at "
                                 f"{m.destination!r}: {_describe(e)}") from None
    if not in_cgroup:
        _join_cgroup(ch, new_cgroupns, opts.get("v1_tasks"))
    rootfs.setup_dev(root, cfg, in_userns)
    if cfg.hostname:
        k.sethostname(cfg.hostname)
    if cfg.domainname:
        k.setdomainname(cfg.domainname)
    ch.send(type="hooks")
    my_pid = ch.expect("hooks-done")["pid"]
    fifo = opts["fifo_fd"]  # opened by the runtime (host root) before the fork
    rootfs.pivot(root, opts.get("no_pivot", False))
    if cfg.sysctl:
        rootfs.write_sysctl(cfg.sysctl)
    for p in cfg.readonly_paths:
        rootfs.readonly_path(p)
    for p in cfg.masked_paths:
        rootfs.mask_path(p)
    if cfg.root_readonly:
        rootfs.readonly_root()
    exe, env = _finalize_process(cfg.process, opts, console_fd=opts.get("console_fd"),
                                 prog=prog)
    # the console socket (if any) is done: keep only the fifo handle
    ch.send(type="ready")
    ch.close()
    # block until `start` opens the fifo for reading (runc's exec.fifo barrier)
    wfd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(wfd, b"0")
    os.close(wfd)
    os.close(fifo)
    if cfg.hooks.get("startContainer"):
        from skiff.runtime import hooks
        st = dict(opts["state"], status="created", pid=my_pid)
        hooks.run_in_container(cfg.hooks["startContainer"], st)
    _exec(exe, cfg.process.args, env, prog, cfg.process.no_new_privileges,
          opts.get("preserve_fds", 0))


def _join_cgroup(ch, new_cgroupns, v1_tasks):
    """Wait until the parent has put us into the container's cgroup (or, with
    ``v1_tasks``, has made its v1 directories: then join them ourselves,
    cgroups.join_self), then make the new cgroup namespace (rooted there)."""
    ch.expect("cgroup")
    if v1_tasks:
        from skiff.runtime.cgroups import join_self
        fds = []
        try:
            for path in v1_tasks:
                fds.append((os.open(path, os.O_WRONLY | os.O_CLOEXEC), path))
            join_self(fds)
        except OSError as e:
            raise RuntimeFailure(f"unable to apply cgroup configuration: {e.strerror}: "
                                 f"{e.filename}") from None
        finally:
            for fd, _ in fds:
                os.close(fd)
    if new_cgroupns:
        k.unshare(k.CLONE_NEWCGROUP)


def prepare_seccomp(section, cache_dir):
    """Compile linux.seccomp in the runtime process, before any fork: the
    children inherit the program (they cannot import anything once inside)."""
    if not section:
        return None
    from skiff.runtime import seccomp
    return seccomp.prepare(section, cache_dir)


def _finalize_process(proc, opts, console_fd=None, prog=None):
    """Everything between the rootfs and execve that needs no more host
    access: rlimits, oom score, console, cwd, user, capabilities, env.
    Returns (resolved executable, env list)."""
    from skiff.runtime import caps, user
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    for r, soft, hard in proc.rlimits:
        try:
            k.setrlimit(r, soft, hard)
        except OSError as e:
            raise RuntimeFailure(f"error setting rlimit type {r}: "
                                 f"{(e.strerror or str(e)).lower()}") from None
    if proc.terminal:
        if console_fd is None:
            raise RuntimeFailure("cannot allocate tty if runc will detach without setting "
                                 "console socket")
        _setup_console(console_fd, proc.console_size)
    elif console_fd is not None:
        os.close(console_fd)
    u = proc.user
    ent = user.passwd_by_uid(u.uid)
    env = _make_env(proc.env, ent)
    try:
        os.chdir(proc.cwd)
        chdir_late = False
    except PermissionError:
        chdir_late = True  # retry after switching user (runc does the same)
    except OSError as e:
        raise RuntimeFailure(f'chdir to cwd ("{proc.cwd}") set in config.json failed: '
                             f"{e.strerror.lower()}") from None
    if prog is not None and not proc.no_new_privileges:
        # without no_new_privs the kernel wants CAP_SYS_ADMIN: load it while
        # we still have it (runc does the same)
        prog.load()
    caps.drop_bounding(proc.caps["bounding"])
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    os.setgroups(u.additional_gids)
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)
    k.prctl(k.PR_SET_KEEPCAPS, 0)
    k.prctl(k.PR_SET_DUMPABLE, 0)  # a credential change may have reset it
    caps.apply(proc.caps)
    if chdir_late:
        try:
            os.chdir(proc.cwd)
        except OSError as e:
            raise RuntimeFailure(f'chdir to cwd ("{proc.cwd}") set in config.json failed: '
                                 f"{e.strerror.lower()}") from None
    verify_cwd()
    os.umask(u.umask if u.umask is not None else 0o022)
    return lookpath(proc.args[0], env), env


def verify_cwd():
    """CVE-2024-21626: a cwd reached through a leaked host fd shows as
    "(unreachable)..." or fails; refuse to run there."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        raise RuntimeFailure("current working directory is outside of container mount "
                             "namespace root -- possible container breakout detected") from None
    if not cwd.startswith("/"):
        raise RuntimeFailure("current working directory is outside of container mount "
                             "namespace root -- possible container breakout detected")


def _make_env(env_list, ent):
    env = list(env_list)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + (ent["home"] if ent else "/"))
    return env


def _executable(path):
    """Go's exec.findExecutable: a non-directory with an execute bit.
    → None, or the error (OSError from stat, or "permission denied")."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"stat {path}: {(e.strerror or str(e)).lower()}"
    if (st.st_mode & 0o170000) == 0o040000 or not st.st_mode & 0o111:
        return "permission denied"
    return None


def lookpath(name, env):
    """runc's init: exec.LookPath(args[0]) with the container's PATH, then an
    access(X_OK) check (a noexec mount), all before create reports success,
    so a bad entrypoint fails ``create`` (or ``exec``) with runc's words."""
    if "/" in name:
        err = _executable(name)
        if err is not None:
            raise ExecFailure(f'exec: "{name}": {err}')
        found = name
    else:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for e in env:
            if e.startswith("PATH="):
                path = e[5:]
        found = None
        for d in path.split(":"):
            cand = os.path.join(d or ".", name)
            if _executable(cand) is None:
                found = cand
                break
        if found is None:
            raise ExecFailure(f'exec: "{name}": executable file not found in $PATH')
    if not os.access(found, os.X_OK, effective_ids=True):
        raise ExecFailure(f"exec {found}: permission denied")
    return found


class ExecFailure(RuntimeFailure):
    """The process's executable cannot be run (runc reports it without
    "error during container init")."""


def _setup_console(sock_fd, size):
    """Make a pty inside the container, send its master to the console
    socket (SCM_RIGHTS, as runc), make the slave our stdio and controlling tty."""
    import fcntl
    import socket
    import struct
    import termios
    master, slave = os.openpty()
    name = os.ttyname(slave)
    if size and size[0] and size[1]:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [name.encode()], [master])
    finally:
        s.close()
    os.close(master)
    try:
        if os.path.exists("/dev/console") or True:
            _bind_console(name)
    except OSError:
        pass
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _bind_console(pts):
    if not os.path.exists("/dev/console"):
        fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        os.close(fd)
    k.mount(pts, "/dev/console", None, k.MS_BIND)


def _exec(exe, args, env, prog, nnp, preserve_fds):
    import _signal
    if nnp:
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve
    for s in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM):
        _signal.signal(s, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    if prog is not None and nnp:
        prog.load()  # the last thing before execve
    envd = {}
    for e in env:
        key, _, val = e.partition("=")
        envd[key] = val
    k.close_range(3 + preserve_fds)
    os.execve(exe, args, envd)


# --------------------------------------------------------------------------- create

# True when the runtime runs from a read-only interpreter (exeguard.py): the
# in-container stages are plain forks. False: each is re-exec'd from a sealed
# memfd copy first. The command line sets it (exeguard.protected()).
DIRECT = False


def sealed_interpreter():
    """A sealed memfd copy of the interpreter (runc's exeseal, CVE-2019-5736):
    the stage that lives inside the container is exec'd from it, so its
    /proc/<pid>/exe is this copy — write-sealed — never the host's python.
    → fd (close-on-exec), or None if memfd sealing is unavailable."""
    import fcntl
    import sys
    try:
        src = os.open(os.path.realpath(sys.executable), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.memfd_create("skiff-runtime", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        size = os.fstat(src).st_size
        off = 0
        while off < size:
            n = os.sendfile(fd, src, off, size - off)
            if n == 0:
                break
            off += n
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK |
                    fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        return fd
    except OSError:
        return None
    finally:
        os.close(src)


def _enter_sealed(ch, kind):
    """In the freshly forked in-container stage: make the sealed interpreter
    copy (here, not in the parent, so the copy overlaps the parent's cgroup
    writes) and re-exec from it (never returns), or — without one — go on
    in place."""
    sealed_fd = sealed_interpreter()
    if sealed_fd is None:
        _child(ch, _stage_from_msg, kind)
    import sys
    # sys.path goes through the environment (popped at once), not the
    # world-readable command line
    code = ("import os, sys; sys.path[:0] = os.environ.pop('SKIFF_RUNTIME_SYSPATH')"
            ".split(os.pathsep); from skiff.runtime.process import reexec_main; reexec_main()")
    env = dict(os.environ, SKIFF_RUNTIME_SYSPATH=os.pathsep.join(sys.path))
    try:
        os.set_inheritable(ch.rfd, True)
        os.set_inheritable(ch.wfd, True)
        # fexecve (execveat(fd, "", AT_EMPTY_PATH)): no ctypes before the re-exec
        os.execve(sealed_fd, ["skiff-runtime-" + kind, "-IS", "-c", code, kind,
                              str(ch.rfd), str(ch.wfd)], env)
    except BaseException as e:  # noqa: BLE001
        try:
            ch.send(type="error", msg=f"exec of the sealed runtime copy failed: {_describe(e)}")
        finally:
            os._exit(1)


def reexec_main():
    """Entry point of the in-container stage after the sealed re-exec."""
    import sys
    kind, rfd, wfd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for fd in (rfd, wfd):
        os.set_inheritable(fd, False)
    _child(Channel(rfd, wfd), _stage_from_msg, kind)


def _stage_from_msg(ch, kind):
    """The first child, right after its sealed re-exec: read the spec, then
    do stage 1 (its fork, the in-container stage, is sealed too)."""
    k.prctl(k.PR_SET_DUMPABLE, 0)
    msg = ch.expect("sealed")
    from skiff.runtime import spec
    if kind == "init":
        cfg = spec.parse_config(msg["raw"], msg["bundle"])
        prog = prepare_seccomp(cfg.seccomp, msg.get("seccomp_cache"))
        _stage1(ch, cfg, {t: p for t, p in cfg.namespaces if p}, prog)
    else:
        proc = spec.parse_process(msg["process"])
        prog = prepare_seccomp(msg.get("seccomp"), msg.get("seccomp_cache"))
        _exec_stage1(ch, msg["init_pid"], proc, prog, msg.get("join_mount"))


def _exec_stage2_join(ch, init_pid, proc, prog, join_mount):
    # the mount namespace last: after it nothing can be loaded from the host
    if join_mount:
        fd = os.open(f"/proc/{init_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        k.setns(fd, k.CLONE_NEWNS)  # root and cwd become the container's
        os.close(fd)
    _exec_stage2(ch, proc, prog)


def cloexec_from(first):
    """Mark every fd >= first close-on-exec (runc's CloseExecFrom): whatever
    the caller left open never survives the sealed re-exec into the container."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def _init_config(opts):
    """What the init needs from create's options (JSON-able: it is a
    message after a sealed re-exec)."""
    return {k: v for k, v in opts.items() if k != "console_sock_obj"}


def close_fds_except(first, keep):
    """Close every fd >= first not in keep: in a forked stage, what the
    caller left open must not be held by a process inside the container
    (the sealed re-exec gets this from close-on-exec)."""
    keep = {fd for fd in keep if fd is not None}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _abort(stage1, stage2):
    """A failed spawn: SIGKILL both stages (either may be None), reap the first
    (the second is the first's child)."""
    for p in (stage1, stage2):
        if p:
            try:
                os.kill(p, 9)
            except OSError:
                pass
    if stage1:
        try:
            os.waitpid(stage1, 0)
        except OSError:
            pass


def _cgroup_entry(cgroup_mgr, v1=True):
    """→ (an fd on the cgroup v2 directory to be born in, or None; the v1
    ``tasks`` files open for writing, as (fd, path)): opened here, as host
    root, so the child can write through them even from a new user
    namespace (the kernel checks the opener's credentials)."""
    if cgroup_mgr is None:
        return None, []
    v2dir, tasks = cgroup_mgr.entry(v1)
    fds = []
    try:
        for path in tasks:
            fds.append((os.open(path, os.O_WRONLY | os.O_CLOEXEC), path))
        v2fd = os.open(v2dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if v2dir else None
    except OSError as e:
        _close_entry(None, fds)
        raise RuntimeFailure("unable to start container process: unable to apply cgroup "
                             f"configuration: {e.filename}: {e.strerror}") from None
    return v2fd, fds


def _close_entry(v2fd, task_fds):
    for fd in ([v2fd] if v2fd is not None else []) + [fd for fd, _ in task_fds]:
        try:
            os.close(fd)
        except OSError:
            pass


def _fork_first(v2fd):
    """Fork the first stage born in the cgroup v2 directory (clone3), or,
    where the kernel refuses that, a plain fork. → (pid, True when the
    parent must still move the process into the v2 directory)."""
    if v2fd is not None:
        try:
            return k.clone3(0, v2fd), False
        except OSError:
            pass  # ENOSYS / EINVAL (< 5.7) ...: moved by the parent (cgroup.procs)
    return os.fork(), v2fd is not None


def _fork_failed(parent, child, v2fd, task_fds):
    """No stage was made: close what was opened for it."""
    parent.close()
    child.close()
    _close_entry(v2fd, task_fds)


def _child_begins(parent, child, v2fd, task_fds):
    """The first acts of a freshly cloned stage: drop the cgroup v2 directory
    fd (a host directory: never held a moment longer) and the parent's ends
    of the channel, then join the v1 hierarchies."""
    _close_entry(v2fd, [])
    parent.close()
    _enter_cgroups(child, task_fds)


def _enter_cgroups(ch, task_fds):
    """In a freshly forked stage (single-threaded), before anything else:
    join the v1 hierarchies (cgroups.join_self), then close those fds."""
    if not task_fds:
        return
    from skiff.runtime.cgroups import join_self
    try:
        join_self(task_fds)
    except OSError as e:
        try:
            ch.send(type="error", msg=str(e.strerror), cgroup=True)
        finally:
            os._exit(1)
    _close_entry(None, task_fds)


def spawn_init(cfg, cid, opts, cgroup_mgr, on_hooks, prog=None, on_started=None):
    """Start the init of a new container; returns its host pid once it waits
    on exec.fifo. ``on_hooks(pid)`` runs the create-time hooks;
    ``on_started(pid)`` is called as soon as the init is in its cgroup, while
    it mounts its filesystems."""
    join = {t: p for t, p in cfg.namespaces if p}
    cloexec_from(3 + opts.get("preserve_fds", 0))
    for key in ("fifo_fd", "console_fd"):
        if opts.get(key) is not None:
            os.set_inheritable(opts[key], True)
    if DIRECT:
        # import here what the children need: after the fork each page
        # touched is copied first, so every import there costs twice as much
        k.preload()
        _preimport(cfg.process)
    flags = direct_flags(cfg) if DIRECT else None
    # The init born by one clone3, as host root (no new user namespace), joins
    # the v1 hierarchies itself once the parent, meanwhile, has made them
    # (it mounts its filesystems first): only the v2 directory, where it is
    # born, must exist before the clone.
    v1_late = (flags is not None and cgroup_mgr is not None and
               not flags & k.CLONE_NEWUSER)
    if cgroup_mgr is not None:
        cgroup_mgr.prepare(v2_only=v1_late)  # what must exist before the fork
        from skiff.runtime.cgroups import join_self  # noqa: F401 (imported before forking)
    v2fd, task_fds = _cgroup_entry(cgroup_mgr, v1=not v1_late)
    init_opts = _init_config(opts)
    if v1_late:
        init_opts["v1_tasks"] = cgroup_mgr.entry()[1]
    # non-dumpable before any fork: the children inherit it, so not even for
    # an instant can a container process open their /proc/<pid>/fd, cwd, exe
    k.prctl(k.PR_SET_DUMPABLE, 0)
    parent, child = channel_pair()
    pid1 = init_pid = None
    late = False
    try:
        if flags is not None:
            try:
                init_pid = k.clone3(flags, v2fd)
            except OSError:
                flags = None  # an older kernel: two stages, every cgroup first
                if v1_late:
                    v1_late = False
                    init_opts.pop("v1_tasks")
                    cgroup_mgr.prepare()
                    again, task_fds = _cgroup_entry(cgroup_mgr)
                    _close_entry(again, [])
        if flags is None:
            pid1, late = _fork_first(v2fd)
    except BaseException:
        _fork_failed(parent, child, v2fd, task_fds)
        raise
    if pid1 == 0 or init_pid == 0:
        _child_begins(parent, child, v2fd, task_fds)
        if DIRECT:
            close_fds_except(3 + opts.get("preserve_fds", 0),
                             (child.rfd, child.wfd, opts.get("fifo_fd"), opts.get("console_fd")))
            if flags is not None:
                _child(child, _init_direct, cfg, join, prog, init_opts)
            _child(child, _stage1, cfg, join, prog, init_opts)
        _enter_sealed(child, "init")
    child.close()
    _close_entry(v2fd, task_fds)
    console_fd = opts.pop("console_sock_obj", None)
    try:
        if not DIRECT:
            # the child re-execs itself meanwhile: its interpreter starts
            # while we write the cgroup files
            parent.send(type="sealed", raw=cfg.raw, bundle=cfg.bundle,
                        seccomp_cache=opts.get("seccomp_cache"))
        if flags is not None and ("user", None) in cfg.namespaces:
            write_id_maps(init_pid, cfg.uid_mappings, cfg.gid_mappings)
            parent.tell(type="mapped")
        if cgroup_mgr is not None:
            if v1_late:
                cgroup_mgr.prepare()  # the v1 directories, while the init mounts
            cgroup_mgr.apply_limits()
        if flags is None:
            msg = parent.recv()
            if msg and msg.get("type") == "userns":
                write_id_maps(pid1, cfg.uid_mappings, cfg.gid_mappings)
                parent.tell(type="mapped")
                msg = parent.recv()
            if msg is None:
                raise RuntimeFailure("container init exited unexpectedly")
            if msg.get("type") == "error":
                raise init_error(msg)
            init_pid = msg["pid"]
        if not DIRECT:
            parent.tell(type="config", **init_opts)
        # the init mounts its filesystems meanwhile; it waits for this
        # message before its first cgroup mount (the limits are written)
        if late:
            cgroup_mgr.add(init_pid, v2_only=True)
        parent.tell(type="cgroup")
        if pid1 is not None:
            os.waitpid(pid1, 0)
            pid1 = None
        if on_started is not None:
            on_started(init_pid)
        parent.expect("hooks")
        on_hooks(init_pid)
        parent.tell(type="hooks-done", pid=init_pid)
        parent.expect("ready")
        return init_pid
    except BaseException:
        if flags is not None:
            _abort(init_pid, None)  # our own child: killed and reaped
        else:
            _abort(pid1, init_pid)
        raise
    finally:
        parent.close()
        if console_fd is not None:
            console_fd.close()


# --------------------------------------------------------------------------- exec

def _ns_differs(pid, t):
    name = k.NAMESPACE_PROC_NAMES[t]
    try:
        a = os.stat(f"/proc/{pid}/ns/{name}")
        b = os.stat(f"/proc/self/ns/{name}")
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)


def _exec_join(init_pid, skip):
    """setns into each namespace of the init that differs from ours, in
    _NS_ORDER, but those in ``skip`` (the mount namespace is joined last, by
    the stage that stays: after it nothing can be loaded from the host)."""
    fds = []
    for t in _NS_ORDER:
        if t not in skip and _ns_differs(init_pid, t):
            fds.append((t, os.open(f"/proc/{init_pid}/ns/{k.NAMESPACE_PROC_NAMES[t]}",
                                   os.O_RDONLY | os.O_CLOEXEC)))
    for t, fd in fds:
        k.setns(fd, k.NAMESPACE_FLAGS[t])
        os.close(fd)
    if any(t == "user" for t, _ in fds):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


def _exec_stage1(ch, init_pid, proc, prog, join_mount):
    k.prctl(k.PR_SET_DUMPABLE, 0)
    _preimport(proc)
    _exec_join(init_pid, ("mount",))
    pid = os.fork()
    if pid == 0:
        _child(ch, _exec_stage2_join, init_pid, proc, prog, join_mount)
    ch.send(type="pid", pid=pid)


def _exec_direct(ch, init_pid, proc, prog, join_mount):
    """An exec's process born by one clone3 in the init's pid namespace (the
    parent set it for its children): join the rest, then be the process."""
    k.prctl(k.PR_SET_DUMPABLE, 0)
    _exec_join(init_pid, ("mount", "pid"))
    _exec_stage2_join(ch, init_pid, proc, prog, join_mount)


def _clone_in_pid_ns(init_pid, v2fd):
    """clone3 a child into the init's pid namespace and cgroup: setns(pid)
    here sets only where our *children* go (pid_for_children), and is undone
    at once. → the child's pid (0 in the child); OSError when the kernel
    refuses (then two stages)."""
    if not _ns_differs(init_pid, "pid"):
        return k.clone3(0, v2fd)
    mine = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(f"/proc/{init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.setns(theirs, k.CLONE_NEWPID)
        finally:
            os.close(theirs)
        pid = None
        try:
            pid = k.clone3(0, v2fd)
        finally:
            if pid != 0:  # the parent, or a refused clone
                k.setns(mine, k.CLONE_NEWPID)
        return pid
    finally:
        os.close(mine)


def _exec_stage2(ch, proc, prog):
    k.prctl(k.PR_SET_DUMPABLE, 0)
    opts = ch.expect("config")
    if proc.terminal:
        os.setsid()
    exe, env = _finalize_process(proc, opts, console_fd=opts.get("console_fd"), prog=prog)
    ch.expect("cgroup")  # the parent has moved us into the container's cgroup
    # tell the parent we are about to exec; our write end is close-on-exec
    ch.send(type="exec")
    _exec(exe, proc.args, env, prog, proc.no_new_privileges, opts.get("preserve_fds", 0))


def spawn_exec(init_pid, proc, opts, cgroup_mgr, prog=None):
    """Start ``proc`` inside the running container; → its host pid. (In a
    paused container, exec --ignore-paused: the first stage is frozen as it
    enters, and the exec goes on once the container is resumed, as runc's.)"""
    cloexec_from(3 + opts.get("preserve_fds", 0))
    if opts.get("console_fd") is not None:
        os.set_inheritable(opts["console_fd"], True)
    join_mount = _ns_differs(init_pid, "mount")
    raw_process = opts.pop("raw_process")
    if DIRECT:
        k.preload()  # see spawn_init
        _preimport(proc)
    if cgroup_mgr is not None:
        from skiff.runtime.cgroups import join_self  # noqa: F401 (imported before forking)
    v2fd, task_fds = _cgroup_entry(cgroup_mgr)
    # non-dumpable before the fork (see spawn_init): the child may be born
    # straight into the container's pid namespace
    k.prctl(k.PR_SET_DUMPABLE, 0)
    parent, child = channel_pair()
    parent.in_init = False
    # one clone3 straight into the init's pid namespace, unless the init has a
    # time namespace of its own (that one, too, applies to children only)
    direct = DIRECT and not _ns_differs(init_pid, "time")
    pid1 = pid2 = None
    late = False
    try:
        if direct:
            try:
                pid2 = _clone_in_pid_ns(init_pid, v2fd)
            except OSError:
                direct = False
        if not direct:
            pid1, late = _fork_first(v2fd)
    except BaseException:
        _fork_failed(parent, child, v2fd, task_fds)
        raise
    if pid1 == 0 or pid2 == 0:
        _child_begins(parent, child, v2fd, task_fds)
        if DIRECT:
            close_fds_except(3 + opts.get("preserve_fds", 0),
                             (child.rfd, child.wfd, opts.get("console_fd")))
            if direct:
                _child(child, _exec_direct, init_pid, proc, prog, join_mount)
            _child(child, _exec_stage1, init_pid, proc, prog, join_mount)
        _enter_sealed(child, "exec")
    child.close()
    _close_entry(v2fd, task_fds)
    try:
        if not DIRECT:
            parent.send(type="sealed", process=raw_process,
                        seccomp=opts.get("seccomp"), seccomp_cache=opts.get("seccomp_cache"),
                        init_pid=init_pid, join_mount=join_mount)
        if not direct:
            pid2 = parent.expect("pid")["pid"]
        parent.tell(type="config", **opts)
        # the process sets itself up meanwhile (user, capabilities, ...)
        if late:
            try:
                cgroup_mgr.add(pid2, v2_only=True)
            except OSError:
                pass
        parent.tell(type="cgroup")
        if pid1 is not None:
            os.waitpid(pid1, 0)
            pid1 = None
        parent.expect("exec")
        # EOF (the write end closed on execve) = success; a message = failure
        msg = parent.recv()
        if msg is not None and msg.get("type") == "error":
            raise init_error(msg, in_init=False)
        return pid2
    except BaseException:
        if direct:
            _abort(pid2, None)  # our own child: killed and reaped
        else:
            _abort(pid1, pid2)
        raise
    finally:
        parent.close()
