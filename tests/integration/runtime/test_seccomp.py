"""linux.seccomp on every runtime (skiff-runtime, runc, crun): syscalls
denied with EPERM or a chosen errno, argument conditions, unknown names
skipped, and Seccomp: 2 in /proc/self/status."""

from tests.integration.runtime.conftest import edit_config

ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def _bundle(make_bundle, script, seccomp):
    bundle = make_bundle(["sh", "-c", script])

    def put(spec):
        spec["linux"]["seccomp"] = seccomp
    edit_config(bundle, put)
    return bundle


def test_denied_syscalls_fail_with_their_errno(runtime, make_bundle):
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            # errnoRet: ENOSYS (38); an unknown name in the list is skipped
            {"names": ["mkdir", "mkdirat", "skiff_no_such_syscall"],
             "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            # default errno: EPERM
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    script = ("touch /dev/shm/f && echo touch-ok; "
              "mkdir /dev/shm/d 2>&1; "
              "chmod 600 /dev/shm/f 2>&1; "
              "grep '^Seccomp:' /proc/self/status")
    p = _bundle(make_bundle, script, seccomp)
    r = runtime.run(p)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "touch-ok"
    assert "Function not implemented" in lines[1]
    assert "Operation not permitted" in lines[2]
    assert lines[3].split() == ["Seccomp:", "2"]


def test_argument_condition(runtime, make_bundle):
    """openat with O_CREAT (0o100) is denied; plain opens still work."""
    # open(2) has flags in arg 1, openat(2) in arg 2: on x86_64 busybox uses
    # open, so give both their own rule
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [
        {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 2, "value": 0o100, "valueTwo": 0o100, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 0o100, "valueTwo": 0o100, "op": "SCMP_CMP_MASKED_EQ"}]},
    ]}
    script = ("head -n1 /etc/passwd; "
              "touch /dev/shm/new 2>&1; "
              "test -e /dev/shm/new && echo created || echo not-created")
    r = runtime.run(_bundle(make_bundle, script, seccomp))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("root:")
    assert "Permission denied" in lines[1]
    assert lines[2] == "not-created"


def test_default_errno_and_allow_list(runtime, make_bundle):
    """defaultAction ERRNO with defaultErrnoRet; only what is listed runs."""
    r = runtime.run(make_bundle(["sh", "-c", "echo baseline"]))
    assert r.returncode == 0 and r.stdout == "baseline\n"
    # an allow-list profile in the style of Docker's default: deny by default
    # (errno EPERM), allow what busybox (and the runtimes' last steps before
    # execve) need, and leave out mkdir/mkdirat
    allowed = ["read", "write", "close", "fstat", "newfstatat", "stat", "lstat", "statx",
               "mmap", "munmap", "mprotect", "brk", "rt_sigaction", "rt_sigprocmask",
               "rt_sigreturn", "ioctl", "access", "faccessat", "faccessat2", "execve",
               "exit", "exit_group", "arch_prctl", "set_tid_address", "getpid", "getppid",
               "getuid", "geteuid", "getgid", "getegid", "open", "openat", "fcntl",
               "getcwd", "wait4", "clone", "fork", "vfork", "dup2", "dup3", "prlimit64",
               "set_robust_list", "rseq", "futex", "readlink", "readlinkat", "getdents64",
               "lseek", "sigaltstack", "pipe", "pipe2", "getrandom", "setpgid", "getpgrp",
               "fchdir", "chdir", "capget", "capset", "prctl", "setgroups", "setgid",
               "setuid", "getgroups", "nanosleep", "clock_nanosleep", "poll", "ppoll",
               "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_pwait",
               "epoll_wait", "close_range", "write", "writev", "readv", "kill", "tgkill",
               "gettid", "madvise", "sched_getaffinity", "sched_yield", "umask", "fstatfs",
               "statfs", "uname", "getdents", "mknod"]
    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "architectures": ARCHES,
               "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    r = runtime.run(_bundle(make_bundle, "echo still-runs; mkdir /dev/shm/d 2>&1; exit 0", seccomp))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "still-runs"
    assert "Operation not permitted" in out[1], out


def test_docker_default_profile(runtime, make_bundle):
    """The engine's rendering of Docker's default profile (its data): a shell
    works, and creating a user namespace (which needs no capability) is
    refused with EPERM; without the profile the same command succeeds."""
    from skiff.engine import seccomp_default
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
            "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    script = ("echo works; ls / >/dev/null && echo ls-ok; "
              "unshare -U true 2>&1 && echo userns-ok; "
              "grep '^Seccomp:' /proc/self/status")
    r = runtime.run(make_bundle(["sh", "-c", script]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2] == "userns-ok"      # the control
    bundle = _bundle(make_bundle, script, seccomp_default.render(caps))
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:2] == ["works", "ls-ok"]
    assert "Operation not permitted" in out[2], out
    assert out[3].split() == ["Seccomp:", "2"]


def test_filter_without_no_new_privileges(runtime, make_bundle):
    """Without noNewPrivileges the filter is loaded while the runtime still
    holds CAP_SYS_ADMIN (runc's order): it applies, and NoNewPrivs stays 0."""
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    bundle = _bundle(make_bundle, "mkdir /dev/shm/d 2>&1; "
                     "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status", seccomp)

    def no_nnp(spec):
        spec["process"]["noNewPrivileges"] = False
    edit_config(bundle, no_nnp)
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "Operation not permitted" in out[0]
    assert out[1].split() == ["NoNewPrivs:", "0"]
    assert out[2].split() == ["Seccomp:", "2"]
