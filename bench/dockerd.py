"""A private dockerd for the benches: started inside a network namespace of
its own, with its own containerd, state roots and cgroup parent, and taken
apart completely on stop.

    d = Dockerd().start()          # or: with Dockerd() as d:
    subprocess.run(d.cli("run", "--rm", "busybox", "true"))
    d.stop()

Layout (all under one temp dir, short so the unix socket path fits):
  <tmp>/data, <tmp>/exec          dockerd --data-root / --exec-root
  <tmp>/docker.sock, docker.pid   dockerd's API socket and pid file
  <tmp>/ctd/{root,state,sock}     a containerd of its own (dockerd 20.10 would
                                  otherwise adopt /run/containerd/containerd.sock
                                  if a system containerd ran)
Both daemons run in the network namespace ``skiffbench-<rand>`` (entered with
``nsenter --net``, not ``ip netns exec``: the latter remounts /sys, which hides
/sys/fs/cgroup from dockerd). dockerd's bridge, iptables chains and
route_localnet sysctl all live in that namespace, never on the host's.
Containers' cgroups go under ``/skiffbench-<rand>`` in every hierarchy
(``--cgroup-parent``, cgroupfs driver), removed on stop.

``python bench/dockerd.py --check`` runs a start / load busybox / run / stop
cycle and compares host snapshots (mounts, netns, links, cgroups, iptables,
processes: tests/leakcheck.py's) before and after.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DOCKER_CLI = shutil.which("docker") or "docker"
# host paths dockerd 20.10 / containerd 1.6 write whatever their flags say:
# the trust key, the plugin socket dir, the shims' socket dir. Removed on stop
# when this helper's dockerd created them.
HOST_DEBRIS = ("/etc/docker/key.json", "/run/docker/plugins", "/run/docker",
               "/run/containerd/s", "/run/containerd")

CONTAINERD_TOML = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


def _mountpoints_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split()[4].replace("\\040", " ")
            if p == prefix or p.startswith(prefix + "/"):
                out.append(p)
    return out


def _procs_matching(token: bytes) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def _cgroup_dirs(name: str) -> list[str]:
    if os.path.exists("/sys/fs/cgroup/cgroup.procs"):                # pure v2
        p = os.path.join("/sys/fs/cgroup", name)
        return [p] if os.path.isdir(p) else []
    out = []
    for top in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", top)
        if os.path.islink(base) or not os.path.isdir(base):
            continue
        p = os.path.join(base, name)
        if os.path.isdir(p):
            out.append(p)
    return sorted(set(out))


class Dockerd:
    def __init__(self, log_level: str = "warn"):
        tag = secrets.token_hex(4)
        self.netns = f"skiffbench-{tag}"
        self.cgroup_parent = f"skiffbench-{tag}"
        self.tmp = tempfile.mkdtemp(prefix=f"sbd-{tag}-", dir="/tmp")
        self.sock = os.path.join(self.tmp, "docker.sock")
        self.host = f"unix://{self.sock}"
        self.log_level = log_level
        self.dockerd = None
        self.containerd = None
        self._logs = []
        self._preexisting = {p for p in HOST_DEBRIS if os.path.lexists(p)}

    # -- commands -----------------------------------------------------------
    def cli(self, *args: str) -> list[str]:
        return [DOCKER_CLI, "-H", self.host, *args]

    def nsexec(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *args]

    def run(self, *args: str, check=True, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        r = subprocess.run(self.cli(*args), **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.returncode} {r.stderr[-400:]}")
        return r

    def version(self) -> str:
        return self.run("version", "--format", "{{.Server.Version}}").stdout.strip()

    # -- life cycle ---------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        self._logs.append(log)
        return subprocess.Popen(self.nsexec(*cmd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, name="dockerd", n=2000) -> str:
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> "Dockerd":
        if not shutil.which("dockerd"):
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        try:
            subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
            subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
            ctd = os.path.join(self.tmp, "ctd")
            os.makedirs(ctd)
            ctd_sock = os.path.join(ctd, "sock")
            with open(os.path.join(ctd, "config.toml"), "w") as f:
                f.write(CONTAINERD_TOML.format(root=os.path.join(ctd, "root"),
                                               state=os.path.join(ctd, "state"), sock=ctd_sock))
            self.containerd = self._spawn("containerd", [
                "containerd", "--config", os.path.join(ctd, "config.toml"),
                "--log-level", self.log_level])
            self._wait(lambda: os.path.exists(ctd_sock), 20, "containerd")
            with open(os.path.join(self.tmp, "daemon.json"), "w") as f:
                f.write("{}")
            self.dockerd = self._spawn("dockerd", [
                "dockerd", "--config-file", os.path.join(self.tmp, "daemon.json"),
                "--data-root", os.path.join(self.tmp, "data"),
                "--exec-root", os.path.join(self.tmp, "exec"),
                "-H", self.host, "--pidfile", os.path.join(self.tmp, "docker.pid"),
                "--containerd", ctd_sock, "--containerd-namespace", "skiffbench",
                "--containerd-plugins-namespace", "skiffbench-plugins",
                "--exec-opt", "native.cgroupdriver=cgroupfs",
                "--cgroup-parent", "/" + self.cgroup_parent,
                "--userland-proxy=false", "--storage-driver", "overlay2",
                "--log-level", self.log_level])

            def ready():
                if self.dockerd.poll() is not None:
                    raise RuntimeError(f"dockerd exited: {self.log_tail()}")
                return os.path.exists(self.sock) and subprocess.run(
                    self.cli("version"), capture_output=True).returncode == 0
            self._wait(ready, timeout, "dockerd")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _wait(cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up in {timeout:.0f}s")
            time.sleep(0.1)

    def load_busybox(self) -> None:
        from skiff.testing.images import make_busybox_archive
        path = os.path.join(self.tmp, "bb.tar")
        make_busybox_archive(path, repo_tags=("busybox:latest",))
        self.run("load", "-i", path)
        os.unlink(path)

    def shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes serving this dockerd's containers."""
        token = os.path.join(self.tmp, "ctd").encode()
        out = []
        for pid in _procs_matching(token):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip().startswith("containerd-shim"):
                        out.append(pid)
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.dockerd is not None and self.dockerd.poll() is None:
            try:
                r = subprocess.run(self.cli("ps", "-aq"), capture_output=True, text=True,
                                   timeout=30)
                ids = r.stdout.split()
                if ids:
                    subprocess.run(self.cli("rm", "-f", *ids), capture_output=True, timeout=120)
            except subprocess.TimeoutExpired:
                pass                    # the kills below take care of the containers
        for p in (self.dockerd, self.containerd):     # dockerd first: it stops containers
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # shims and anything else started from our roots (container inits are
        # in our cgroups: killed below)
        for pid in _procs_matching(self.tmp.encode()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for cg in _cgroup_dirs(self.cgroup_parent):
            for dirpath, _, _ in os.walk(cg):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                except OSError:
                    pass
        for m in sorted(_mountpoints_under(self.tmp), key=len, reverse=True):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
        deadline = time.monotonic() + 10
        for cg in _cgroup_dirs(self.cgroup_parent):
            for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: -len(t[0])):
                while True:
                    try:
                        os.rmdir(dirpath)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            print(f"dockerd.py: cannot remove cgroup {dirpath}", file=sys.stderr)
                            break
                        time.sleep(0.1)
        if os.path.exists(f"/run/netns/{self.netns}"):
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        for p in HOST_DEBRIS:
            if p in self._preexisting or not os.path.lexists(p):
                continue
            try:
                if os.path.isdir(p):
                    os.rmdir(p)      # only when empty: another daemon's sockets stay
                else:
                    os.unlink(p)
            except OSError:
                pass
        for f in self._logs:
            f.close()
        self._logs = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.dockerd = self.containerd = None


def versions() -> dict:
    out = {}
    for name, cmd in (("dockerd", ["dockerd", "--version"]),
                      ("containerd", ["containerd", "--version"]),
                      ("runc", ["runc", "--version"]),
                      ("podman", ["podman", "--version"])):
        try:
            out[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            out[name] = "?"
    return out


def _check() -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests import leakcheck
    before = leakcheck.snapshot()
    with Dockerd() as d:
        print("dockerd", d.version(), "netns", d.netns)
        d.load_busybox()
        print(d.run("run", "--rm", "busybox", "echo", "hello from docker").stdout.strip())
        d.run("run", "-d", "-p", "18080:80", "busybox", "sleep", "300")
        print("shims:", d.shim_pids())
    extra = leakcheck.diff(before, leakcheck.snapshot, grace=5.0)
    # others' tests run on this machine: show everything, flag what is ours
    ours = [e for e in extra if "skiffbench" in e or "sbd-" in e or "docker" in e
            or "containerd" in e]
    print("new on the host after stop:", extra or "nothing")
    return 1 if ours else 0


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(_check())
    print(__doc__)
