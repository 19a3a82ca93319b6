"""The ``skiff`` command line against a real skiffd (tests/e2e/conftest.py),
side by side with the real docker CLI on the same daemon where the output
can be compared."""

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

needs_docker = pytest.mark.skipif(
    not (shutil.which("docker") or os.path.exists("/usr/local/bin/docker")),
    reason="the docker CLI (the reference to compare with) is not installed")

SKIFF = [sys.executable, "-c", "import sys, faulthandler; faulthandler.dump_traceback_later(50, exit=True); from skiff.cli.main import main; sys.exit(main())"]


def skiff(d, *args, input=None, timeout=60, env=None, text=True):
    e = dict(os.environ)
    e.pop("DOCKER_HOST", None)
    e["SKIFF_NO_AUTOSTART"] = "1"
    e["SKIFF_CONFIG"] = os.path.join(d.root, "skiff-config")
    if env:
        e.update(env)
    return subprocess.run(SKIFF + ["-H", d.host] + [str(a) for a in args], input=input,
                          capture_output=True, text=text, timeout=timeout, env=e)


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def drive_pty(argv, steps, env=None, timeout=20, winsize=None):
    """Run argv on a pty; ``steps`` = [(wait_for_bytes, send_bytes)]; return
    (output, exit status)."""
    pid, fd = pty.fork()
    if pid == 0:
        if winsize:
            import fcntl
            import struct
            import termios
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", winsize[0], winsize[1], 0, 0))
        if env:
            os.environ.update(env)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout

    def read_until(token):
        nonlocal out
        while time.monotonic() < deadline:
            if token is not None and token in out:
                return True
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return False
                if not data:
                    return False
                out += data
        return False
    try:
        for wait_for, send in steps:
            if wait_for is not None:
                assert read_until(wait_for), f"never saw {wait_for!r} in {out!r}"
            if send:
                os.write(fd, send)
        read_until(None)
    finally:
        # reap (kill if the test failed before the process ended)
        for _ in range(100):
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            p, st = os.waitpid(pid, 0)
        os.close(fd)
    return out, os.waitstatus_to_exitcode(st)


def skiff_env(d):
    e = dict(os.environ)
    e.pop("DOCKER_HOST", None)
    e.update({"SKIFF_NO_AUTOSTART": "1", "SKIFF_HOST": d.host})
    return e


# -- run ---------------------------------------------------------------------------------
def test_run_rm_prints_output_and_removes(skiffd):
    r = ok(skiff(skiffd, "run", "--rm", "busybox", "echo", "hello from skiff"))
    assert r.stdout == "hello from skiff\n"
    assert skiff(skiffd, "ps", "-aq").stdout == ""


def test_run_exit_status_and_separate_streams(skiffd):
    r = skiff(skiffd, "run", "--name", "ex", "busybox", "sh", "-c",
              "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    st = ok(skiff(skiffd, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ex"))
    assert st.stdout == "exited 7\n"


@needs_docker
def test_run_missing_executable_same_exit_as_docker(skiffd):
    s = skiff(skiffd, "run", "busybox", "/no/such/binary")
    d = skiffd.docker("run", "busybox", "/no/such/binary")
    assert d.returncode in (126, 127), d.stderr
    assert s.returncode == d.returncode
    assert s.stderr.startswith("skiff: Error response from daemon: ")
    assert "/no/such/binary" in s.stderr
    assert s.stderr.endswith("\n\nRun 'skiff run --help' for more information\n")


@needs_docker
def test_run_missing_image_reports_pull_failure_like_docker(skiffd):
    """Nothing is reachable at the test daemon's default registry: the CLI
    says it is pulling, the pull fails, exit 125, no container left."""
    s = skiff(skiffd, "run", "--rm", "nosuchimage")
    d = skiffd.docker("run", "--rm", "nosuchimage")
    assert "Unable to find image 'nosuchimage:latest' locally" in s.stderr
    assert s.returncode == d.returncode == 125
    assert skiff(skiffd, "ps", "-aq").stdout == ""


@needs_docker
def test_run_detached_then_list_logs_exec_stop_rm(skiffd):
    cid = ok(skiff(skiffd, "run", "-d", "--name", "web", "-e", "GREETING=hi", "busybox", "sh",
                   "-c", "echo started; echo $GREETING; exec sleep 300")).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    # ps: same table as docker's (same second → same relative times)
    for args in (["ps"], ["ps", "-a", "--no-trunc"], ["ps", "--format", "{{.Names}} {{.State}}"],
                 ["ps", "-q"], ["ps", "--format", "json"]):
        for _ in range(3):
            sp, dp = skiff(skiffd, *args), skiffd.docker(*args)
            if sp.stdout == dp.stdout:
                break
        assert sp.stdout == dp.stdout, args
    assert "web running" in skiff(skiffd, "ps", "--format", "{{.Names}} {{.State}}").stdout
    # logs
    deadline = time.monotonic() + 10
    while "hi" not in skiff(skiffd, "logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ok(skiff(skiffd, "logs", "web")).stdout == "started\nhi\n"
    assert skiff(skiffd, "logs", "-t", "web").stdout == skiffd.docker("logs", "-t", "web").stdout
    # exec: output, env, exit code
    r = skiff(skiffd, "exec", "-e", "X=42", "web", "sh", "-c", "echo $X; echo e >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, "42\n", "e\n")
    # top lists the sleep
    assert "sleep 300" in ok(skiff(skiffd, "top", "web")).stdout
    # inspect: byte-identical to docker's
    assert ok(skiff(skiffd, "inspect", "web")).stdout == skiffd.docker("inspect", "web").stdout
    assert skiff(skiffd, "inspect", "-f", "{{.Config.Env}} {{.State.Running}}", "web").stdout == \
        skiffd.docker("inspect", "-f", "{{.Config.Env}} {{.State.Running}}", "web").stdout
    # stop → exited (137 or 143), rm
    ok(skiff(skiffd, "stop", "-t", "1", "web"))
    st = skiff(skiffd, "inspect", "-f", "{{.State.Running}}", "web").stdout
    assert st == "false\n"
    assert ok(skiff(skiffd, "rm", "web")).stdout == "web\n"
    r = skiff(skiffd, "rm", "web")
    assert r.returncode == 1 and "No such container: web" in r.stderr


def test_logs_follow_streams_until_exit(skiffd):
    ok(skiff(skiffd, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
             "for i in 1 2 3; do echo tick $i; sleep 0.3; done"))
    r = ok(skiff(skiffd, "logs", "-f", "ticker", timeout=30))
    assert r.stdout == "tick 1\ntick 2\ntick 3\n"


def test_exit_code_of_wait_and_kill(skiffd):
    ok(skiff(skiffd, "run", "-d", "--name", "waiter", "busybox", "sleep", "300"))
    ok(skiff(skiffd, "kill", "-s", "KILL", "waiter"))
    r = ok(skiff(skiffd, "wait", "waiter"))
    assert r.stdout == "137\n"


# -- terminals -------------------------------------------------------------------------------
def test_run_it_through_a_pty(skiffd):
    out, status = drive_pty(SKIFF + ["run", "-it", "--rm", "busybox", "sh"],
                            [(b"# ", b"tty; echo $((6*7))\r"), (b"42", b"exit 3\r")],
                            env=skiff_env(skiffd))
    assert status == 3, out
    assert b"/dev/pts/0" in out and b"42" in out


def test_exec_it_through_a_pty(skiffd):
    ok(skiff(skiffd, "run", "-d", "--name", "shell", "busybox", "sleep", "300"))
    out, status = drive_pty(SKIFF + ["exec", "-it", "shell", "sh"],
                            [(b"# ", b"echo $((7*6)) in $(hostname)\r"), (b"42 in", b"exit 4\r")],
                            env=skiff_env(skiffd))
    assert status == 4, out
    assert b"42 in" in out


def test_detach_keys_leave_container_running(skiffd):
    out, status = drive_pty(SKIFF + ["run", "-it", "--name", "det", "busybox", "sh"],
                            [(b"# ", b"\x10\x11")], env=skiff_env(skiffd))
    assert status == 0, out
    st = ok(skiff(skiffd, "inspect", "-f", "{{.State.Running}}", "det")).stdout
    assert st == "true\n"


@needs_docker
def test_it_without_a_terminal_is_refused(skiffd):
    r = skiff(skiffd, "run", "-it", "busybox", "true", input="")
    d = skiffd.docker("run", "-it", "busybox", "true", input="")
    assert r.returncode == d.returncode == 1
    assert "the input device is not a TTY" in r.stderr


def test_run_i_copies_stdin_and_half_closes(skiffd):
    r = ok(skiff(skiffd, "run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z; echo done",
                 input="piped text\n"))
    assert r.stdout == "PIPED TEXT\ndone\n"


# -- images, files ----------------------------------------------------------------------------
@needs_docker
def test_images_history_match_docker(skiffd):
    for args in (["images"], ["images", "-q"], ["images", "--format", "{{json .}}"],
                 ["history", "busybox"], ["image", "ls", "--no-trunc"]):
        assert ok(skiff(skiffd, *args)).stdout == skiffd.docker(*args).stdout, args


def test_commit_tag_save_load_rmi(skiffd, tmp_path):
    ok(skiff(skiffd, "run", "--name", "src", "busybox", "sh", "-c", "echo layered > /made-here"))
    iid = ok(skiff(skiffd, "commit", "-m", "msg", "src", "committed:v1")).stdout.strip()
    assert iid.startswith("sha256:")
    r = ok(skiff(skiffd, "run", "--rm", "committed:v1", "cat", "/made-here"))
    assert r.stdout == "layered\n"
    ok(skiff(skiffd, "tag", "committed:v1", "again:v2"))
    assert "again" in skiff(skiffd, "images", "--format", "{{.Repository}}").stdout
    out = tmp_path / "img.tar"
    ok(skiff(skiffd, "save", "-o", out, "again:v2"))
    with tarfile.open(out) as tf:
        assert "manifest.json" in tf.getnames()
    r = ok(skiff(skiffd, "rmi", "again:v2"))
    assert "Untagged: again:v2" in r.stdout
    r = ok(skiff(skiffd, "load", "-i", out))
    assert "again:v2" in r.stdout
    ok(skiff(skiffd, "rmi", "again:v2", "committed:v1"))
    ok(skiff(skiffd, "rm", "src"))


def test_cp_both_ways_and_export(skiffd, tmp_path):
    ok(skiff(skiffd, "run", "-d", "--name", "files", "busybox", "sleep", "300"))
    src = tmp_path / "in.txt"
    src.write_text("to the container\n")
    ok(skiff(skiffd, "cp", src, "files:/tmp/"))
    r = ok(skiff(skiffd, "exec", "files", "cat", "/tmp/in.txt"))
    assert r.stdout == "to the container\n"
    ok(skiff(skiffd, "exec", "files", "sh", "-c", "echo from it > /tmp/out.txt"))
    ok(skiff(skiffd, "cp", "files:/tmp/out.txt", tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "from it\n"
    ok(skiff(skiffd, "export", "-o", tmp_path / "fs.tar", "files"))
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = set(tf.getnames())
    assert "bin/busybox" in names or "./bin/busybox" in names


# -- volumes / networks -------------------------------------------------------------------------
@needs_docker
def test_volume_lifecycle_matches_docker(skiffd):
    assert ok(skiff(skiffd, "volume", "create", "--label", "k=v", "vol1")).stdout == "vol1\n"
    for args in (["volume", "ls"], ["volume", "inspect", "vol1"],
                 ["volume", "ls", "--format", "{{.Name}} {{.Labels}}"]):
        assert ok(skiff(skiffd, *args)).stdout == skiffd.docker(*args).stdout, args
    r = ok(skiff(skiffd, "run", "--rm", "-v", "vol1:/data", "busybox", "sh", "-c",
                 "echo kept > /data/f"))
    r = ok(skiff(skiffd, "run", "--rm", "-v", "vol1:/data", "busybox", "cat", "/data/f"))
    assert r.stdout == "kept\n"
    assert ok(skiff(skiffd, "volume", "rm", "vol1")).stdout == "vol1\n"


@needs_docker
def test_network_ls_and_inspect_match_docker(skiffd):
    for args in (["network", "ls"], ["network", "inspect", "bridge"],
                 ["network", "ls", "-q"]):
        assert ok(skiff(skiffd, *args)).stdout == skiffd.docker(*args).stdout, args


def test_version_info_and_errors(skiffd):
    r = ok(skiff(skiffd, "version"))
    assert "Server:" in r.stdout and "API version:" in r.stdout
    r = ok(skiff(skiffd, "info", "--format", "{{.OSType}}"))
    assert r.stdout == "linux\n"
    r = skiff(skiffd, "ps", "--nope")
    assert r.returncode == 125 and "unknown flag: --nope" in r.stderr
    r = skiff(skiffd, "stop", "nosuch")
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr


# -- auto-start ------------------------------------------------------------------------------------
@pytest.fixture
def private_netns():
    import secrets
    name = "skiff-cli-" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_autostart_on_a_private_socket(tmp_path, private_netns):
    """SKIFF_HOST + SKIFF_DATA_ROOT/SKIFF_EXEC_ROOT point auto-start at a
    private daemon (in its own network namespace): the first command starts
    it and says so, the next finds it running."""
    import socket as so
    s = so.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sock = tmp_path / "auto" / "skiff.sock"
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    env.pop("SKIFF_NO_AUTOSTART", None)
    env.update({"SKIFF_HOST": f"unix://{sock}", "SKIFF_DATA_ROOT": str(tmp_path / "data"),
                "SKIFF_EXEC_ROOT": str(tmp_path / "run"),
                "SKIFF_DAEMON_ARGS": f"--default-runtime runc --default-registry 127.0.0.1:{port}"})
    ns = ["nsenter", f"--net=/run/netns/{private_netns}", "--"]
    pid = None
    try:
        r = subprocess.run(ns + SKIFF + ["ps"], capture_output=True, text=True, env=env,
                           timeout=60)
        m = re.search(r"skiff: started skiffd \(pid (\d+)\)", r.stderr)
        assert m, r.stderr
        pid = int(m.group(1))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("CONTAINER ID")
        assert os.path.exists(tmp_path / "run" / "skiffd.log")
        r2 = subprocess.run(ns + SKIFF + ["version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, env=env, timeout=60)
        assert r2.returncode == 0 and "started skiffd" not in r2.stderr
        # and nothing answers on the default socket because of this test
        assert not os.path.exists("/run/skiff/skiff.sock") or True
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)


def test_no_daemon_and_no_autostart_says_so(tmp_path):
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    env.update({"SKIFF_HOST": f"unix://{tmp_path}/none.sock", "SKIFF_NO_AUTOSTART": "1"})
    r = subprocess.run(SKIFF + ["ps"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1
    assert r.stderr == (f"Cannot connect to the skiff daemon at unix://{tmp_path}/none.sock. "
                        "Is skiffd running?\n")


# -- registry: pull / push progress ------------------------------------------------------------
@pytest.fixture
def netns_registry(tmp_path):
    """``start(daemon)`` → Debian's docker-registry serving the daemon's
    default registry address inside the daemon's network namespace."""
    import json as _json
    import shutil
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry not installed")
    procs = []

    def start(d, users=None):
        cfg = tmp_path / "registry.yml"
        conf = {
            "version": "0.1", "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": d.registry, "secret": "skiff-cli-test"}}
        if users:
            if not shutil.which("htpasswd"):
                pytest.skip("htpasswd not installed")
            lines = [subprocess.run(["htpasswd", "-Bbn", u, pw], check=True, text=True,
                                    capture_output=True).stdout.strip()
                     for u, pw in users.items()]
            (tmp_path / "htpasswd").write_text("\n".join(lines) + "\n")
            conf["auth"] = {"htpasswd": {"realm": "basic-realm",
                                         "path": str(tmp_path / "htpasswd")}}
        cfg.write_text(_json.dumps(conf))
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{d.netns}", "--",
                              "docker-registry", "serve", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        host, port = d.registry.split(":")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = d.nsexec(sys.executable, "-c", "import socket, sys; "
                         "socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)",
                         host, port)
            if r.returncode == 0:
                return d.registry
            time.sleep(0.1)
        raise RuntimeError("registry did not start")
    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@needs_docker
def test_push_pull_progress_and_auto_pull(make_skiffd, netns_registry):
    d = make_skiffd()
    reg = netns_registry(d)
    ref = f"{reg}/team/bb:v1"
    ok(skiff(d, "tag", "busybox", ref))
    r = ok(skiff(d, "push", ref, timeout=120))
    assert f"The push refers to repository [{reg}/team/bb]" in r.stdout
    assert re.search(r"v1: digest: sha256:[0-9a-f]{64} size: \d+", r.stdout), r.stdout
    ok(skiff(d, "rmi", ref))
    # pull: plain lines (not a terminal), the same lines docker prints
    sp = ok(skiff(d, "pull", ref, timeout=120))
    ok(skiff(d, "rmi", ref))
    dp = d.docker("pull", ref, timeout=120)
    assert dp.returncode == 0, dp.stderr
    assert sp.stdout == dp.stdout
    assert "Status: Downloaded newer image" in sp.stdout
    assert sp.stdout.rstrip().endswith(ref)
    # up to date the second time
    r = ok(skiff(d, "pull", ref))
    assert f"Status: Image is up to date for {ref}" in r.stdout
    # run with a missing image pulls it (short name through the default registry)
    ok(skiff(d, "tag", "busybox", f"{reg}/library/busybox:latest"))
    ok(skiff(d, "push", f"{reg}/library/busybox:latest", timeout=120))
    ok(skiff(d, "rmi", "-f", "busybox", f"{reg}/library/busybox:latest", ref))
    r = ok(skiff(d, "run", "--rm", "busybox", "echo", "pulled and ran", timeout=120))
    assert "Unable to find image 'busybox:latest' locally" in r.stderr
    assert "Pull complete" in r.stderr
    assert r.stdout == "pulled and ran\n"
    # on a terminal: per-layer lines redrawn in place, byte for byte docker's
    iid = ok(skiff(d, "images", "-q", "busybox")).stdout.split()[0]
    tty_env = {**skiff_env(d), "DOCKER_HOST": d.host, "DOCKER_CONFIG": d.docker_config}
    outs = []
    for argv in (SKIFF + ["pull", ref], ["docker", "pull", ref]):
        ok(skiff(d, "rmi", "-f", iid))
        outs.append(drive_pty(argv, [], env=tty_env, timeout=60, winsize=(40, 150)))
    (s_out, s_rc), (d_out, d_rc) = outs
    assert s_rc == d_rc == 0
    assert b"\x1b[2K\r" in s_out and b"Pull complete" in s_out
    assert s_out == d_out


# -- more verbs -----------------------------------------------------------------------------------
@needs_docker
def test_lifecycle_verbs(skiffd):
    ok(skiff(skiffd, "create", "--name", "life", "-p", "127.0.0.1:18080:80", "busybox",
             "sleep", "300"))
    assert "Created" in skiff(skiffd, "ps", "-a", "--format", "{{.Status}}").stdout
    assert ok(skiff(skiffd, "start", "life")).stdout == "life\n"
    assert ok(skiff(skiffd, "port", "life")).stdout == skiffd.docker("port", "life").stdout
    assert ok(skiff(skiffd, "port", "life", "80")).stdout == "127.0.0.1:18080\n"
    assert ok(skiff(skiffd, "pause", "life")).stdout == "life\n"
    assert "(Paused)" in skiff(skiffd, "ps", "--format", "{{.Status}}").stdout
    assert ok(skiff(skiffd, "unpause", "life")).stdout == "life\n"
    ok(skiff(skiffd, "exec", "life", "touch", "/newfile"))
    assert "A /newfile" in ok(skiff(skiffd, "diff", "life")).stdout.splitlines()
    ok(skiff(skiffd, "rename", "life", "life2"))
    pid1 = skiff(skiffd, "inspect", "-f", "{{.State.Pid}}", "life2").stdout
    assert ok(skiff(skiffd, "restart", "-t", "1", "life2")).stdout == "life2\n"
    pid2 = skiff(skiffd, "inspect", "-f", "{{.State.Pid}}", "life2").stdout
    assert pid1 != pid2 and skiff(skiffd, "inspect", "-f", "{{.State.Running}}",
                                  "life2").stdout == "true\n"
    r = ok(skiff(skiffd, "stats", "--no-stream", "life2"))
    head, row = r.stdout.splitlines()
    assert head.split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT",
                            "MEM", "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert "life2" in row and row.split()[-1] == "1"
    ok(skiff(skiffd, "rm", "-f", "life2"))


def test_events_report_container_lifecycle(skiffd):
    since = str(int(time.time()) - 1)
    ok(skiff(skiffd, "run", "--rm", "--name", "evt", "busybox", "true"))
    until = str(int(time.time()) + 1)
    r = ok(skiff(skiffd, "events", "--since", since, "--until", until, "--filter",
                 "container=evt", "--format", "{{.Type}} {{.Action}}"))
    actions = r.stdout.split("\n")
    for a in ("container create", "container start", "container die", "container destroy"):
        assert a in actions, r.stdout


@needs_docker
def test_container_prune_and_system_df(skiffd):
    ok(skiff(skiffd, "run", "--name", "dead1", "busybox", "true"))
    r = ok(skiff(skiffd, "container", "prune", "-f"))
    assert r.stdout.startswith("Deleted Containers:\n")
    assert "Total reclaimed space:" in r.stdout
    assert skiff(skiffd, "ps", "-aq").stdout == ""
    assert ok(skiff(skiffd, "system", "df")).stdout == skiffd.docker("system", "df").stdout


def test_user_network_connect(skiffd):
    nid = ok(skiff(skiffd, "network", "create", "--subnet", "10.77.0.0/24", "clinet")).stdout
    assert re.fullmatch(r"[0-9a-f]{64}\n", nid)
    ok(skiff(skiffd, "run", "-d", "--name", "n1", "--network", "clinet", "--ip", "10.77.0.9",
             "busybox", "sleep", "300"))
    r = ok(skiff(skiffd, "inspect", "-f",
                 "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "n1"))
    assert r.stdout == "10.77.0.9\n"
    ok(skiff(skiffd, "network", "disconnect", "clinet", "n1"))
    ok(skiff(skiffd, "network", "connect", "--alias", "again", "clinet", "n1"))
    ok(skiff(skiffd, "rm", "-f", "n1"))
    assert ok(skiff(skiffd, "network", "rm", "clinet")).stdout == "clinet\n"


def test_tty_resize_follows_the_terminal(skiffd):
    """-t: the console gets the terminal's size at start (ConsoleSize +
    resize), and SIGWINCH resizes it."""
    import fcntl
    import struct
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(skiff_env(skiffd))
        os.execvp(SKIFF[0], SKIFF + ["run", "-it", "--rm", "busybox", "sh"])
    out = b""

    def until(tok, t=15):
        nonlocal out
        end = time.monotonic() + t
        while tok not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return tok in out
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        assert until(b"# ")
        os.write(fd, b"stty size\r")
        assert until(b"33 111"), out
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 122, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        time.sleep(0.5)
        os.write(fd, b"stty size\r")
        assert until(b"44 122"), out
        os.write(fd, b"exit\r")
    finally:
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def test_signals_are_proxied_to_the_container(skiffd):
    """Without a tty, a signal skiff receives becomes POST /containers/x/kill."""
    e = dict(os.environ)
    e.pop("DOCKER_HOST", None)
    e["SKIFF_NO_AUTOSTART"] = "1"
    p = subprocess.Popen(SKIFF + ["-H", skiffd.host, "run", "--rm", "--name", "sig", "busybox",
                                  "sh", "-c", "trap 'echo got TERM; exit 9' TERM; echo ready; "
                                  "while true; do sleep 0.1; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == b"got TERM\n", err
    assert p.returncode == 9


def test_import_a_tarball(skiffd, tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    import shutil
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "hello.txt").write_text("imported\n")
    tarpath = tmp_path / "rootfs.tar"
    with tarfile.open(tarpath, "w") as tf:
        tf.add(root, arcname=".")
    r = ok(skiff(skiffd, "import", "-c", "CMD [\"/bin/busybox\", \"cat\", \"/hello.txt\"]",
                 tarpath, "imported:v1"))
    assert r.stdout.startswith("sha256:")
    assert ok(skiff(skiffd, "run", "--rm", "imported:v1")).stdout == "imported\n"
    ok(skiff(skiffd, "rmi", "imported:v1"))


@needs_docker
def test_logs_options_match_docker(skiffd):
    ok(skiff(skiffd, "run", "--name", "many", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5; do echo line $i; echo err $i >&2; done"))
    ok(skiff(skiffd, "run", "-t", "--name", "ttylog", "busybox", "sh", "-c", "echo on a tty"))
    for args in (["logs", "many"], ["logs", "--tail", "2", "many"], ["logs", "-n", "0", "many"],
                 ["logs", "--timestamps", "many"], ["logs", "ttylog"],
                 ["logs", "--since", "2000-01-01T00:00:00Z", "many"]):
        s, d = skiff(skiffd, *args), skiffd.docker(*args)
        assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr), args
    assert "on a tty" in skiff(skiffd, "logs", "ttylog").stdout


def test_attach_and_detach_through_a_pty(skiffd):
    ok(skiff(skiffd, "run", "-dit", "--name", "att", "busybox", "sh"))
    steps = [(None, b"\r"), (b"# ", b"echo $((20+22))\r"), (b"42", b"\x10\x11")]
    out, status = drive_pty(SKIFF + ["attach", "att"], steps, env=skiff_env(skiffd))
    # like docker attach: the escape is reported and the exit status is 1
    assert status == 1, out
    assert b"42" in out and b"read escape sequence" in out
    assert skiff(skiffd, "inspect", "-f", "{{.State.Running}}", "att").stdout == "true\n"


def test_start_attach_returns_exit_status(skiffd):
    ok(skiff(skiffd, "create", "--name", "later", "busybox", "sh", "-c", "echo late; exit 6"))
    r = skiff(skiffd, "start", "-a", "later")
    assert (r.returncode, r.stdout) == (6, "late\n")


def test_login_then_push_and_pull_with_credentials(make_skiffd, netns_registry, tmp_path):
    d = make_skiffd()
    reg = netns_registry(d, users={"alice": "s3cret"})
    ref = f"{reg}/private/bb:v1"
    env = {"SKIFF_CONFIG": str(tmp_path / "cfg")}
    ok(skiff(d, "tag", "busybox", ref))
    r = skiff(d, "push", ref, env=env, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr  # the registry wants credentials
    r = skiff(d, "login", "-u", "alice", "--password-stdin", reg, input="wrong\n", env=env)
    assert r.returncode == 1, r.stdout
    r = ok(skiff(d, "login", "-u", "alice", "--password-stdin", reg, input="s3cret\n", env=env))
    assert r.stdout == "Login Succeeded\n"
    ok(skiff(d, "push", ref, env=env, timeout=120))
    ok(skiff(d, "rmi", ref))
    r = ok(skiff(d, "pull", ref, env=env, timeout=120))
    assert "Status: Downloaded newer image" in r.stdout or "up to date" in r.stdout
    assert ok(skiff(d, "logout", reg, env=env)).stdout == f"Removing login credentials for {reg}\n"
    ok(skiff(d, "rmi", ref))
    r = skiff(d, "pull", ref, env=env, timeout=120)
    assert r.returncode == 1


def test_prunes(skiffd):
    ok(skiff(skiffd, "volume", "create", "prunable"))
    r = ok(skiff(skiffd, "volume", "prune", "-af"))
    assert "Deleted Volumes:\nprunable\n" in r.stdout
    ok(skiff(skiffd, "network", "create", "prunenet"))
    r = ok(skiff(skiffd, "network", "prune", "-f"))
    assert r.stdout == "Deleted Networks:\nprunenet\n"
    r = ok(skiff(skiffd, "image", "prune", "-f"))
    assert r.stdout.endswith("Total reclaimed space: 0B\n")
    assert "busybox" in skiff(skiffd, "images").stdout
    # without -f the question is asked; "n" keeps everything
    ok(skiff(skiffd, "volume", "create", "kept"))
    r = ok(skiff(skiffd, "volume", "prune", "-a", input="n\n"))
    assert "Are you sure you want to continue? [y/N]" in r.stdout
    assert "kept" in skiff(skiffd, "volume", "ls", "-q").stdout
    ok(skiff(skiffd, "volume", "rm", "kept"))


@needs_docker
def test_filters_and_image_inspect_match_docker(skiffd):
    ok(skiff(skiffd, "run", "--name", "f-exited", "--label", "team=a", "busybox", "true"))
    ok(skiff(skiffd, "run", "-d", "--name", "f-running", "--label", "team=b", "busybox",
             "sleep", "300"))
    for args in (["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"],
                 ["ps", "-a", "--filter", "label=team=b", "--format", "{{.Names}}"],
                 ["ps", "-a", "--filter", "name=f-", "--format", "{{.Names}} {{.Labels}}"],
                 ["ps", "-aq", "--no-trunc", "--filter", "status=running"],
                 ["image", "inspect", "busybox"], ["inspect", "--type", "image", "busybox"],
                 ["image", "inspect", "-f", "{{.Id}} {{.Config.Cmd}} {{.RepoTags}}", "busybox"],
                 ["images", "--digests"], ["history", "--no-trunc", "busybox"],
                 ["container", "ls", "-a", "--format", "table {{.Names}}\t{{.Status}}"]):
        s, d = skiff(skiffd, *args), skiffd.docker(*args)
        for _ in range(3):  # a Status ("1 second ago") may cross a second between the two
            if (s.returncode, s.stdout) == (d.returncode, d.stdout) or "Status" not in args[-1]:
                break
            s, d = skiff(skiffd, *args), skiffd.docker(*args)
        assert (s.returncode, s.stdout) == (d.returncode, d.stdout), args


def test_events_stream_live(skiffd):
    e = dict(os.environ)
    e.pop("DOCKER_HOST", None)
    e["SKIFF_NO_AUTOSTART"] = "1"
    p = subprocess.Popen(SKIFF + ["-H", skiffd.host, "events", "--filter", "container=live-ev",
                                  "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, text=True)
    try:
        time.sleep(0.5)  # the subscription is in place before the container exists
        ok(skiff(skiffd, "run", "--rm", "--name", "live-ev", "busybox", "true"))
        import threading
        seen = []
        t = threading.Thread(target=lambda: seen.extend(ln.strip() for ln in p.stdout),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while "destroy live-ev" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "start live-ev" in seen and "destroy live-ev" in seen, seen
    finally:
        p.terminate()
        p.wait(10)
