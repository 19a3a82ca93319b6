"""A real consumer: Debian's podman drives skiff-runtime as its OCI runtime
(`--runtime /usr/local/bin/skiff-runtime`): run, run -it through a pty,
exec, stop, rm. Image built offline (`podman import` of the busybox rootfs);
podman gets private --root/--runroot under the test's tmp dir, the vfs
storage driver (no overlay mounts) and no network."""

import json
import os
import pty
import select
import shutil
import subprocess
import tarfile
import time

import pytest

RUNTIME = shutil.which("skiff-runtime") or "/usr/local/bin/skiff-runtime"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
IMAGE = "localhost/skiff-busybox:test"


class Podman:
    def __init__(self, base, runroot):
        self.base = ["podman", "--root", f"{base}/root", "--runroot", runroot,
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "none", "--runtime", RUNTIME]

    def __call__(self, *args, timeout=120, check=True, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.run([*self.base, *args], timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} → {p.returncode}: {p.stderr}")
        return p


def _libpod_cgroups():
    out = set()
    root = "/sys/fs/cgroup"
    for h in os.listdir(root):
        top = os.path.join(root, h, "libpod_parent")
        for d, _, _ in os.walk(top):
            out.add(d)
    return out


def _remove_new_cgroups(before):
    # podman's cgroupfs manager leaves libpod_parent (and conmon's) behind
    for d in sorted(_libpod_cgroups() - before, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture
def podman(tmp_path, busybox_rootfs):
    import tempfile
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed")
    # podman refuses a --runroot longer than 50 characters
    runroot = tempfile.mkdtemp(prefix="skpm-", dir="/tmp")
    cgroups_before = _libpod_cgroups()
    pm = Podman(str(tmp_path / "podman"), runroot)
    try:
        tar = tmp_path / "busybox.tar"
        with tarfile.open(tar, "w") as t:
            t.add(busybox_rootfs, arcname=".")
        pm("import", str(tar), IMAGE)
        yield pm
    finally:
        pm("rm", "-a", "-f", "-t", "0", check=False)
        pm("system", "reset", "-f", check=False)
        shutil.rmtree(runroot, ignore_errors=True)
        _remove_new_cgroups(cgroups_before)


def test_podman_run(podman):
    p = podman("run", "--rm", "--network", "none", *ULIMITS, IMAGE,
               "sh", "-c", "echo hello from skiff; hostname; exit 3", check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout.splitlines()[0] == "hello from skiff"


def test_podman_detached_exec_stop_rm(podman):
    cid = podman("run", "-d", "--name", "skiffpm", "--network", "none", *ULIMITS, IMAGE,
                 "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done").stdout.strip()
    info = json.loads(podman("inspect", "skiffpm").stdout)[0]
    assert info["OCIRuntime"].endswith("skiff-runtime")
    assert info["State"]["Running"] is True
    # skiff-runtime itself knows the container (podman uses its default --root)
    st = subprocess.run([RUNTIME, "state", cid], capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["status"] == "running"
    p = podman("exec", "skiffpm", "sh", "-c", "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.stdout.startswith("in-exec\nsh -c")
    assert podman("exec", "skiffpm", "sh", "-c", "exit 7", check=False).returncode == 7
    podman("stop", "-t", "5", "skiffpm")
    info = json.loads(podman("inspect", "skiffpm").stdout)[0]
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 0
    podman("rm", "skiffpm")
    assert subprocess.run([RUNTIME, "state", cid], capture_output=True).returncode != 0


def test_podman_run_interactive_tty(podman):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*podman.base, "run", "-it", "--rm", "--network", "none",
                             *ULIMITS, IMAGE, "sh", "-c",
                             "tty; echo ready; read line; echo got=$line"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if b"ready" in out and not sent:
                os.write(master, b"typed\r")
                sent = True
            if b"got=typed" in out:
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace").replace("\r", "")
    assert "/dev/pts/" in text, text
    assert "got=typed" in text, text
    assert proc.returncode == 0
