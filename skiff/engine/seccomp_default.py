"""Docker's default seccomp policy, written as skiff's own data.

The facts (which syscalls a default container may make, which ones depend
on a capability or on an argument) are those of Docker's default profile;
the layout here is skiff's: a set of unconditional names, then a list of
rules, each with the condition under which it applies. ``render()`` turns
them into the OCI ``linux.seccomp`` object for a given capability set and
architecture, the way dockerd does when it builds a container's spec.
"""

from __future__ import annotations

import os
import platform

EPERM = 1
ENOSYS = 38

# Allowed for every container, whatever its capabilities.
ALWAYS_ALLOWED = frozenset("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod
chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close
close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd
eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown
fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake
futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area
gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc
kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr
lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv
msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv
preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl
semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg
sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups
setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list
setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
waitpid write writev
""".split())

# Allowed when the host kernel is at least this version (the syscall was
# unsafe in a container before it).
MIN_KERNEL_ALLOWED = {
    (4, 8): ("process_vm_readv", "process_vm_writev", "ptrace"),
}

# Architecture-specific syscalls that are always allowed on that arch.
ARCH_ALLOWED = {
    "x86_64": ("arch_prctl", "modify_ldt"),
    "x86": ("modify_ldt",),
    "aarch64": (),
    "arm": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
            "breakpoint", "cacheflush", "set_tls"),
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache",),
}

# A capability in the container's set unlocks these syscalls.
CAP_ALLOWED = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
        "fspick", "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules",
        "lsm_set_self_attr", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare"),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy",
                     "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# personality(2) is allowed only for these personas: PER_LINUX, PER_LINUX32,
# UNAME26, UNAME26|PER_LINUX32 and the query value 0xffffffff.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# socket(2) is allowed for every family except AF_VSOCK.
AF_VSOCK = 40

# clone(2) without CAP_SYS_ADMIN: no namespace flags (CLONE_NEWNS|NEWCGROUP|
# NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
CLONE_NS_MASK = 0x7E020000

# Seccomp architecture names per machine: the native one and its companions.
ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "mips64": ["SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPS"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
}
# Which entries of ARCH_ALLOWED apply on a machine.
_ARCH_GROUPS = {
    "x86_64": ("x86_64", "x86"),
    "aarch64": ("aarch64", "arm"),
    "s390x": ("s390x",),
    "riscv64": ("riscv64",),
    "ppc64le": ("ppc64le",),
    "mips64": (),
}


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    release = release if release is not None else os.uname().release
    parts = []
    for piece in release.split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def _norm_arch(arch: str | None) -> str:
    arch = arch or platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def render(caps, arch: str | None = None, kernel: str | None = None) -> dict:
    """The OCI ``linux.seccomp`` object for a container holding ``caps``
    (names with the CAP_ prefix) on machine ``arch`` (uname -m style)."""
    caps = set(caps)
    arch = _norm_arch(arch)
    kver = _kernel_version(kernel)
    allowed = set(ALWAYS_ALLOWED)
    for minimum, names in MIN_KERNEL_ALLOWED.items():
        if kver >= minimum:
            allowed.update(names)
    for group in _ARCH_GROUPS.get(arch, ()):
        allowed.update(ARCH_ALLOWED[group])
    for cap, names in CAP_ALLOWED.items():
        if cap in caps:
            allowed.update(names)
    allow = "SCMP_ACT_ALLOW"
    rules = [{"names": sorted(allowed), "action": allow}]
    rules.append({"names": ["personality"], "action": allow,
                  "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}
                           for v in PERSONALITY_ALLOWED]})
    rules.append({"names": ["socket"], "action": allow,
                  "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]})
    if "CAP_SYS_ADMIN" not in caps:
        # the flags are the first argument of clone except on s390, where
        # the first two are swapped
        idx = 1 if arch == "s390x" else 0
        rules.append({"names": ["clone"], "action": allow,
                      "args": [{"index": idx, "value": CLONE_NS_MASK, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
        # make libc fall back to clone(2), whose flags can be inspected
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(ARCHES.get(arch, [])),
        "syscalls": rules,
    }


def load_profile(text: str, caps, arch: str | None = None) -> dict:
    """A user-supplied profile (Docker's JSON format, as given with
    ``--security-opt seccomp=<file>``) turned into the OCI object: rules with
    ``includes``/``excludes`` conditions are kept or dropped for ``caps`` and
    ``arch``, ``archMap`` becomes the architecture list."""
    import json

    from skiff import errors

    try:
        prof = json.loads(text)
    except ValueError as e:
        raise errors.InvalidArgument(f"decoding seccomp profile failed: {e}")
    if not isinstance(prof, dict):
        raise errors.InvalidArgument("decoding seccomp profile failed: not an object")
    caps = set(caps)
    arch = _norm_arch(arch)
    scmp_arch = ARCHES.get(arch, [""])[0]
    kver = _kernel_version()
    out = {"defaultAction": prof.get("defaultAction", "SCMP_ACT_ERRNO")}
    if prof.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    arches = list(prof.get("architectures") or [])
    for entry in prof.get("archMap") or []:
        if entry.get("architecture") == scmp_arch:
            arches = [entry["architecture"], *entry.get("subArchitectures", [])]
    if arches:
        out["architectures"] = arches
    if prof.get("flags"):
        out["flags"] = prof["flags"]
    syscalls = []
    for rule in prof.get("syscalls") or []:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("arches") and arch not in _goarch_names(inc["arches"], arch):
            continue
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if inc.get("minKernel") and kver < _kernel_version(inc["minKernel"]):
            continue
        if exc.get("arches") and arch in _goarch_names(exc["arches"], arch):
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        r = {"names": names, "action": rule.get("action", "SCMP_ACT_ALLOW")}
        if rule.get("args"):
            r["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            r["errnoRet"] = rule["errnoRet"]
        syscalls.append(r)
    out["syscalls"] = syscalls
    return out


def _goarch_names(names, arch):
    """Profile arch names are Go's (amd64, arm64, ...); map them to ours."""
    go = {"amd64": "x86_64", "x32": "x86_64", "386": "x86", "arm64": "aarch64",
          "arm": "arm", "s390x": "s390x", "riscv64": "riscv64", "ppc64le": "ppc64le"}
    return {go.get(n, n) for n in names}
