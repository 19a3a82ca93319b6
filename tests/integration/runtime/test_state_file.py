"""skiff-runtime's own state file (<root>/<id>/state.bin, the interpreter's
marshal format): a container whose state an older skiff-runtime wrote as
state.json is still driven to its end, and a damaged state file gives runc's
error and leaves the rest alone."""

import json
import marshal
import os

import pytest

from tests.integration.runtime.conftest import Runtime


@pytest.fixture
def skiff(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "state"
    root.mkdir()
    rt = Runtime("skiff-runtime", str(root))
    yield rt
    rt.cleanup()


def test_a_container_with_an_old_json_state_file_still_works(skiff, make_bundle):
    cid = skiff.create(make_bundle(["sleep", "100"]))
    d = os.path.join(skiff.root, cid)
    with open(os.path.join(d, "state.bin"), "rb") as f:
        data = marshal.loads(f.read())
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(data, f)
    os.unlink(os.path.join(d, "state.bin"))
    assert skiff.state(cid)["status"] == "created"
    assert skiff.list_ids() == [cid]
    skiff.start(cid)
    assert skiff.state(cid)["status"] == "running"
    skiff.delete(cid, force=True)
    assert not os.path.exists(d)
    assert not os.path.exists(f"/proc/{data['pid']}/stat") or \
        open(f"/proc/{data['pid']}/stat").read().split(") ")[1][0] in "ZX"


@pytest.mark.parametrize("content", [b"", b"\x00garbage", marshal.dumps([1, 2])])
def test_a_damaged_state_file_is_reported(skiff, content):
    d = os.path.join(skiff.root, "broken")
    os.mkdir(d)
    with open(os.path.join(d, "state.bin"), "wb") as f:
        f.write(content)
    p = skiff.cmd("state", "broken")
    assert p.returncode == 1
    assert "container broken has a corrupt state file" in p.stderr
    p = skiff.cmd("start", "broken")
    assert p.returncode == 1 and "corrupt state file" in p.stderr
    # list skips it; delete --force removes it (runc's rule for a state it cannot load)
    assert skiff.cmd("list", "--format", "json", check=True).stdout.strip() == "null"
    skiff.delete("broken", force=True)
    assert not os.path.exists(d)


def test_a_create_killed_midway_leaves_a_container_delete_removes(skiff, make_bundle,
                                                                   tmp_path):
    """The state is saved as soon as the init is in its cgroup: a create
    killed after that (here, while a createRuntime hook runs) leaves a
    container that `state` shows and `delete` removes, cgroup included (the
    init, cut off from its creator, exits on its own)."""
    import signal
    import subprocess
    import time
    from tests.integration.runtime.conftest import edit_config
    marker = tmp_path / "hook.pid"
    cg = f"/skiff-test-killed-{os.getpid()}"
    bundle = make_bundle(["sleep", "100"])

    def f(s):
        s["linux"]["cgroupsPath"] = cg
        s.setdefault("hooks", {})["createRuntime"] = [
            {"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {marker}; exec sleep 30"]}]
    edit_config(bundle, f)
    cid = skiff.new_id()
    p = subprocess.Popen(skiff.argv("create", "--bundle", bundle, cid),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    hook = None
    try:
        deadline = time.monotonic() + 20
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline, "the hook never ran"
            time.sleep(0.02)
        hook = int(marker.read_text())
        p.kill()
        p.wait()
    finally:
        if hook:
            os.kill(hook, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while skiff.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, "the init waits on for a creator that is gone"
        time.sleep(0.02)
    assert os.path.isdir(f"/sys/fs/cgroup/pids{cg}") or os.path.isdir(f"/sys/fs/cgroup{cg}")
    skiff.delete(cid)
    assert cid not in skiff.list_ids()
    assert not os.path.exists(f"/sys/fs/cgroup/pids{cg}")
    assert not os.path.exists(f"/sys/fs/cgroup{cg}")
