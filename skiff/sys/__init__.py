"""The one thin module for kernel calls that the standard library lacks.

Python 3.11 has no os.mount, os.unshare, os.setns or close_range; they are
ctypes wrappers here so the rest of skiff stays plain Python. Every wrapper
raises OSError with the real errno and the path(s) involved.

Import cost matters (skiff-runtime starts per container), so this module
imports only os; the foreign-function layer is loaded at the first kernel
call, so a process that only needs the constants never pays for it, and it
is ``_ffi`` (the few ctypes types used here, on ``_ctypes`` directly: ~1 ms)
rather than the ctypes package (~2.5 ms more).
"""

import os


class _LazyCtypes:
    """Stands in for the globals ``ctypes`` and ``_libc`` until first use,
    then replaces both with the real objects (functions here look them up
    at call time)."""

    def __init__(self, which):
        self._which = which

    def __getattr__(self, name):
        g = globals()
        if isinstance(g["_libc"], _LazyCtypes):
            from skiff.sys import _ffi as real
            g["ctypes"] = real
            g["_libc"] = real.CDLL(None, use_errno=True)
        return getattr(g[self._which], name)


ctypes = _LazyCtypes("ctypes")
_libc = _LazyCtypes("_libc")


def preload():
    """Load the foreign-function layer now (skiff-runtime does it before
    forking: in a forked Python child every step costs about twice as much,
    each page it touches being copied on write)."""
    _libc.prctl  # noqa: B018

# clone / unshare flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "time": CLONE_NEWTIME,
}
# /proc/<pid>/ns/<name> for each OCI namespace type
NAMESPACE_PROC_NAMES = {
    "mount": "mnt", "cgroup": "cgroup", "uts": "uts", "ipc": "ipc",
    "user": "user", "pid": "pid", "network": "net", "time": "time",
}

# mount flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8


def _check(ret: int, *what) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *[str(w) for w in what[:2]])
    return ret


def _b(s):
    if s is None:
        return None
    return os.fsencode(s)


def mount(source, target, fstype=None, flags: int = 0, data=None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           target)


def umount(target, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


SYS_pivot_root = 155  # x86_64
SYS_close_range = 436


def pivot_root(new_root, put_old) -> None:
    _check(_libc.syscall(ctypes.c_long(SYS_pivot_root), _b(new_root), _b(put_old)), new_root)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_libc.syscall(ctypes.c_long(SYS_close_range), ctypes.c_uint(first),
                         ctypes.c_uint(last), ctypes.c_uint(flags)))


PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)))


# openat2(2): path resolution confined to a directory (used by layer apply)
SYS_openat2 = 437  # x86_64 and aarch64 share this number
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


_structs = {}


def _struct(name):
    """The ctypes structures, defined at first use (ctypes is lazy)."""
    if not _structs:
        from skiff.sys import _ffi as c

        class OpenHow(c.Structure):
            _fields_ = [("flags", c.c_uint64), ("mode", c.c_uint64), ("resolve", c.c_uint64)]

        class CapHeader(c.Structure):
            _fields_ = [("version", c.c_uint32), ("pid", c.c_int)]

        class MountAttr(c.Structure):
            _fields_ = [("attr_set", c.c_uint64), ("attr_clr", c.c_uint64),
                        ("propagation", c.c_uint64), ("userns_fd", c.c_uint64)]

        class Rlimit(c.Structure):
            _fields_ = [("cur", c.c_uint64), ("max", c.c_uint64)]

        class CapData(c.Structure):
            _fields_ = [("effective", c.c_uint32), ("permitted", c.c_uint32),
                        ("inheritable", c.c_uint32)]
        _structs.update(OpenHow=OpenHow, CapHeader=CapHeader, CapData=CapData,
                        MountAttr=MountAttr, Rlimit=Rlimit)
    return _structs[name]


SYS_mount_setattr = 442  # x86_64 and aarch64
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


def mount_setattr(path, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    """mount_setattr(2) on the mount at ``path`` (and, recursive, every mount
    below it): the real recursive read-only etc. (kernel >= 5.12; ENOSYS before)."""
    attr = _struct("MountAttr")(attr_set, attr_clr, 0, 0)
    flags = AT_SYMLINK_NOFOLLOW | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(ctypes.c_long(SYS_mount_setattr), ctypes.c_int(-100), _b(path),
                         ctypes.c_uint(flags), ctypes.byref(attr),
                         ctypes.c_size_t(ctypes.sizeof(attr))), path)


def openat2(dirfd: int, path, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(dirfd, path, {flags, mode, resolve}) → fd; OSError on failure
    (ENOSYS on kernels before 5.6)."""
    how = _struct("OpenHow")(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_libc.syscall(ctypes.c_long(SYS_openat2), ctypes.c_int(dirfd), _b(path),
                                ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))), path)


# --- used by skiff-runtime (capabilities, hostname, securebits) -------------

RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit(0, resource, {soft, hard}) for this process (what the
    resource module does, without loading it: one more shared library at
    container start). -1 or RLIM_INFINITY means unlimited."""
    lim = _struct("Rlimit")(soft & RLIM_INFINITY, hard & RLIM_INFINITY)
    _check(_libc.prlimit(ctypes.c_int(0), ctypes.c_int(resource), ctypes.byref(lim), None))

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget(pid: int = 0):
    """→ (effective, permitted, inheritable) as 64-bit masks."""
    hdr = _struct("CapHeader")(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_struct("CapData") * 2)()
    _check(_libc.capget(ctypes.byref(hdr), data))
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _struct("CapHeader")(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_struct("CapData") * 2)()
    for i in (0, 1):
        sh = 32 * i
        data[i].effective = (effective >> sh) & 0xFFFFFFFF
        data[i].permitted = (permitted >> sh) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> sh) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(hdr), data))


PR_CAPBSET_READ = 23
PR_SET_SECUREBITS = 28
PR_GET_SECUREBITS = 27
PR_CAP_AMBIENT_IS_SET = 1


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, ctypes.c_size_t(len(b))), name)


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, ctypes.c_size_t(len(b))), name)


SYS_execveat = 322  # x86_64
AT_EMPTY_PATH = 0x1000


def execveat(fd: int, argv, env) -> None:
    """execveat(fd, "", argv, env, AT_EMPTY_PATH): run the program open as fd
    (a sealed memfd copy, so no host path is ever exec'd). Only returns on error."""
    a = (ctypes.c_char_p * (len(argv) + 1))(*[os.fsencode(x) for x in argv], None)
    e = (ctypes.c_char_p * (len(env) + 1))(*[os.fsencode(x) for x in env], None)
    _check(_libc.syscall(ctypes.c_long(SYS_execveat), ctypes.c_int(fd), b"", a, e,
                         ctypes.c_int(AT_EMPTY_PATH)))


# --- clone3: a fork born in its namespaces and its cgroup -------------------

SYS_clone3 = 435  # x86_64 and aarch64
CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17
_fork_fns = []


def _clone_fns():
    """(BeforeFork, clone3 via syscall, AfterFork_Child, AfterFork_Parent,
    clone_args type): resolved once, before the call that forks, so nothing
    but the system call itself runs between the interpreter's fork hooks."""
    if not _fork_fns:
        from skiff.sys import _ffi as c

        class CloneArgs(c.Structure):
            _fields_ = [(n, c.c_uint64) for n in
                        ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                         "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")]
        py = c.PyDLL(None)
        _fork_fns.extend((py.PyOS_BeforeFork, py.syscall, py.PyOS_AfterFork_Child,
                          py.PyOS_AfterFork_Parent, CloneArgs))
    return _fork_fns


def clone3(flags: int = 0, cgroup_fd: int | None = None) -> int:
    """os.fork() through clone3(2): the child starts in the new namespaces
    named by ``flags`` (CLONE_NEW*: it is pid 1 of a new pid namespace) and,
    given ``cgroup_fd`` (a cgroup v2 directory), inside that cgroup
    (CLONE_INTO_CGROUP, kernel >= 5.7).

    Being born in the cgroup matters: a move later (a write to cgroup.procs)
    takes the kernel's global cgroup_threadgroup_rwsem for writing, and its
    first writer after a quiet spell waits for an RCU grace period (6-20 ms
    on the development VM); a child born there takes only its read side, as
    any fork does.

    The interpreter's fork protocol is kept exactly as os.fork keeps it:
    PyOS_BeforeFork, the system call with the GIL held, then
    PyOS_AfterFork_Child or _Parent. Call it from a single-threaded process
    (a raw clone runs none of glibc's own fork handlers: no other thread may
    hold a libc lock). → the child's pid in the parent, 0 in the child;
    OSError in the parent when the kernel refuses (ENOSYS before 5.3,
    EINVAL for CLONE_INTO_CGROUP before 5.7, EBUSY or EOPNOTSUPP for a
    cgroup a process cannot join, ...)."""
    before, syscall, after_child, after_parent, CloneArgs = _clone_fns()
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    args = CloneArgs(flags, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0,
                     cgroup_fd if cgroup_fd is not None else 0)
    ref = ctypes.byref(args)
    size = ctypes.c_size_t(ctypes.sizeof(args))
    nr = ctypes.c_long(SYS_clone3)
    before()
    pid = syscall(nr, ref, size)
    if pid == 0:
        after_child()
        return 0
    err = ctypes.get_errno()
    after_parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return pid
