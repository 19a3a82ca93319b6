"""Container lifecycle through the runc command line, on every runtime."""

import json
import os
import time

from tests.integration.runtime.conftest import edit_config, run_bundle


def test_run_exit_code_and_stdout(runtime, make_bundle):
    code, out = run_bundle(runtime, make_bundle(["sh", "-c", "echo hello; exit 3"]))
    assert code == 3
    assert out == "hello\n"


def test_create_waits_until_start(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["sh", "-c", "echo started"])
    out = tmp_path / "out"
    with open(out, "w") as f:
        cid = runtime.create(bundle, stdout=f)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid
    assert st["pid"] > 0 and os.path.exists(f"/proc/{st['pid']}")
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle)
    time.sleep(0.2)
    assert out.read_text() == ""          # the user's program has not run yet
    runtime.start(cid)
    runtime.wait_exit(cid)
    assert out.read_text() == "started\n"
    runtime.delete(cid)
    assert cid not in runtime.list_ids()


def test_state_of_missing_container_fails(runtime):
    p = runtime.cmd("state", "nosuchcontainer")
    assert p.returncode != 0
    assert "does not exist" in p.stderr or "not exist" in p.stderr.lower() \
        or "no such" in p.stderr.lower()


def test_kill_running_container(runtime, make_bundle):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    runtime.start(cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.kill(cid, "KILL")
    runtime.wait_exit(cid)
    runtime.delete(cid)


def test_kill_by_number_and_name(runtime, make_bundle):
    # sh as pid 1 ignores TERM without a handler; trap it and exit with a code
    bundle = make_bundle(["sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.1; done"])
    cid = runtime.create(bundle)
    runtime.start(cid)
    time.sleep(0.3)
    runtime.kill(cid, "10")  # SIGUSR1
    runtime.wait_exit(cid)
    runtime.delete(cid)
    cid = runtime.create(bundle)
    runtime.start(cid)
    time.sleep(0.3)
    runtime.kill(cid, "SIGUSR1")
    runtime.wait_exit(cid)
    runtime.delete(cid)


def test_delete_force_running(runtime, make_bundle):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    runtime.start(cid)
    runtime.delete(cid, force=True)
    assert cid not in runtime.list_ids()


def test_hostname(runtime, make_bundle):
    bundle = make_bundle(["hostname"])
    edit_config(bundle, lambda s: s.update(hostname="skiffhost"))
    assert run_bundle(runtime, bundle) == (0, "skiffhost\n")


def _cgroup_file(pid, controller, name):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return f"/sys/fs/cgroup/{controller}{path}/{name}"
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_update_resources(runtime, make_bundle):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    runtime.start(cid)
    pid = runtime.state(cid)["pid"]
    runtime.cmd("update", "--pids-limit", "50", "--memory", str(64 << 20), cid, check=True)
    assert open(_cgroup_file(pid, "pids", "pids.max")).read().strip() == "50"
    assert open(_cgroup_file(pid, "memory", "memory.limit_in_bytes")).read().strip() \
        == str(64 << 20)
    runtime.cmd("update", "-r", "-", cid, input='{"pids": {"limit": 77}}', check=True)
    assert open(_cgroup_file(pid, "pids", "pids.max")).read().strip() == "77"
    runtime.delete(cid, force=True)


def test_list_and_state_json(runtime, make_bundle):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    st = runtime.state(cid)
    assert set(st) >= {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                       "owner"}
    assert st["created"].endswith("Z")
    p = runtime.cmd("list", "--format", "json", check=True)
    assert [c["id"] for c in json.loads(p.stdout)] == [cid]
    table = runtime.cmd("list", check=True).stdout.splitlines()
    assert table[0].split()[1:3] == ["PID", "STATUS"]  # crun says NAME where runc says ID
    assert table[1].split()[:3] == [cid, str(st["pid"]), "created"]
    runtime.delete(cid)


def test_foreground_run_forwards_signals(runtime, make_bundle, tmp_path):
    import signal
    import subprocess
    out = tmp_path / "out"
    out.mkdir()
    bundle = make_bundle(["sh", "-c", "trap 'exit 9' TERM; touch /out/ready; "
                                      "while :; do sleep 0.1; done"])
    edit_config(bundle, lambda s: s["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}))
    p = subprocess.Popen(runtime.argv("run", "--bundle", bundle, runtime.new_id()),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (out / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / "ready").exists()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
