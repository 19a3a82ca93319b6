"""pause / resume on every runtime (skiff-runtime, runc, crun): the freezer
stops every process of the container, and resume lets it run on."""

import os
import time

from skiff.runtime import cgroups
from tests.integration.runtime.conftest import edit_config
from tests.integration.runtime.test_cgroups import remove_test_cgroups  # noqa: F401 (autouse)

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count; usleep 5000; done"


def _count(pid):
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/root/dev/shm/count") as f:
                s = f.read().strip()
            if s:
                return int(s)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("counter file never appeared")


def _advances(pid, within=3.0):
    first = _count(pid)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _count(pid) > first:
            return True
        time.sleep(0.02)
    return False


def test_pause_freezes_and_resume_continues(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", COUNTER])
    cid = runtime.new_id()
    cg = f"/skiff-test-{runtime.name}-{cid}"

    def set_path(spec):
        spec["linux"]["cgroupsPath"] = cg
    edit_config(bundle, set_path)
    runtime.create(bundle, id=cid)
    runtime.start(cid)
    try:
        pid = runtime.state(cid)["pid"]
        assert _advances(pid)
        mgr = cgroups.Manager(cgroups.detect().mode, cgroups.resolve_path(cid, cg))

        runtime.cmd("pause", cid, check=True)
        assert runtime.state(cid)["status"] == "paused"
        assert mgr.freezer_state() == "FROZEN"
        frozen_at = _count(pid)
        time.sleep(0.3)                      # 60 ticks if it were running
        assert _count(pid) == frozen_at

        runtime.cmd("resume", cid, check=True)
        assert runtime.state(cid)["status"] == "running"
        assert mgr.freezer_state() == "THAWED"
        assert _advances(pid)
    finally:
        runtime.delete(cid, force=True)
    assert not os.path.exists(cgroups.resolve_path(cid, cg)["freezer" if cgroups.detect().mode
                                                            != "v2" else ""])


def test_delete_force_of_a_paused_container(runtime, make_bundle):
    bundle = make_bundle(["sleep", "100"])
    cid = runtime.new_id()
    runtime.create(bundle, id=cid)
    runtime.start(cid)
    runtime.cmd("pause", cid, check=True)
    assert runtime.state(cid)["status"] == "paused"
    runtime.delete(cid, force=True)
    assert cid not in runtime.list_ids()


def test_pause_of_a_stopped_container_fails(runtime, make_bundle):
    bundle = make_bundle(["true"])
    cid = runtime.new_id()
    runtime.create(bundle, id=cid)
    runtime.start(cid)
    runtime.wait_exit(cid)
    p = runtime.cmd("pause", cid)
    assert p.returncode != 0
    assert "not running" in p.stderr.lower() or "stopped" in p.stderr.lower(), p.stderr
    runtime.delete(cid)
