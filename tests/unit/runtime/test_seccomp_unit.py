"""seccomp without root: action/flag mapping, validation, and a compiled
filter loaded for real in a forked child (no_new_privs makes that
unprivileged)."""

import ctypes
import errno
import os
import sys

import pytest

from skiff.errors import InvalidArgument
from skiff.runtime import seccomp

PR_SET_NO_NEW_PRIVS = 38


def test_actions():
    assert seccomp.action("SCMP_ACT_ALLOW") == 0x7FFF0000
    assert seccomp.action("SCMP_ACT_ERRNO") == 0x00050000 | errno.EPERM
    assert seccomp.action("SCMP_ACT_ERRNO", 38) == 0x00050000 | 38
    assert seccomp.action("SCMP_ACT_TRACE") == 0x7FF00000 | errno.EPERM
    assert seccomp.action("SCMP_ACT_KILL") == seccomp.action("SCMP_ACT_KILL_THREAD") == 0
    assert seccomp.action("SCMP_ACT_KILL_PROCESS") == 0x80000000


@pytest.mark.parametrize("section,msg", [
    ({"syscalls": []}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "invalid seccomp action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "architecture"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "flags"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "argument index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}, "operator"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}, "NOTIFY"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]}, "errnoRet"),
])
def test_bad_sections_are_refused(section, msg):
    with pytest.raises(InvalidArgument, match=msg):
        seccomp.prepare(section)


def test_flags():
    assert seccomp.filter_flags({"flags": ["SECCOMP_FILTER_FLAG_TSYNC",
                                           "SECCOMP_FILTER_FLAG_LOG"]}) == 3


def test_same_index_conditions_become_separate_rules():
    sec = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 3, "op": "SCMP_CMP_EQ"}]}]}
    rules = list(seccomp._rules(sec, seccomp.action("SCMP_ACT_ERRNO")))
    assert len(rules) == 3
    assert rules[2][2] == [(0, 4, 0, 0), (2, 4, 3, 0)]


def _in_child(prog, fn):
    """Load ``prog`` in a forked child with no_new_privs, run ``fn``; return
    the child's exit status (fn's return value)."""
    pid = os.fork()
    if pid == 0:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            prog.load()
            os._exit(fn())
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return status


SECTION = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat", "no_such_syscall_at_all"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": errno.ENOSYS},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
         "args": [{"index": 0, "value": 0o077, "op": "SCMP_CMP_EQ"}]},
    ],
}


@pytest.mark.skipif(sys.platform != "linux", reason="linux only")
def test_filter_blocks_with_errno_and_skips_unknown_names(tmp_path):
    prog = seccomp.prepare(SECTION)

    def child():
        try:
            os.mkdir(str(tmp_path / "x"))
            return 1
        except OSError as e:
            if e.errno != errno.ENOSYS:
                return 2
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(110) != -1 or ctypes.get_errno() != errno.EPERM:  # getppid
            return 3
        os.umask(0o022)                      # arg differs: allowed
        if libc.syscall(95, 0o077) != -1 or ctypes.get_errno() != errno.EXDEV:  # umask
            return 4
        with open("/proc/self/status") as f:
            if "Seccomp:\t2" not in f.read():
                return 5
        return 0

    status = _in_child(prog, child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert not (tmp_path / "x").exists()


def test_kill_process_action_kills():
    prog = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    status = _in_child(prog, lambda: ctypes.CDLL(None).syscall(110) and 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31  # SIGSYS


def test_cache_reuses_compiled_program(tmp_path):
    p1 = seccomp.prepare(SECTION, str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".bpf")
    p2 = seccomp.prepare(SECTION, str(tmp_path))
    assert p1.bpf == p2.bpf
    other = dict(SECTION, defaultAction="SCMP_ACT_LOG")
    seccomp.prepare(other, str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2


def test_syscalls_newer_than_the_profile_get_enosys():
    """runc's -ENOSYS stub: with a deny-by-default profile, a syscall numbered
    above every syscall the profile names answers ENOSYS (so libc falls back),
    an older unlisted one the default errno (EPERM)."""
    allowed = ["read", "write", "exit", "exit_group", "rt_sigreturn", "rt_sigprocmask",
               "rt_sigaction", "mmap", "munmap", "brk", "futex", "getppid", "close",
               "getrandom"]                      # getrandom = 318: the highest named
    prog = seccomp.prepare({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                              "SCMP_ARCH_X32"],
                            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]})

    def child():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(110) <= 0:                                   # getppid: allowed
            return 1
        if libc.syscall(39) != -1 or ctypes.get_errno() != errno.EPERM:   # getpid
            return 2
        if libc.syscall(332, -100, b"/", 0, 0, None) != -1 or \
                ctypes.get_errno() != errno.ENOSYS:                  # statx (332 > 318)
            return 3
        return 0

    status = _in_child(prog, child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_stub_only_for_deny_by_default_profiles():
    import pyseccomp
    calls = [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    assert seccomp.enosys_stub({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": calls},
                               pyseccomp) == b""
    assert seccomp.enosys_stub({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                                "syscalls": calls}, pyseccomp) == b""
    stub = seccomp.enosys_stub({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": calls},
                               pyseccomp)
    assert stub and len(stub) % 8 == 0
