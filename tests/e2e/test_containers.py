"""Containers through the real docker CLI and docker-py against skiffd."""

import json
import subprocess
import time

import docker
import pytest

from tests.e2e.helpers_pty import run_in_pty


def wait_for(pred, timeout=15, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------ run
def test_run_rm_attached_output_and_cleanup(skiffd):
    r = skiffd.docker("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""


def test_run_exit_codes(skiffd):
    r = skiffd.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n" and "err\n" in r.stderr
    assert skiffd.docker("run", "--rm", "busybox", "false").returncode == 1
    r = skiffd.docker("run", "--rm", "busybox", "no-such-binary")
    assert r.returncode == 127
    assert "executable file not found" in r.stderr
    r = skiffd.docker("run", "--rm", "busybox", "/etc")
    assert r.returncode == 126
    r = skiffd.docker("run", "--rm", "--runtime", "no-such-runtime", "busybox", "true")
    assert r.returncode == 125
    assert "unknown or invalid runtime name: no-such-runtime" in r.stderr
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""


def test_run_stdin_pipe(skiffd):
    r = skiffd.docker("run", "-i", "--rm", "busybox", "tr", "a-z", "A-Z", input="hello\nworld\n")
    assert (r.returncode, r.stdout) == (0, "HELLO\nWORLD\n"), r.stderr


def test_run_detached_ps_inspect_shapes(skiffd):
    r = skiffd.docker("run", "-d", "--name", "web1", "-l", "tier=front", "-e", "FOO=bar",
                      "busybox", "sleep", "300", check=True)
    cid = r.stdout.strip()
    assert len(cid) == 64
    ps = skiffd.docker("ps", "--format", "{{json .}}", check=True).stdout.splitlines()
    row = json.loads(ps[0])
    assert row["Names"] == "web1" and row["Image"] == "busybox"
    assert row["Command"] == '"sleep 300"'
    assert row["Status"].startswith("Up ")
    assert row["State"] == "running"
    assert "tier=front" in row["Labels"]
    info = json.loads(skiffd.docker("inspect", "web1", check=True).stdout)[0]
    assert info["Id"] == cid and info["Name"] == "/web1"
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["State"]["Status"] == "running"
    assert info["Config"]["Cmd"] == ["sleep", "300"]
    assert "FOO=bar" in info["Config"]["Env"]
    assert info["Config"]["Labels"] == {"tier": "front"}
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert info["GraphDriver"]["Name"] == "overlay2"
    assert info["GraphDriver"]["Data"]["UpperDir"]
    assert info["Image"].startswith("sha256:")
    assert info["Config"]["Hostname"] == cid[:12]
    assert info["LogPath"] and info["HostsPath"] and info["ResolvConfPath"]
    # the container's view
    assert skiffd.docker("exec", "web1", "hostname", check=True).stdout.strip() == cid[:12]
    assert skiffd.docker("exec", "web1", "sh", "-c", "echo $FOO", check=True).stdout == "bar\n"
    # filters
    assert skiffd.docker("ps", "-q", "--filter", "label=tier=front").stdout.strip() == cid[:12]
    assert skiffd.docker("ps", "-q", "--filter", "label=tier=back").stdout.strip() == ""
    assert skiffd.docker("ps", "-q", "--filter", "name=web1").stdout.strip() == cid[:12]
    assert skiffd.docker("ps", "-q", "--filter", "status=exited").stdout.strip() == ""
    assert skiffd.docker("ps", "-q", "--filter", "ancestor=busybox").stdout.strip() == cid[:12]


def test_name_conflict_and_not_found_messages(skiffd):
    skiffd.docker("create", "--name", "dup", "busybox", "true", check=True)
    r = skiffd.docker("create", "--name", "dup", "busybox", "true")
    assert r.returncode == 1
    r = skiffd.docker("run", "--name", "dup", "busybox", "true")
    assert r.returncode == 125
    assert 'Conflict. The container name "/dup" is already in use by container' in r.stderr
    r = skiffd.docker("inspect", "nosuch")
    assert r.returncode == 1 and "No such object: nosuch" in r.stderr or "No such container" in r.stderr
    with pytest.raises(docker.errors.NotFound) as ei:
        skiffd.client.containers.get("nosuch")
    assert "No such container: nosuch" in str(ei.value)
    with pytest.raises(docker.errors.APIError) as ei:
        skiffd.client.containers.create("busybox", "true", name="dup")
    assert ei.value.status_code == 409


def test_lifecycle_stop_kill_restart_pause_wait_rename_rm(skiffd):
    skiffd.docker("run", "-d", "--name", "lc", "busybox", "sh", "-c",
                  "trap 'exit 42' TERM; while true; do sleep 0.1; done", check=True)
    skiffd.docker("pause", "lc", check=True)
    assert skiffd.docker("inspect", "-f", "{{.State.Status}}", "lc").stdout.strip() == "paused"
    assert "(Paused)" in skiffd.docker("ps", "--format", "{{.Status}}").stdout
    skiffd.docker("unpause", "lc", check=True)
    skiffd.docker("rename", "lc", "lc2", check=True)
    assert skiffd.docker("inspect", "-f", "{{.Name}}", "lc2").stdout.strip() == "/lc2"
    r = skiffd.docker("rm", "lc2")
    assert r.returncode == 1 and "container is running" in r.stderr
    skiffd.docker("stop", "lc2", check=True)
    info = json.loads(skiffd.docker("inspect", "lc2").stdout)[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 42
    assert skiffd.docker("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (42)")
    assert skiffd.docker("wait", "lc2").stdout.strip() == "42"
    skiffd.docker("start", "lc2", check=True)
    pid1 = json.loads(skiffd.docker("inspect", "lc2").stdout)[0]["State"]["Pid"]
    skiffd.docker("restart", "-t", "5", "lc2", check=True)
    st = json.loads(skiffd.docker("inspect", "lc2").stdout)[0]["State"]
    assert st["Running"] and st["Pid"] != pid1
    skiffd.docker("kill", "lc2", check=True)
    assert skiffd.docker("wait", "lc2").stdout.strip() == "137"
    skiffd.docker("rm", "lc2", check=True)
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""


def test_wait_does_not_miss_fast_exit_and_prune(skiffd):
    c = skiffd.client.containers.create("busybox", ["sh", "-c", "exit 9"])
    api = skiffd.client.api
    # a wait registered before start sees the exit, however fast
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(api.wait(c.id, condition="next-exit")))
    t.start()
    time.sleep(0.3)
    c.start()
    t.join(20)
    assert result["StatusCode"] == 9
    r = skiffd.docker("container", "prune", "-f", check=True)
    assert c.id in r.stdout
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""


def test_logs_follow_timestamps_tail_since(skiffd):
    skiffd.docker("run", "-d", "--name", "lg", "busybox", "sh", "-c",
                  "for i in 1 2 3; do echo out$i; echo err$i >&2; done; sleep 1; echo late; sleep 300",
                  check=True)
    wait_for(lambda: "late" in skiffd.docker("logs", "lg").stdout)
    r = skiffd.docker("logs", "lg")
    assert r.stdout == "out1\nout2\nout3\nlate\n"
    assert r.stderr == "err1\nerr2\nerr3\n"
    assert skiffd.docker("logs", "--tail", "1", "lg").stdout == "late\n"
    ts = skiffd.docker("logs", "-t", "--tail", "1", "lg").stdout
    assert ts.endswith("Z late\n") and ts[:4].isdigit() and "T" in ts
    assert skiffd.docker("logs", "--since", "2099-01-01T00:00:00Z", "lg").stdout == ""
    # follow: stays open and shows new lines, ends when the container stops
    p = subprocess.Popen(["docker", "-H", skiffd.host, "logs", "-f", "--tail", "0", "lg"],
                         stdout=subprocess.PIPE, env=skiffd.env(), text=True)
    time.sleep(0.5)
    skiffd.docker("exec", "lg", "sh", "-c", "echo followed > /proc/1/fd/1", check=True)
    line = p.stdout.readline()
    assert line == "followed\n"
    skiffd.docker("kill", "lg", check=True)
    assert p.wait(15) == 0


def test_interactive_run_and_exec_through_a_pty(skiffd):
    env = skiffd.env()
    out, code = run_in_pty(["docker", "-H", skiffd.host, "run", "--rm", "-it", "busybox", "sh"],
                           env, [(b"# ", b"echo $((6*7)); tty; exit 5\r")])
    assert code == 5, out
    assert b"42" in out and b"/dev/pts/0" in out
    skiffd.docker("run", "-d", "--name", "itx", "busybox", "sleep", "300", check=True)
    out, code = run_in_pty(["docker", "-H", skiffd.host, "exec", "-it", "itx", "sh"],
                           env, [(b"# ", b"echo hello-$((1+1)); tty; exit 3\r")])
    assert code == 3, out
    assert b"hello-2" in out and b"/dev/pts/" in out


def test_attach_to_running_container(skiffd):
    skiffd.docker("run", "-d", "-i", "--name", "att", "busybox", "sh", "-c",
                  "while read l; do echo got:$l; done", check=True)
    p = subprocess.Popen(["docker", "-H", skiffd.host, "attach", "att"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env=skiffd.env(), text=True)
    time.sleep(0.5)
    p.stdin.write("ping\n")
    p.stdin.flush()
    assert p.stdout.readline() == "got:ping\n"
    p.stdin.close()
    assert p.wait(15) == 0
    assert skiffd.docker("wait", "att").stdout.strip() == "0"


def test_top_stats_and_events(skiffd):
    since = str(int(time.time()) - 1)
    skiffd.docker("run", "-d", "--name", "ts", "busybox", "sleep", "300", check=True)
    top = skiffd.docker("top", "ts", check=True).stdout
    assert "PID" in top.splitlines()[0] and "sleep 300" in top
    r = skiffd.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "ts",
                      check=True)
    name, *rest = r.stdout.split()
    assert name == "ts" and rest[-1] == "1"
    s = skiffd.client.containers.get("ts").stats(stream=False)
    assert s["memory_stats"]["usage"] > 0 and s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert s["pids_stats"]["current"] == 1
    skiffd.docker("rm", "-f", "ts", check=True)
    ev = skiffd.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                       "--filter", "container=ts", "--format", "{{.Action}}", check=True).stdout.split()
    for a in ("create", "start", "kill", "die", "destroy"):
        assert a in ev, ev


def test_sdk_run_and_logs(skiffd):
    out = skiffd.client.containers.run("busybox", ["sh", "-c", "echo sdk; echo e >&2"],
                                       remove=True, stderr=True)
    assert b"sdk" in out
    c = skiffd.client.containers.run("busybox", ["sleep", "300"], detach=True, name="sdk1")
    assert c.status in ("created", "running")
    c.reload()
    assert c.status == "running"
    code, output = c.exec_run(["sh", "-c", "echo exec-ok; exit 2"])
    assert (code, output) == (2, b"exec-ok\n")
    assert [x["Names"] for x in skiffd.client.api.containers()] == [["/sdk1"]]
    c.remove(force=True)


def test_init_and_rm_volumes(skiffd):
    r = skiffd.docker("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline", check=True)
    assert r.stdout.startswith("/sbin/docker-init")
    r = skiffd.docker("run", "--rm", "busybox", "cat", "/proc/1/cmdline", check=True)
    assert r.stdout.startswith("cat")


def test_detach_keys_and_size(skiffd):
    skiffd.docker("run", "-d", "-it", "--name", "dk", "busybox", "sh", check=True)
    out, code = run_in_pty(["docker", "-H", skiffd.host, "attach", "dk"], skiffd.env(),
                           [(None, b"echo attached-$((2+3))\r"), (b"attached-5", b"\x10\x11")])
    assert b"attached-5" in out and b"read escape sequence" in out and code == 1  # as docker
    assert json.loads(skiffd.docker("inspect", "dk").stdout)[0]["State"]["Running"]
    skiffd.docker("exec", "dk", "sh", "-c", "head -c 100000 /dev/zero > /big", check=True)
    row = json.loads(skiffd.docker("ps", "-s", "--format", "{{json .}}").stdout)
    assert row["Size"].startswith("1") and "virtual" in row["Size"]


def test_concurrent_runs(skiffd):
    import concurrent.futures as cf
    with cf.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda i: skiffd.docker("run", "--rm", "busybox", "sh", "-c", f"echo {i}"),
                         range(16)))
    assert [(r.returncode, r.stdout) for r in rs] == [(0, f"{i}\n") for i in range(16)]
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""
