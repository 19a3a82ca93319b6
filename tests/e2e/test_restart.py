"""Restart policies, and containers across a restart of skiffd."""

import json
import time

import pytest


def wait_for(pred, timeout=20, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


def inspect(d, name):
    return json.loads(d.docker("inspect", name, check=True).stdout)[0]


def test_on_failure_with_max_retries(skiffd):
    skiffd.docker("run", "-d", "--name", "of", "--restart", "on-failure:2", "busybox", "sh", "-c",
                  "echo run; exit 3", check=True)
    wait_for(lambda: inspect(skiffd, "of")["RestartCount"] == 2
             and not inspect(skiffd, "of")["State"]["Running"]
             and not inspect(skiffd, "of")["State"]["Restarting"])
    time.sleep(0.5)
    info = inspect(skiffd, "of")
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
    assert skiffd.docker("logs", "of").stdout == "run\nrun\nrun\n"


def test_on_failure_does_not_restart_success_and_always_does(skiffd):
    skiffd.docker("run", "-d", "--name", "ok", "--restart", "on-failure", "busybox", "true", check=True)
    skiffd.docker("run", "-d", "--name", "al", "--restart", "always", "busybox", "sh", "-c",
                  "sleep 0.2", check=True)
    wait_for(lambda: inspect(skiffd, "al")["RestartCount"] >= 2)
    assert inspect(skiffd, "ok")["RestartCount"] == 0
    # a manual stop ends the loop
    skiffd.docker("stop", "-t", "1", "al", check=True)
    n = inspect(skiffd, "al")["RestartCount"]
    time.sleep(1)
    info = inspect(skiffd, "al")
    assert info["RestartCount"] == n and not info["State"]["Running"]


def test_rm_and_restart_conflict(skiffd):
    r = skiffd.docker("run", "--rm", "--restart", "always", "busybox", "true")
    assert r.returncode == 125 and "conflicting options" in r.stderr.lower()


def test_daemon_restart_keeps_containers(make_skiffd):
    d = make_skiffd()
    d.docker("run", "-d", "--name", "long", "busybox", "sh", "-c",
             "trap 'exit 0' TERM; echo before; while true; do sleep 0.1; done", check=True)
    d.docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 2; exit 7", check=True)
    d.docker("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "300",
             check=True)
    pid_long = inspect(d, "long")["State"]["Pid"]
    d.stop()
    time.sleep(2.5)    # "short" exits while no daemon runs
    d.start()
    long = inspect(d, "long")
    assert long["State"]["Running"] and long["State"]["Pid"] == pid_long
    short = inspect(d, "short")
    assert short["State"]["Status"] == "exited" and short["State"]["ExitCode"] == 7
    assert inspect(d, "always")["State"]["Running"]
    # still manageable: logs, exec, stop
    assert d.docker("logs", "long").stdout == "before\n"
    assert d.docker("exec", "long", "echo", "exec-ok", check=True).stdout == "exec-ok\n"
    d.docker("stop", "long", check=True)
    assert inspect(d, "long")["State"]["ExitCode"] == 0
    assert d.docker("wait", "short").stdout.strip() == "7"


def test_unless_stopped_and_always_start_with_the_daemon(make_skiffd):
    d = make_skiffd()
    d.docker("run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "300",
             check=True)
    d.docker("run", "-d", "--name", "us-stopped", "--restart", "unless-stopped", "busybox",
             "sleep", "300", check=True)
    d.docker("stop", "-t", "0", "us-stopped", check=True)
    d.docker("run", "-d", "--name", "al", "--restart", "always", "busybox", "sleep", "300", check=True)
    # the containers die while the daemon is away (a reboot, in effect)
    pids = [inspect(d, n)["State"]["Pid"] for n in ("us", "al")]
    d.stop()
    import os
    import signal
    for p in pids:
        os.kill(p, signal.SIGKILL)
    time.sleep(1)
    d.start()
    wait_for(lambda: inspect(d, "us")["State"]["Running"] and inspect(d, "al")["State"]["Running"])
    assert not inspect(d, "us-stopped")["State"]["Running"]


def test_daemon_crash_is_recovered(make_skiffd):
    import signal
    d = make_skiffd()
    d.docker("run", "-d", "--name", "c1", "busybox", "sh", "-c",
             "trap 'exit 5' TERM; while true; do sleep 0.1; done", check=True)
    d.proc.send_signal(signal.SIGKILL)      # no clean shutdown: stale socket and pidfile
    d.proc.wait()
    d.proc = None
    d.start()
    assert inspect(d, "c1")["State"]["Running"]
    d.docker("stop", "c1", check=True)
    assert inspect(d, "c1")["State"]["ExitCode"] == 5
