"""A pure cgroup v2 host, for real: each runtime command runs in a private
mount namespace whose /sys/fs/cgroup is the kernel's one cgroup2 hierarchy
(this VM's v1 hierarchies unmounted there), which is what the runtimes see
on most current distributions. The controllers bound to v1 here (memory,
cpu, pids, ...) are absent from it; what v2 itself provides is real: being
born in the container's cgroup, exec joining it, the v2 freezer, removal.
The host sees the same hierarchy at /sys/fs/cgroup/unified."""

import os
import time

import pytest

from skiff.runtime import cgroups
from tests.integration.runtime.conftest import RUNTIMES, Runtime, edit_config

V2_WRAPPER = ("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup "
              '&& exec "$@"')


@pytest.fixture(params=RUNTIMES)
def v2runtime(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lay = cgroups.detect()
    if lay.mode != "hybrid":
        pytest.skip("the host is not hybrid: the other runtime tests cover its own layout")
    root = tmp_path / f"state-{request.param}"
    root.mkdir()
    rt = Runtime(request.param, str(root))
    exe = rt.base[-1] if request.param != "skiff-runtime" else rt.base[0]
    rt.base = ["unshare", "-m", "--propagation", "private", "sh", "-c", V2_WRAPPER, "sh", exe]
    rt.host_v2 = lay.unified
    yield rt
    rt.cleanup()


def _procs(d):
    with open(os.path.join(d, "cgroup.procs")) as f:
        return {int(x) for x in f.read().split()}


def test_init_and_exec_in_the_v2_cgroup_freeze_and_removal(v2runtime, make_bundle, tmp_path):
    rt = v2runtime
    cid = rt.new_id()
    cg = f"/skiff-test-v2-{rt.name}-{cid}"
    bundle = make_bundle(["sleep", "100"])
    edit_config(bundle, lambda s: s["linux"].update(cgroupsPath=cg))
    host_dir = os.path.join(rt.host_v2, cg.lstrip("/"))
    if rt.name == "crun":
        # crun 1.8 raises RLIMIT_MEMLOCK for its eBPF device program on v2,
        # which needs CAP_SYS_RESOURCE: this VM's bounding set lacks it (the
        # kernel has charged BPF memory to the cgroup since 5.11; skiff-runtime
        # does not ask). A peer limitation, shown; crun leaves its cgroup.
        try:
            with pytest.raises(AssertionError, match="RLIM_MEMLOCK"):
                rt.create(bundle, id=cid)
        finally:
            if os.path.isdir(host_dir):
                os.rmdir(host_dir)
        return
    rt.create(bundle, id=cid)
    try:
        rt.start(cid)
        init = rt.state(cid)["pid"]
        assert init in _procs(host_dir)
        pidfile = tmp_path / "exec.pid"
        p = rt.exec(cid, "sh", "-c", "exec sleep 60 </dev/null >/dev/null 2>&1",
                    opts=("-d", "--pid-file", str(pidfile)))
        assert p.returncode == 0, p.stderr
        xpid = int(pidfile.read_text())
        assert xpid in _procs(host_dir)
        # the v2 freezer (cgroup.freeze, cgroup.events)
        rt.cmd("pause", cid, check=True)
        assert rt.state(cid)["status"] == "paused"
        with open(os.path.join(host_dir, "cgroup.events")) as f:
            assert "frozen 1" in f.read()
        with open(f"/proc/{init}/status") as f:
            assert any(line.split()[1] in ("S", "D", "T")
                       for line in f if line.startswith("State:"))
        rt.cmd("resume", cid, check=True)
        assert rt.state(cid)["status"] == "running"
    finally:
        rt.delete(cid, force=True)
    deadline = time.monotonic() + 5
    while os.path.exists(host_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(host_dir), "delete must remove the container's cgroup"
