"""How skiff-runtime's stages enter a cgroup without a move: skiff.sys
.clone3 (CLONE_INTO_CGROUP, the child born in a cgroup v2 directory, and in
new namespaces) and cgroups.join_self (a single-threaded child writing "0" into
v1 ``tasks``), on the host's real cgroup filesystems."""

import os

import pytest

from skiff import sys as k
from skiff.runtime import cgroups

NAME = f"skiff-ftest-{os.getpid()}"


def _v2_mount():
    lay = cgroups.detect()
    if not lay.unified:
        pytest.skip("no cgroup2 filesystem on this host")
    return lay.unified


@pytest.fixture
def v2dir():
    d = os.path.join(_v2_mount(), NAME)
    os.mkdir(d)
    yield d
    os.rmdir(d)


def _read_child(r):
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    return out.decode()


def test_child_is_born_in_the_cgroup_and_is_a_working_interpreter(v2dir):
    seen = []
    os.register_at_fork(before=lambda: seen.append("before"),
                        after_in_parent=lambda: seen.append("parent"),
                        after_in_child=lambda: seen.append("child"))
    r, w = os.pipe()
    fd = os.open(v2dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pid = k.clone3(cgroup_fd=fd)
        if pid == 0:
            try:
                import threading
                os.close(r)
                with open("/proc/self/cgroup") as f:
                    line = [x for x in f.read().splitlines() if x.startswith("0::")][0]
                hook = seen[-1]  # (the fork below adds its own)
                got = []
                t = threading.Thread(target=lambda: got.append(os.getpid()))
                t.start()
                t.join()
                g = os.fork()
                if g == 0:
                    os._exit(5)
                _, status = os.waitpid(g, 0)
                msg = (f"{line}|{hook}|pid={os.getpid() == got[0]}|"
                       f"grandchild={os.waitstatus_to_exitcode(status)}")
                os.write(w, msg.encode())
            finally:
                os._exit(7)
    finally:
        os.close(fd)
    os.close(w)
    out = _read_child(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    line, hook, same_pid, grandchild = out.split("|")
    assert line == "0::/" + NAME
    # the interpreter's fork hooks ran on both sides, as for os.fork
    assert hook == "child"
    assert seen[-2:] == ["before", "parent"]
    assert same_pid == "pid=True" and grandchild == "grandchild=5"
    # the parent stays where it was
    with open("/proc/self/cgroup") as f:
        assert "0::/" + NAME not in f.read().splitlines()


def _children():
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        return set(f.read().split())


def test_refused_clone_raises_in_the_parent_and_makes_no_child(v2dir):
    before = _children()
    fd = os.open(v2dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.close(fd)
    with pytest.raises(OSError) as e:
        k.clone3(cgroup_fd=fd)  # a closed fd
    assert e.value.errno == 9
    # a file, not a cgroup directory
    with open(os.path.join(v2dir, "cgroup.procs")) as f:
        with pytest.raises(OSError):
            k.clone3(cgroup_fd=f.fileno())
    assert _children() == before


def test_join_self_moves_a_single_threaded_child_into_each_v1_hierarchy():
    lay = cgroups.detect()
    if not lay.v1:
        pytest.skip("no cgroup v1 hierarchy on this host")
    mgr = cgroups.for_spec(NAME, {"cgroupsPath": "/" + NAME})
    mgr.create()
    try:
        _, tasks = mgr.entry()
        assert len(tasks) == len({d for key, d in mgr.paths.items() if key})
        r, w = os.pipe()
        fds = [(os.open(t, os.O_WRONLY | os.O_CLOEXEC), t) for t in tasks]
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                cgroups.join_self(fds)
                g = os.fork()  # a child of the moved process is there too
                if g == 0:
                    with open("/proc/self/cgroup") as f:
                        os.write(w, f.read().encode())
                    os._exit(0)
                os.waitpid(g, 0)
            finally:
                os._exit(0)
        os.close(w)
        for fd, _ in fds:
            os.close(fd)
        out = _read_child(r)
        os.waitpid(pid, 0)
        for line in out.splitlines():
            _, ctrls, path = line.split(":", 2)
            if ctrls:
                assert path == "/" + NAME, line
        # a refused write: the error names the directory
        with open("/dev/full", "wb") as full:
            with pytest.raises(OSError, match="failed to join cgroup /x/y"):
                cgroups.join_self([(full.fileno(), "/x/y/tasks")])
    finally:
        mgr.destroy()


def test_child_is_born_in_new_namespaces():
    """clone3 with CLONE_NEW* flags: the child is pid 1 of its own pid
    namespace, and its hostname is its own."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    r, w = os.pipe()
    mine = os.uname().nodename
    pid = k.clone3(k.CLONE_NEWPID | k.CLONE_NEWUTS)
    if pid == 0:
        try:
            os.close(r)
            k.sethostname("clone3-child")
            os.write(w, f"{os.getpid()}|{os.uname().nodename}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = _read_child(r)
    os.waitpid(pid, 0)
    assert out == "1|clone3-child"
    assert os.uname().nodename == mine
