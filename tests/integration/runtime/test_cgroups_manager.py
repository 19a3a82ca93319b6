"""skiff.runtime.cgroups driven directly on host processes (no container):
create, add, limits, stats, freeze/thaw, update, destroy, failure cleanup,
and the cgroup v2 paths (freezer, eBPF device filter) on the cgroup2 tree.
Every cgroup made here is destroyed by a finalizer, even on failure."""

import errno
import os
import select
import signal
import subprocess
import time

import pytest

from skiff.runtime import cgroups

MiB = 1 << 20
_n = [0]


@pytest.fixture
def make_cgroup():
    """``make_cgroup(resources, layout=None)`` → (Manager, spawn) where
    ``spawn(script)`` starts ``sh -c script`` already inside the cgroup."""
    made, procs = [], []

    def make(resources=None, layout=None):
        _n[0] += 1
        cid = f"skiff-mtest-{os.getpid()}-{_n[0]}"
        mgr = cgroups.for_spec(cid, {"cgroupsPath": "/" + cid, "resources": resources or {}},
                               layout=layout)
        made.append(mgr)

        def spawn(script):
            # the shell waits for a line on stdin, so it is in the cgroup
            # before it runs anything
            p = subprocess.Popen(["sh", "-c", "read go; " + script], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(p)
            mgr.add(p.pid)
            p.stdin.write("go\n")
            p.stdin.flush()
            return p
        return mgr, spawn

    yield make
    # destroy first: it thaws a frozen cgroup (a frozen process cannot die)
    errors = []
    for mgr in made:
        try:
            mgr.destroy()
        except OSError as e:
            errors.append(e)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    assert not errors, errors


def _read(d, f):
    with open(os.path.join(d, f)) as fh:
        return fh.read().strip()


def test_limits_stats_freeze_update_destroy(make_cgroup):
    mgr, spawn = make_cgroup({"memory": {"limit": 64 * MiB, "swap": 64 * MiB},
                              "cpu": {"shares": 256, "quota": 10000, "period": 100000},
                              "pids": {"limit": 16}})
    mgr.create()
    p = spawn("echo ready; exec sleep 100")
    assert p.stdout.readline() == "ready\n"
    v2 = mgr.mode == "v2"
    rel = "/" + os.path.basename(mgr.path)
    with open(f"/proc/{p.pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.endswith(rel) for line in lines), lines
    if v2:
        assert _read(mgr.path, "memory.max") == str(64 * MiB)
        assert _read(mgr.path, "memory.swap.max") == "0"
        assert _read(mgr.path, "cpu.max") == "10000 100000"
    else:
        assert _read(mgr.paths["memory"], "memory.limit_in_bytes") == str(64 * MiB)
        assert _read(mgr.paths["memory"], "memory.memsw.limit_in_bytes") == str(64 * MiB)
        assert _read(mgr.paths["cpu"], "cpu.cfs_quota_us") == "10000"
        assert _read(mgr.paths["cpu"], "cpu.shares") == "256"
    assert mgr.pids() == [p.pid]

    st = mgr.stats()
    assert st["pids_stats"]["current"] == 1
    assert st["pids_stats"]["limit"] == 16
    assert st["memory_stats"]["limit"] == 64 * MiB
    assert st["memory_stats"]["usage"] > 0
    assert st["cpu_stats"]["system_cpu_usage"] > 0 and st["cpu_stats"]["online_cpus"] >= 1

    mgr.freeze()
    assert mgr.freezer_state() == "FROZEN"
    mgr.thaw()
    assert mgr.freezer_state() == "THAWED"

    mgr.update({"pids": {"limit": 7}})
    pids_dir = mgr.path if v2 else mgr.paths["pids"]
    assert _read(pids_dir, "pids.max") == "7"

    again = cgroups.from_state(mgr.to_state())   # as a later command would
    again.destroy()
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert not again.exists()
    assert all(not os.path.exists(d) for d in mgr.paths.values())
    again.destroy()                               # idempotent


def test_frozen_processes_do_not_run(make_cgroup):
    mgr, spawn = make_cgroup()
    mgr.create()
    p = spawn("while true; do echo x; usleep 5000; done")
    fd = p.stdout.fileno()

    def readable(t):
        return bool(select.select([fd], [], [], t)[0])
    assert readable(5)
    mgr.freeze()
    while readable(0.05):              # drain what was written before the freeze
        os.read(fd, 65536)
    assert not readable(0.3)           # nothing new while frozen (60 ticks if running)
    mgr.thaw()
    assert readable(5)


def test_signal_all_reaches_every_process(make_cgroup):
    mgr, spawn = make_cgroup()
    mgr.create()
    p = spawn("sleep 100 & sleep 100 & wait")
    deadline = time.monotonic() + 5
    while len(mgr.pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(mgr.pids()) == 3
    mgr.signal_all(signal.SIGTERM)
    p.wait(timeout=10)
    deadline = time.monotonic() + 5
    while mgr.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mgr.pids() == []


def test_memory_limit_kills_the_hog(make_cgroup):
    mgr, spawn = make_cgroup({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    mgr.create()
    assert mgr.oom_kills() == 0
    p = spawn("exec dd if=/dev/zero of=/dev/null bs=200M count=1")
    assert p.wait(timeout=30) == -signal.SIGKILL
    assert mgr.oom_kills() == 1


def test_failed_create_leaves_nothing(make_cgroup):
    # a CPU that does not exist: the kernel refuses the cpuset write
    mgr, _ = make_cgroup({"cpu": {"cpus": "4095"}})
    with pytest.raises(OSError) as e:
        mgr.create()
    assert "cpuset.cpus" in str(e.value)
    assert all(not os.path.exists(d) for d in mgr.paths.values())


def _v2_layout():
    lay = cgroups.detect()
    if lay.mode == "v2":
        return lay, None
    if not lay.unified:
        pytest.fail("no cgroup2 tree on this host to test the v2 code on")
    # hybrid: drive the v2 code on the unified tree (no resource controllers
    # there, but the freezer and device eBPF programs are core cgroup2)
    return cgroups.Layout("v2", unified=lay.unified), lay.unified


@pytest.fixture
def restore_subtree_control():
    lay = cgroups.detect()
    root = lay.unified
    before = _read(root, "cgroup.subtree_control").split() if root else []
    yield
    if root and lay.mode != "v2":
        for c in set(_read(root, "cgroup.subtree_control").split()) - set(before):
            try:
                with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                    f.write("-" + c)
            except OSError:
                pass   # still in use below (another user of the tree)


def test_v2_device_filter_and_freezer(make_cgroup, restore_subtree_control):
    layout, _ = _v2_layout()
    mgr, spawn = make_cgroup({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}, layout=layout)
    mgr.create()
    p = spawn("cat /dev/null && echo null-ok; "
              "head -c1 /dev/zero >/dev/null 2>/dev/null && echo zero-ok || echo zero-denied; "
              "echo > /dev/null && echo null-write-ok; "
              "read wait")
    assert [p.stdout.readline().strip() for _ in range(3)] == \
        ["null-ok", "zero-denied", "null-write-ok"]
    mgr.freeze()
    assert mgr.freezer_state() == "FROZEN"
    assert "frozen 1" in _read(mgr.path, "cgroup.events")
    mgr.thaw()
    assert mgr.freezer_state() == "THAWED"
    # an update replaces the program rather than stacking a second one
    mgr.update({"devices": [{"allow": True, "access": "rwm"}]})
    from skiff.runtime.cgroups import bpf
    fd = os.open(mgr.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(bpf.attached(fd)) == 1
    finally:
        os.close(fd)
    mgr.destroy()
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert not os.path.exists(mgr.path)


def test_v2_resource_files_on_the_cgroup2_tree(make_cgroup, restore_subtree_control):
    """Controllers are enabled down the path and limits land in the v2
    files (hugetlb is the controller this host's cgroup2 tree holds; on a
    pure v2 host memory and pids are checked too)."""
    layout, _ = _v2_layout()
    avail = _read(layout.unified, "cgroup.controllers").split()
    res = {}
    if "hugetlb" in avail:
        res["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4 * 2 * MiB}]
    if "pids" in avail:
        res["pids"] = {"limit": 9}
    if "memory" in avail:
        res["memory"] = {"limit": 40 * MiB, "reservation": 8 * MiB}
    if not res:
        pytest.fail("the cgroup2 tree has no controller to test with")
    mgr, spawn = make_cgroup(res, layout=layout)
    mgr.create()
    if "hugetlb" in avail:
        assert _read(mgr.path, "hugetlb.2MB.max") == str(8 * MiB)
    if "pids" in avail:
        assert _read(mgr.path, "pids.max") == "9"
    if "memory" in avail:
        assert _read(mgr.path, "memory.max") == str(40 * MiB)
        assert _read(mgr.path, "memory.low") == str(8 * MiB)
    p = spawn("echo in; exec sleep 100")
    assert p.stdout.readline() == "in\n"
    assert mgr.pids() == [p.pid]
    mgr.destroy()
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_v2_bad_device_rule_refused_before_anything_is_made(make_cgroup):
    layout, _ = _v2_layout()
    from skiff.errors import InvalidArgument
    with pytest.raises(InvalidArgument):
        make_cgroup({"devices": [{"allow": True, "type": "x"}]}, layout=layout)


def test_destroy_of_a_missing_cgroup_is_quiet():
    mgr = cgroups.for_spec("skiff-never-made", {"cgroupsPath": "/skiff-never-made-x"})
    mgr.destroy()
    with pytest.raises(OSError) as e:
        mgr.freeze(timeout=0.1)
    assert e.value.errno in (errno.ENOENT, errno.ENOTSUP)


def test_nested_path_gets_cpuset_and_parent_stays(make_cgroup):
    """A path like the engine's /skiff/<id>: missing parents are created (v1
    cpuset gets cpus/mems copied into each new level, or no task could join);
    destroy removes the leaf only, as runc does."""
    _n[0] += 1
    parent = f"skiff-mtest-{os.getpid()}-p{_n[0]}"
    mgr = cgroups.for_spec("leaf", {"cgroupsPath": f"/{parent}/leaf",
                                    "resources": {"pids": {"limit": 3}}})
    parents = {k: os.path.dirname(v) for k, v in mgr.paths.items()}
    try:
        mgr.create()
        p = subprocess.Popen(["sleep", "100"])
        try:
            mgr.add(p.pid)
            assert mgr.pids() == [p.pid]
            if "cpuset" in mgr.paths:
                assert _read(parents["cpuset"], "cpuset.cpus") != ""
                assert _read(mgr.paths["cpuset"], "cpuset.mems") != ""
        finally:
            mgr.destroy()
            p.wait(timeout=10)
        assert not mgr.exists()
        assert all(os.path.isdir(d) for d in parents.values())
    finally:
        mgr.destroy()
        for d in set(parents.values()):
            if os.path.isdir(d):
                os.rmdir(d)


def test_a_preexisting_cgroup_is_joined_but_never_emptied(make_cgroup):
    """cgroupsPath naming a cgroup that already exists (shared with other
    processes): the container joins it; destroy neither kills the others
    nor removes the directory."""
    owner, spawn = make_cgroup()
    owner.create()
    assert owner.owned
    bystander = spawn("echo up; exec sleep 100")
    assert bystander.stdout.readline() == "up\n"
    name = os.path.basename(owner.path)
    joiner = cgroups.for_spec("other", {"cgroupsPath": "/" + name})
    joiner.create()
    assert not joiner.owned
    assert cgroups.from_state(joiner.to_state()).owned is False
    p = subprocess.Popen(["sleep", "100"])
    try:
        joiner.add(p.pid)
        assert sorted(joiner.pids()) == sorted([p.pid, bystander.pid])
    finally:
        p.kill()
        p.wait()
    joiner.destroy()
    assert bystander.poll() is None            # untouched
    assert owner.exists()


def test_cpu_shares_out_of_range_is_refused_cleanly(make_cgroup):
    """The kernel clamps cpu.shares; like runc, a clamped value is an error
    naming the bound (v1), and nothing is left behind."""
    mgr, _ = make_cgroup({"cpu": {"shares": 1}})
    if mgr.mode == "v2":
        mgr.create()                      # weight 1: the v2 range starts there
        assert _read(mgr.path, "cpu.weight") == "1"
        return
    from skiff.errors import InvalidArgument
    with pytest.raises(InvalidArgument, match="minimum allowed cpu-shares is 2"):
        mgr.create()
    assert all(not os.path.exists(d) for d in mgr.paths.values())
