"""Runtimes side by side, healthchecks, commit/export, published ports."""

import io
import json
import tarfile
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


@pytest.mark.parametrize("runtime", ["runc", "crun", "skiff-runtime"])
def test_runtime_selectable_per_container(skiffd, runtime):
    r = skiffd.docker("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c",
                      "echo $(cat /proc/self/status | grep -c Cap); exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout.strip() == "5"
    skiffd.docker("run", "-d", "--name", "rt", "--runtime", runtime, "busybox", "sleep", "300",
                  check=True)
    assert json.loads(skiffd.docker("inspect", "rt").stdout)[0]["HostConfig"]["Runtime"] == runtime
    assert skiffd.docker("exec", "rt", "echo", "ok", check=True).stdout == "ok\n"
    skiffd.docker("pause", "rt", check=True)
    skiffd.docker("unpause", "rt", check=True)
    skiffd.docker("rm", "-f", "rt", check=True)


def test_healthcheck_run_by_the_daemon(skiffd):
    skiffd.docker("run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok",
                  "--health-interval", "200ms", "--health-retries", "2",
                  "busybox", "sleep", "300", check=True)
    health = lambda: json.loads(skiffd.docker("inspect", "hc").stdout)[0]["State"]["Health"]  # noqa
    wait_for(lambda: health()["Status"] == "unhealthy")
    assert health()["FailingStreak"] >= 2 and health()["Log"][-1]["ExitCode"] == 1
    assert "(unhealthy)" in skiffd.docker("ps", "--format", "{{.Status}}").stdout
    skiffd.docker("exec", "hc", "touch", "/tmp/ok", check=True)
    wait_for(lambda: health()["Status"] == "healthy")
    assert skiffd.docker("ps", "-q", "--filter", "health=healthy").stdout.strip()


def test_commit_and_export(skiffd):
    skiffd.docker("run", "--name", "cm", "busybox", "sh", "-c", "echo layer > /hello.txt", check=True)
    r = skiffd.docker("commit", "-c", "CMD [\"cat\", \"/hello.txt\"]", "cm", "committed:v1", check=True)
    assert r.stdout.strip().startswith("sha256:")
    assert skiffd.docker("run", "--rm", "committed:v1").stdout == "layer\n"
    r = skiffd.docker("export", "cm", text=False, check=True)
    names = tarfile.open(fileobj=io.BytesIO(r.stdout)).getnames()
    assert any(n.lstrip("./") == "hello.txt" for n in names)
    assert any(n.lstrip("./") == "bin/busybox" for n in names)
    skiffd.docker("rm", "cm", check=True)
    skiffd.docker("rmi", "committed:v1", check=True)


def test_published_port_reaches_the_container(skiffd):
    skiffd.docker("run", "-d", "--name", "web", "-p", "127.0.0.1:18080:80", "busybox", "sh", "-c",
                  "mkdir -p /www && echo served > /www/index.html && httpd -f -p 80 -h /www",
                  check=True)
    assert "127.0.0.1:18080->80/tcp" in skiffd.docker("ps", "--format", "{{.Ports}}").stdout
    assert skiffd.docker("port", "web", check=True).stdout.strip() == "80/tcp -> 127.0.0.1:18080"

    def fetch():
        r = skiffd.nsexec("wget", "-q", "-O", "-", "http://127.0.0.1:18080/", timeout=5)
        return r.stdout if r.returncode == 0 else None
    assert wait_for(fetch, timeout=10) == "served\n"


def test_join_another_containers_pid_and_network_namespaces(skiffd):
    skiffd.docker("run", "-d", "--name", "base", "busybox", "sleep", "300", check=True)
    ip = json.loads(skiffd.docker("inspect", "base").stdout)[0]["NetworkSettings"]["IPAddress"]
    r = skiffd.docker("run", "--rm", "--pid", "container:base", "--network", "container:base",
                      "busybox", "sh", "-c", "ps -o args; ip -4 addr show eth0", check=True)
    assert "sleep 300" in r.stdout
    assert ip and f"inet {ip}/" in r.stdout


def test_diff_and_update(skiffd):
    skiffd.docker("run", "-d", "--name", "dfc", "busybox", "sh", "-c",
                  "echo a > /newfile; mkdir /tmp/x; sleep 300", check=True)
    wait_for(lambda: "/newfile" in skiffd.docker("diff", "dfc").stdout)
    lines = skiffd.docker("diff", "dfc", check=True).stdout.splitlines()
    assert "A /newfile" in lines and "A /tmp/x" in lines
    assert not any(l.endswith(("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")) for l in lines)
    skiffd.docker("update", "--restart", "on-failure:3", "dfc", check=True)
    rp = json.loads(skiffd.docker("inspect", "dfc").stdout)[0]["HostConfig"]["RestartPolicy"]
    assert rp == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_cgroup_parent(skiffd):
    skiffd.docker("run", "-d", "--name", "cgp", "--cgroup-parent", "/skiff-e2e-parent", "busybox",
                  "sleep", "300", check=True)
    pid = json.loads(skiffd.docker("inspect", "cgp").stdout)[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert "/skiff-e2e-parent/" in f.read()
    r = skiffd.docker("stats", "--no-stream", "--format", "{{.PIDs}}", "cgp", check=True)
    assert r.stdout.strip() == "1"


def test_network_modes_none_and_host(skiffd):
    r = skiffd.docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link", check=True)
    assert [l.split(":")[1].strip() for l in r.stdout.splitlines()] == ["lo"]
    # host mode: the daemon's own namespace (a private one under test), with its bridge
    r = skiffd.docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link", check=True)
    names = [l.split(":")[1].strip() for l in r.stdout.splitlines()]
    assert "lo" in names and any(n.startswith("skiff0") for n in names)
    r = skiffd.docker("run", "--rm", "busybox", "cat", "/etc/hosts", check=True)
    assert "127.0.0.1\tlocalhost" in r.stdout


def test_bad_options_fail_at_create_and_warnings_are_returned(skiffd):
    # docker's create-time validation: exit 125, Docker's message, nothing made
    r = skiffd.docker("run", "--name", "badmem", "-m", "1m", "busybox", "true")
    assert r.returncode == 125, r
    assert "Minimum memory limit allowed is 6MB" in r.stderr
    assert skiffd.docker("ps", "-aq", "--filter", "name=badmem").stdout.strip() == ""
    r = skiffd.docker("create", "-m", "1m", "busybox", "true")
    assert r.returncode != 0 and "Minimum memory limit allowed is 6MB" in r.stderr
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""
    r = skiffd.docker("run", "--rm", "--workdir", "rel", "busybox", "true")
    assert r.returncode == 125 and "the working directory 'rel' is invalid" in r.stderr
    # create warnings reach the client (the CLI prints them)
    r = skiffd.docker("create", "--name", "oomwarn", "--oom-kill-disable", "busybox", "true")
    assert r.returncode == 0, r
    assert "WARNING: OOM killer is disabled for the container" in r.stderr
    c = skiffd.client.api.create_container("busybox", "true", host_config=skiffd.client.api.
                                           create_host_config(oom_kill_disable=True))
    assert any("OOM killer is disabled" in w for w in c["Warnings"])


def test_attached_stdin_larger_than_a_conmon_packet(skiffd, tmp_path):
    """docker run -i: all of a 3 MB stdin reaches the container (conmon
    reads its attach socket 32 KiB per packet)."""
    import hashlib
    import os
    data = os.urandom(3 * 1024 * 1024 + 12345)
    r = skiffd.docker("run", "--rm", "-i", "--network", "none", "busybox", "md5sum",
                      input=data, text=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split()[0] == hashlib.md5(data).hexdigest()
