"""The verbs on an existing container: start, state, kill and delete.

They run once or twice per container lifetime each and start a Python
interpreter every time, so this module imports ``posix`` and the state file
reader only (not ``os``, not ``select``, nothing of create's): the cli
dispatches them here without importing commands.py (~0.8 ms of start-up).
"""

import posix
import sys

from skiff.runtime.state import RuntimeFailure, load, proc_start_time, read_file, validate_id


def _one_id(cmd, pos, exact=True):
    if not pos or (exact and len(pos) != 1):
        raise RuntimeFailure(f'runc: "{cmd}" requires exactly 1 argument(s)')
    validate_id(pos[0])
    return pos[0]


def _wait_gone(pid, start_time, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) == start_time and start_time is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _rmtree(d):
    """Remove a container's state dir (flat: state.bin, exec.fifo); shutil
    is not imported for that (it pulls in fnmatch and re)."""
    try:
        names = posix.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        p = f"{d}/{n}"
        try:
            posix.unlink(p)
        except IsADirectoryError:
            _rmtree(p)
        except FileNotFoundError:
            pass
    try:
        posix.rmdir(d)
    except OSError:
        pass


def _run_saved_hooks(c, name, status, log):
    """Run the ``name`` hooks the state file kept; a failure is a warning
    (runc's rule for poststart and poststop)."""
    if not c.data.get("hooks", {}).get(name):
        return
    from skiff.runtime import hooks, spec
    hs = [spec.parse_hook(h, f"hooks.{name}[{i}]") for i, h in enumerate(c.data["hooks"][name])]
    try:
        hooks.run_hooks(hs, c.oci_state(status), name)
    except RuntimeFailure as e:
        log.warn(str(e))


def _start(c, log):
    """Release the init waiting in create: open exec.fifo for reading (the
    init's open for writing returns) and read its one byte (runc's barrier).
    The fifo is opened non-blocking, then read blocking: the read returns
    the byte, or end-of-file when no process holds the write end (the init
    died, or has not reached its open yet: then look again)."""
    import time
    st = c.status()
    if st == "stopped":
        raise RuntimeFailure("cannot start a container that has stopped")
    if st != "created":
        raise RuntimeFailure("cannot start an already running container")
    while True:
        try:
            fd = posix.open(c.fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        except FileNotFoundError:  # another start was first
            raise RuntimeFailure("cannot start an already running container") from None
        try:
            posix.set_blocking(fd, True)
            data = posix.read(fd, 1)
        finally:
            posix.close(fd)
        if data:
            break
        if not c.alive():
            raise RuntimeFailure("container init exited before start")
        time.sleep(0.001)
    posix.unlink(c.fifo)
    _run_saved_hooks(c, "poststart", "running", log)


def cmd_start(root, opts, pos, log):
    c = load(root, _one_id("start", pos))
    _start(c, log)
    return 0


def cmd_state(root, opts, pos, log):
    from skiff.runtime import fastjson
    c = load(root, _one_id("state", pos))
    sys.stdout.write(fastjson.dumps(c.runc_state(), indent=2) + "\n")
    return 0


def parse_signal(s):
    import _signal
    if s.isdigit():
        n = int(s)
        if not 0 < n < 65:
            raise RuntimeFailure(f"unknown signal {s!r}")
        return n
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    n = getattr(_signal, name, None)
    if not isinstance(n, int) or name.startswith("SIG_"):
        raise RuntimeFailure(f'unknown signal "{s}"')
    return n


def cmd_kill(root, opts, pos, log):
    if not pos or len(pos) > 2:
        raise RuntimeFailure('runc: "kill" requires a minimum of 1 and a maximum of 2 '
                             'argument(s)')
    c = load(root, pos[0])
    sig = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    st = c.status()
    if st == "stopped":
        raise RuntimeFailure("container not running")
    if opts.get("all") and c.data.get("cgroup"):
        c.cgroup().signal_all(sig)
        return 0
    try:
        posix.kill(c.pid, sig)
    except ProcessLookupError:
        raise RuntimeFailure("container not running") from None
    return 0


def _destroy(c, log, force=False):
    """Stop (SIGKILL) what is left, remove the cgroup and state, then run
    the poststop hooks (runc's destroy)."""
    if c.alive():
        mgr = c.cgroup()
        # with a pid namespace of its own, SIGKILL to the init ends every
        # process of the container; otherwise (runc's signalAllProcesses)
        # each process in its cgroup, which is then the container's only
        # boundary. Never the whole cgroup when the container has its own
        # pid namespace: a cgroupsPath may name a cgroup shared with others.
        if mgr is not None and not _init_of_own_pid_ns(c.pid):
            try:
                mgr.signal_all(9)
            except OSError:
                pass
        try:
            posix.kill(c.pid, 9)
        except OSError:
            pass
        if mgr is not None and c.frozen():
            try:
                mgr.thaw()
            except OSError:
                pass
        _wait_gone(c.pid, c.data.get("start_time"))
    if not c.remove_empty_cgroups():
        mgr = c.cgroup()
        try:
            mgr.destroy()
        except OSError as e:
            log.warn(f"failed to remove cgroup: {e}")
    _rmtree(c.dir)
    _run_saved_hooks(c, "poststop", "stopped", log)


def _init_of_own_pid_ns(pid):
    """Is ``pid`` the init (pid 1) of its own pid namespace?"""
    try:
        for line in read_file(f"/proc/{pid}/status").splitlines():
            if line.startswith(b"NSpid:"):
                return line.split()[-1] == b"1"
    except OSError:
        pass
    return False


def cmd_delete(root, opts, pos, log):
    cid = _one_id("delete", pos)
    try:
        c = load(root, cid)
    except RuntimeFailure:
        if opts.get("force"):
            _rmtree(f"{root}/{cid}")
            return 0
        raise
    st = c.status()
    if st in ("running", "paused") and not opts.get("force"):
        raise RuntimeFailure(f"cannot delete container {cid} that is not stopped: {st}")
    _destroy(c, log, force=True)
    return 0
