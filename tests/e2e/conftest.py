"""The test daemon every e2e test uses.

``skiffd`` (function scope, cheap) hands out one private daemon per session:
own socket, data-root and exec-root under a temp dir, its own network
namespace (``ip netns`` + ``nsenter --net``, so bridges and iptables chains
never touch the host's or another test's), default registry
127.0.0.1:<unused port> so nothing reaches docker.io, busybox:latest
preloaded. After every test it removes the containers the test left, so the
per-test leak check stays clean. ``make_skiffd()`` starts an extra daemon a
test owns (for restart tests); ``runtime`` is the default runtime
(SKIFF_E2E_RUNTIME, default skiff-runtime when it runs containers, else runc).

The object: ``.sock``, ``.host`` ("unix://…"), ``.docker(*args, input=None,
check=False, timeout=60)`` → CompletedProcess of the real docker CLI,
``.client`` (docker.DockerClient), ``.restart()``, ``.stop()``, ``.nsexec(*cmd)`` (a command in the
daemon's network namespace).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
SKIFFD = shutil.which("skiffd") or "/usr/local/bin/skiffd"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _default_runtime() -> str:
    rt = os.environ.get("SKIFF_E2E_RUNTIME")
    if rt:
        return rt
    return "skiff-runtime"


class Daemon:
    def __init__(self, root: str, runtime: str | None = None, extra_args=()):
        self.root = root
        self.data_root = os.path.join(root, "data")
        self.exec_root = os.path.join(root, "run")
        self.sock = os.path.join(root, "skiff.sock")
        self.host = "unix://" + self.sock
        self.netns = "skiff-e2e-" + secrets.token_hex(4)
        # a cgroup parent of its own: skiffd makes it at start, removes it at stop
        self.cgroup_parent = "skiff-e2e-" + secrets.token_hex(4)
        self.runtime = runtime or _default_runtime()
        self.registry = f"127.0.0.1:{_free_port()}"
        self.extra_args = list(extra_args)
        self.docker_config = os.path.join(root, "docker-config")
        os.makedirs(self.docker_config, exist_ok=True)
        with open(os.path.join(self.docker_config, "config.json"), "w") as f:
            json.dump({}, f)
        self.proc = None
        self.log_path = os.path.join(root, "skiffd.log")
        self._client = None

    # -------------------------------------------------------------- life
    def preload(self):
        from skiff.image.service import ImageService
        from skiff.testing.images import load_busybox
        load_busybox(ImageService(self.data_root))

    def start(self):
        if not os.path.exists(f"/run/netns/{self.netns}"):
            subprocess.run(["ip", "netns", "add", self.netns], check=True)
            subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "--", SKIFFD,
               "--config-file", os.path.join(self.root, "daemon.json"),
               "--data-root", self.data_root, "--exec-root", self.exec_root,
               "-H", self.host, "--default-runtime", self.runtime,
               "--default-registry", self.registry] + self.extra_args
        cfg = os.path.join(self.root, "daemon.json")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                json.dump({"cgroup-parent": self.cgroup_parent}, f)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiffd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                if b"200" in s.recv(100):
                    s.close()
                    return self
                s.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("skiffd did not answer in 30 s:\n" + self.log())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    # -------------------------------------------------------------- clients
    def env(self) -> dict:
        e = dict(os.environ)
        e.update({"DOCKER_HOST": self.host, "DOCKER_CONFIG": self.docker_config,
                  "DOCKER_CLI_HINTS": "false"})
        e.pop("DOCKER_CONTEXT", None)
        return e

    def docker(self, *args, input=None, check=False, timeout=60, text=True):
        r = subprocess.run([DOCKER, "-H", self.host] + [str(a) for a in args], input=input,
                           capture_output=True, text=text, timeout=timeout, env=self.env())
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} → {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    @property
    def client(self):
        if self._client is None:
            import docker
            self._client = docker.DockerClient(base_url=self.host, timeout=60)
        return self._client

    def nsexec(self, *cmd, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "--"] + list(cmd), **kw)

    # -------------------------------------------------------------- cleanup
    def remove_all_containers(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        r = self.docker("ps", "-aq", "--no-trunc", timeout=30)
        ids = r.stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)

    def destroy(self):
        try:
            self.remove_all_containers()
        finally:
            self.stop()
            _kill_leftovers(self.exec_root, self.cgroup_parent)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


def _kill_leftovers(exec_root: str, cgroup_parent: str):
    """Last resort after a failed test: monitors (and so containers) of this
    daemon that are still alive are killed, by the pids they recorded."""
    base = os.path.join(exec_root, "conmon")
    try:
        ids = os.listdir(base)
    except OSError:
        return
    for cid in ids:
        for name in ("pid", "conmon.pid"):
            try:
                with open(os.path.join(base, cid, name)) as f:
                    pid = int(f.read().strip())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
    time.sleep(0.2)
    for d in ("/sys/fs/cgroup",):
        for ctrl in [""] + os.listdir(d):
            p = os.path.join(d, ctrl, cgroup_parent)
            if os.path.isdir(p):
                for cid in ids:
                    try:
                        os.rmdir(os.path.join(p, cid))
                    except OSError:
                        pass
                try:
                    os.rmdir(p)
                except OSError:
                    pass


@pytest.fixture(scope="session")
def _skiffd_session():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tempfile.mkdtemp(prefix="skiff-e2e-")
    d = Daemon(root)
    try:
        d.preload()
        d.start()
        yield d
    finally:
        d.destroy()


@pytest.fixture
def skiffd(_skiffd_session):
    """The session's daemon; containers a test leaves are removed after it."""
    d = _skiffd_session
    if d.proc is None or d.proc.poll() is not None:
        d.start()
    yield d
    # shown by pytest only when the test failed
    print(f"--- skiffd log ({d.log_path}), last lines ---\n{d.log()[-2500:]}")
    d.remove_all_containers()


@pytest.fixture
def make_skiffd(tmp_path):
    """``make_skiffd(runtime=None, extra_args=())`` → a started private daemon
    owned by the test (destroyed after it)."""
    made = []

    def make(runtime=None, extra_args=()):
        root = tempfile.mkdtemp(prefix="skiff-e2e-own-")
        d = Daemon(root, runtime=runtime, extra_args=extra_args)
        made.append(d)
        d.preload()
        return d.start()
    yield make
    for d in made:
        d.destroy()
