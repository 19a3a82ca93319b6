"""The first thing skiff-runtime does, before importing anything else.

Moving a process into a cgroup (cgroup.procs) takes a global per-cpu rwsem
for writing; when nothing took it recently the kernel first waits for an
RCU grace period (6-20 ms measured on this VM: the largest single cost of a
create; runc and crun pay it too). Writing "0" (ourselves) into our own
current cgroup moves nothing but takes that lock, so for the commands that
will move a process (create, run, exec) a thread starts the wait at once,
while the interpreter imports the runtime and parses the spec; the real
moves a few ms later then take the lock's fast path. (mkdir in a cgroup
filesystem waits for the same lock holder: the parent makes the
container's cgroup only after forking the init's first stage.)

Best effort: any failure is ignored. posix and _thread only (no os).
The thread's fd is close-on-exec, and every stage that enters a container
closes the fds it does not need first.
"""

import posix

_MOVERS = ("create", "run", "exec")
# global options that take a value (runc's)
_VALUED = ("--root", "--log", "--log-format", "--criu", "--rootless")


def command(argv):
    """The runc command named in argv (argv[0] is the program)."""
    i = 1
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return a
        if a in _VALUED:
            i += 1
        i += 1
    return None


def early(argv):
    if command(argv) in _MOVERS:
        start()


def start():
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    cands = []
    for line in lines:
        hid, _, rest = line.partition(b":")
        ctl, _, path = rest.partition(b":")
        if hid == b"0" and not ctl:
            cands += [b"/sys/fs/cgroup" + path, b"/sys/fs/cgroup/unified" + path]
        elif ctl and b"," not in ctl and b"=" not in ctl:
            cands.append(b"/sys/fs/cgroup/" + ctl + path)
    for c in cands:
        procs = c.rstrip(b"/") + b"/cgroup.procs"
        try:
            posix.stat(procs)
        except OSError:
            continue
        import _thread
        _thread.start_new_thread(_write_zero, (procs,))
        return


def _write_zero(path):
    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, b"0")
        finally:
            posix.close(fd)
    except OSError:
        pass
