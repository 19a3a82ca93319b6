"""docker exec: attached, detached, exit codes, inspect, env/user/workdir, -it resize."""

import json
import time

import pytest

from tests.e2e.helpers_pty import run_in_pty


@pytest.fixture
def box(skiffd):
    skiffd.docker("run", "-d", "--name", "ex", "busybox", "sleep", "300", check=True)
    return "ex"


def test_exec_output_exit_code_and_inspect(skiffd, box):
    r = skiffd.docker("exec", box, "sh", "-c", "echo o; echo e >&2; exit 6")
    assert (r.returncode, r.stdout, r.stderr) == (6, "o\n", "e\n")
    api = skiffd.client.api
    eid = api.exec_create(box, ["sh", "-c", "exit 4"])["Id"]
    api.exec_start(eid)
    info = api.exec_inspect(eid)
    assert info["ExitCode"] == 4 and info["Running"] is False
    assert info["ContainerID"].startswith(skiffd.client.containers.get(box).id)
    assert info["ProcessConfig"]["entrypoint"] == "sh"


def test_exec_missing_binary_and_stopped_container(skiffd, box):
    r = skiffd.docker("exec", box, "no-such-binary")
    assert r.returncode in (126, 127)
    assert "executable file not found" in r.stdout + r.stderr
    skiffd.docker("kill", box, check=True)
    skiffd.docker("wait", box)
    r = skiffd.docker("exec", box, "true")
    assert r.returncode != 0 and "is not running" in r.stderr


def test_exec_env_user_workdir_stdin(skiffd, box):
    r = skiffd.docker("exec", "-e", "A=1", "-u", "1000:1000", "-w", "/tmp", box,
                      "sh", "-c", 'echo $A $(id -u):$(id -g) $(pwd)', check=True)
    assert r.stdout == "1 1000:1000 /tmp\n"
    r = skiffd.docker("exec", "-i", box, "tr", "a-z", "A-Z", input="piped\n", check=True)
    assert r.stdout == "PIPED\n"


def test_exec_detached(skiffd, box):
    skiffd.docker("exec", "-d", box, "sh", "-c", "echo bg > /tmp/bg.txt", check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = skiffd.docker("exec", box, "cat", "/tmp/bg.txt")
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert r.stdout == "bg\n"


def test_exec_tty_size(skiffd, box):
    out, code = run_in_pty(["docker", "-H", skiffd.host, "exec", "-it", box, "sh", "-c",
                            "sleep 0.5; stty size; exit 0"], skiffd.env(), [], size=(31, 97))
    assert code == 0, out
    assert out.decode(errors="replace").strip() == "31 97", out
    out, code = run_in_pty(["docker", "-H", skiffd.host, "run", "--rm", "-it", "busybox", "sh", "-c",
                            "sleep 0.5; stty size"], skiffd.env(), [], size=(24, 81))
    assert code == 0, out
    assert out.decode(errors="replace").strip() == "24 81", out
