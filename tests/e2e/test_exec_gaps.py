"""docker exec as Docker does it where it is easy to get wrong: a process
that cannot start (Docker's message on stdout, exit 126/127, with and
without a TTY, through the CLI and docker-py), and exec'd processes that
outlive a restart of the daemon (conmon holds them, as the shim does)."""

import json
import os
import subprocess
import time

import docker
import pytest

NOT_FOUND = ('OCI runtime exec failed: exec failed: unable to start container process: '
             'exec: "nope": executable file not found in $PATH: unknown')
DENIED = ('OCI runtime exec failed: exec failed: unable to start container process: '
          'exec: "/etc/passwd": permission denied: unknown')


@pytest.fixture
def box(skiffd):
    skiffd.docker("run", "-d", "--name", "gaps", "busybox", "sleep", "300", check=True)
    return "gaps"


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
@pytest.mark.parametrize("cmd,code,msg", [("nope", 127, NOT_FOUND), ("/etc/passwd", 126, DENIED)],
                         ids=["not-found", "not-executable"])
def test_exec_that_cannot_start_prints_dockers_error(skiffd, box, tty, cmd, code, msg):
    r = skiffd.docker("exec", *(["-t"] if tty else []), box, cmd, text=False)
    # dockerd writes the start error on the stdout stream, "\r\n"-ended
    assert (r.returncode, r.stdout, r.stderr) == (code, (msg + "\r\n").encode(), b"")


def test_exec_with_an_unknown_user(skiffd, box):
    # dockerd: an error before the process runs is written on the stream, code 126
    r = skiffd.docker("exec", "-u", "nosuchuser", box, "true", text=False)
    assert (r.returncode, r.stdout) == (
        126, b"unable to find user nosuchuser: no matching entries in passwd file\r\n")


def test_exec_that_cannot_start_through_docker_py(skiffd, box):
    c = skiffd.client.containers.get(box)
    res = c.exec_run(["nope"])
    assert res.exit_code == 127
    assert res.output.decode() == NOT_FOUND + "\r\n"
    res = c.exec_run(["/etc/passwd"], tty=True)
    assert res.exit_code == 126
    assert res.output.decode() == DENIED + "\r\n"
    # the exec's record has the code too, and a good exec still works
    api = skiffd.client.api
    eid = api.exec_create(box, ["nope"])["Id"]
    api.exec_start(eid)
    info = api.exec_inspect(eid)
    assert (info["ExitCode"], info["Running"]) == (127, False)
    assert c.exec_run(["echo", "fine"]).output == b"fine\n"


def test_detached_exec_that_cannot_start_is_an_api_error(skiffd, box):
    r = skiffd.docker("exec", "-d", box, "nope")
    assert r.returncode != 0
    assert r.stderr.strip() == "Error response from daemon: " + NOT_FOUND
    with pytest.raises(docker.errors.APIError) as ei:
        skiffd.client.containers.get(box).exec_run(["/etc/passwd"], detach=True)
    assert ei.value.status_code == 400 and DENIED in str(ei.value)


def test_detached_exec_exit_code_is_recorded(skiffd, box):
    api = skiffd.client.api
    eid = api.exec_create(box, ["sh", "-c", "exit 9"])["Id"]
    api.exec_start(eid, detach=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = api.exec_inspect(eid)
        if not info["Running"] and info["ExitCode"] is not None:
            break
        time.sleep(0.1)
    assert (info["Running"], info["ExitCode"]) == (False, 9)


def test_exec_stdin_and_output_in_bulk(skiffd, box):
    # input reaches the process whole (through the monitor in 32 KiB packets)
    data = os.urandom(300_000)
    r = skiffd.docker("exec", "-i", box, "sh", "-c", "cat > /tmp/in; wc -c < /tmp/in; md5sum /tmp/in",
                      input=data, text=False, check=True)
    import hashlib
    assert r.stdout.split()[:2] == [b"300000", hashlib.md5(data).hexdigest().encode()]
    r = skiffd.docker("exec", box, "sh", "-c", "head -c 5000000 /dev/zero; echo done >&2",
                      text=False, check=True)
    assert (len(r.stdout), r.stderr) == (5_000_000, b"done\n")


def test_exec_it_detach_keys_leave_the_process_running(skiffd, box):
    from tests.e2e.helpers_pty import run_in_pty
    # the docker CLI catches its detach keys itself (and says so, exit 1)
    out, code = run_in_pty(["docker", "-H", skiffd.host, "exec", "-it", box, "sh", "-c",
                            "echo ready; exec sleep 777"], skiffd.env(),
                           [(b"ready", b"\x10\x11")])
    assert (code, out.replace(b"\r", b"").split(b"\n")[1]) == (1, b"read escape sequence"), out
    assert "sleep 777" in _procs(skiffd, box).values()
    # an API client that sends them: the daemon ends the session, the process goes on
    api = skiffd.client.api
    eid = api.exec_create(box, ["sh", "-c", "echo ready; exec sleep 778"], stdin=True, tty=True,
                          detach_keys="ctrl-x")["Id"]
    sock = api.exec_start(eid, tty=True, socket=True)._sock
    sock.settimeout(20)
    got = b""
    while b"ready" not in got:
        got += sock.recv(100)
    sock.sendall(b"\x18")
    while sock.recv(100):
        pass
    sock.close()
    info = api.exec_inspect(eid)
    assert info["Running"] is True and info["ExitCode"] is None
    assert "sleep 778" in _procs(skiffd, box).values()
    r = skiffd.docker("exec", "--detach-keys", "ctrl-", box, "true")
    assert r.returncode != 0 and "Invalid" in r.stderr


def _procs(d, name):
    """{pid: command} of the container's processes, from docker top."""
    out = d.docker("top", name, "-eo", "pid,args", check=True).stdout.splitlines()[1:]
    return {int(l.split(None, 1)[0]): l.split(None, 1)[1].strip() for l in out if l.strip()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_exec_processes_survive_a_daemon_restart(make_skiffd):
    d = make_skiffd()
    d.docker("run", "-d", "--name", "keep", "busybox", "sleep", "300", check=True)
    d.docker("exec", "-d", "keep", "sleep", "1000", check=True)
    # a detached exec that keeps writing: its output has somewhere to go
    d.docker("exec", "-d", "keep", "sh", "-c", "while true; do echo tick; sleep 0.1; done",
             check=True)
    # an attached session that is still running when the daemon goes away
    cli = subprocess.Popen([*_docker(d), "exec", "keep", "sh", "-c",
                            "while true; do echo tock; sleep 0.1; done"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=d.env())
    try:
        assert cli.stdout.readline() == b"tock\n"
        before = _procs(d, "keep")
        pids = {cmd: pid for pid, cmd in before.items()
                if cmd in ("sleep 1000", "sh -c while true; do echo tick; sleep 0.1; done",
                           "sh -c while true; do echo tock; sleep 0.1; done")}
        assert len(pids) == 3, before
        d.stop()
        # the attached client's stream ends with the daemon, as with dockerd
        cli.wait(timeout=30)
        time.sleep(1)       # the writers write into a monitor, not a dead pipe
        assert all(_alive(p) for p in pids.values()), pids
        d.start()
        after = _procs(d, "keep")
        for cmd, pid in pids.items():
            assert after.get(pid) == cmd, (cmd, after)
        assert d.docker("exec", "keep", "echo", "still-ok", check=True).stdout == "still-ok\n"
        d.docker("exec", "-d", "keep", "sleep", "999", check=True)
        assert "sleep 999" in _procs(d, "keep").values()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()
    # they go with the container
    d.docker("rm", "-f", "keep", check=True)
    time.sleep(0.5)
    assert not any(_alive(p) for p in pids.values())


def _docker(d):
    from tests.e2e.conftest import DOCKER
    return [DOCKER, "-H", d.host]
