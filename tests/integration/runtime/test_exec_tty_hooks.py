"""exec, terminals through --console-socket, and hooks, on every runtime."""

import array
import json
import os
import select
import socket
import subprocess
import time

from tests.integration.runtime.conftest import edit_config


def _running(runtime, make_bundle, args=("sleep", "60")):
    cid = runtime.create(make_bundle(list(args)))
    runtime.start(cid)
    return cid


def test_exec_exit_code_env_cwd_user(runtime, make_bundle):
    cid = _running(runtime, make_bundle)
    p = runtime.exec(cid, "sh", "-c", "exit 42")
    assert p.returncode == 42
    p = runtime.exec(cid, "/bin/sh", "-c", "echo $A; pwd; id -u; id -g",
                     opts=("--env", "A=b", "--cwd", "/tmp", "--user", "1000:100"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["b", "/tmp", "1000", "100"]
    runtime.delete(cid, force=True)


def test_exec_process_file_and_detach(runtime, make_bundle, tmp_path):
    cid = _running(runtime, make_bundle)
    proc = {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["sh", "-c", "echo from-process-json > /tmp/pj; sleep 30"],
            "env": ["PATH=/bin:/usr/bin"]}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    pidfile = tmp_path / "exec.pid"
    with open(tmp_path / "exec.out", "w") as log:
        p = runtime.exec(cid, opts=("--process", str(pf), "-d", "--pid-file", str(pidfile)),
                         stdout=log, stderr=log)
    assert p.returncode == 0, (tmp_path / "exec.out").read_text()
    pid = int(pidfile.read_text())
    time.sleep(0.3)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] in (b"sh", b"sleep")  # sh may exec its last command
    p = runtime.exec(cid, "cat", "/tmp/pj")
    assert p.stdout == "from-process-json\n"
    # the exec'd process is in the container's pid namespace
    p = runtime.exec(cid, "sh", "-c", "ps -o pid,args | grep -c 'sleep 30'")
    assert int(p.stdout.strip()) >= 1
    runtime.delete(cid, force=True)
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_exec_in_stopped_container_fails(runtime, make_bundle):
    cid = runtime.create(make_bundle(["true"]))
    runtime.start(cid)
    runtime.wait_exit(cid)
    p = runtime.exec(cid, "true")
    assert p.returncode != 0
    assert "stopped" in p.stderr or "not running" in p.stderr
    runtime.delete(cid)


def test_kill_all(runtime, make_bundle):
    cid = _running(runtime, make_bundle, ("sh", "-c", "sleep 100 & sleep 100 & wait"))
    time.sleep(0.3)
    runtime.kill(cid, "KILL", "--all")
    runtime.wait_exit(cid)
    runtime.delete(cid)


class ConsoleReceiver:
    """What conmon does: listen on a unix socket, receive the pty master."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.master = None

    def receive(self, timeout=20):
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            fds = array.array("i")
            msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_LEN(fds.itemsize))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
        assert len(fds) == 1, "no fd received"
        self.master = fds[0]
        return self.master

    def read_all(self, timeout=10, until=None):
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (until and until in out):
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        return out

    def close(self):
        if self.master is not None:
            os.close(self.master)
        self.sock.close()


def _create_with_console(runtime, bundle, sockpath):
    rcv = ConsoleReceiver(sockpath)
    cid = runtime.new_id()
    proc = subprocess.Popen(runtime.argv("create", "--bundle", bundle, "--console-socket",
                                         sockpath, cid),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        rcv.receive()
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return cid, rcv


def test_terminal_through_console_socket(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty; "
                                      "stty size; ls -l /dev/console | cut -c1"],
                         terminal=True)
    edit_config(bundle, lambda s: s["process"].update(consoleSize={"height": 30,
                                                                  "width": 100}))
    cid, rcv = _create_with_console(runtime, bundle, str(tmp_path / "console.sock"))
    try:
        runtime.start(cid)
        out = rcv.read_all(timeout=10, until=b"30 100").decode().replace("\r", "")
        runtime.wait_exit(cid)
    finally:
        rcv.close()
    lines = out.split("\n")
    assert lines[0].startswith("/dev/pts/")
    assert "stdin-is-tty" in lines
    assert "30 100" in lines
    runtime.delete(cid)


def test_exec_tty_through_console_socket(runtime, make_bundle, tmp_path):
    cid = _running(runtime, make_bundle)
    rcv = ConsoleReceiver(str(tmp_path / "exec.sock"))
    try:
        p = subprocess.Popen(runtime.argv("exec", "-t", "-d", "--console-socket",
                                          rcv.path, cid, "sh", "-c",
                                          "tty; echo interactive; read x; echo got=$x"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        rcv.receive()
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        os.write(rcv.master, b"hello\n")
        out = rcv.read_all(timeout=10, until=b"got=hello").decode().replace("\r", "")
    finally:
        rcv.close()
    assert "/dev/pts/" in out and "interactive" in out and "got=hello" in out
    runtime.delete(cid, force=True)


def test_hooks_run_in_order_with_state(runtime, make_bundle, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()
    bundle = make_bundle(["sh", "-c", "echo main; sleep 0.2"])

    def hook(name):
        return {"path": "/bin/sh",
                "args": ["sh", "-c", f"cat > {out}/{name}.json; "
                                     f"echo {name} >> {out}/order"]}

    def f(s):
        s["hooks"] = {n: [hook(n)] for n in ("prestart", "createRuntime", "createContainer",
                                             "poststart", "poststop")}
        s["hooks"]["startContainer"] = [{"path": "/bin/sh",
                                         "args": ["sh", "-c", "cat > /tmp/started.json"]}]
        s["annotations"] = {"org.skiff.test": "yes"}
    edit_config(bundle, f)
    cid = runtime.create(bundle)
    order = (out / "order").read_text().split()
    # runc 1.1 runs poststart already in `create` (fixed in runc 1.2)
    assert order[:3] == ["prestart", "createRuntime", "createContainer"]
    st = json.loads((out / "createRuntime.json").read_text())
    assert st["id"] == cid and st["status"] in ("creating", "created") and st["pid"] > 0
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle)
    assert st["annotations"] == {"org.skiff.test": "yes"}
    runtime.start(cid)
    runtime.wait_exit(cid)
    started = json.loads(open(os.path.join(bundle, "rootfs/tmp/started.json")).read())
    assert started["id"] == cid
    runtime.delete(cid)
    order = (out / "order").read_text().split()
    assert order == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    # runc 1.1 runs poststart in create, and says "created" there
    assert json.loads((out / "poststart.json").read_text())["status"] in ("running", "created")
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"


def test_failing_prestart_hook_fails_create(runtime, make_bundle):
    bundle = make_bundle(["true"])
    edit_config(bundle, lambda s: s.update(hooks={"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]}))
    p = runtime.cmd("create", "--bundle", bundle, runtime.new_id())
    assert p.returncode != 0
    assert runtime.list_ids() == []
