"""IPC modes (``--ipc private|shareable|container:<x>|host|none``) and
``--shm-size``, checked from inside the containers: the IPC namespace
(``/proc/self/ns/ipc``) and /dev/shm contents they share."""

import json
import os
import secrets
import subprocess
import sys

import pytest
from tests.e2e.h5b_helpers import logs_until


def _name(prefix):
    return f"{prefix}-{secrets.token_hex(3)}"


def _inspect(skiffd, name):
    return json.loads(skiffd.docker("inspect", name, check=True).stdout)[0]


def _mounted(skiffd, path):
    """Whether ``path`` is a mount point in skiffd's mount namespace."""
    with open(f"/proc/{skiffd.proc.pid}/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _run_donor(skiffd, name, *opts, shm_file="donor"):
    skiffd.docker("run", "-d", "--name", name, "--network", "none", *opts, "busybox", "sh", "-c",
                  f"echo from-donor > /dev/shm/{shm_file}; echo ready; exec sleep 300",
                  check=True)
    logs_until(skiffd, name, "ready")
    return _inspect(skiffd, name)


def test_shareable_donor_shares_namespace_and_shm(skiffd):
    donor = _name("ipc-donor")
    info = _run_donor(skiffd, donor, "--ipc", "shareable", "--shm-size", "32m")
    assert info["HostConfig"]["IpcMode"] == "shareable"
    assert info["HostConfig"]["ShmSize"] == 32 << 20
    pid = info["State"]["Pid"]
    donor_ns = os.readlink(f"/proc/{pid}/ns/ipc")
    assert donor_ns != os.readlink("/proc/self/ns/ipc")
    shm = os.path.join(skiffd.data_root, "containers", info["Id"], "mounts", "shm")
    assert _mounted(skiffd, shm)
    try:
        r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", f"container:{donor}",
                          "busybox", "sh", "-c",
                          "cat /dev/shm/donor; readlink /proc/self/ns/ipc; "
                          "df -k /dev/shm | tail -1; echo from-joiner > /dev/shm/joiner")
        assert r.returncode == 0, r.stderr
        seen, ns, df = r.stdout.splitlines()
        assert seen == "from-donor"       # the donor's /dev/shm is the joiner's
        assert ns == donor_ns             # and so is its IPC namespace
        assert df.split()[1] == "32768"   # the donor's --shm-size
        with open(f"/proc/{pid}/root/dev/shm/joiner") as f:
            assert f.read() == "from-joiner\n"
        # a System V segment made in the donor's namespace is the joiner's too
        # (busybox has no ipcs: /proc/sysvipc/shm lists the namespace's)
        key = secrets.randbelow(1 << 30) + 1
        subprocess.run(["nsenter", f"--ipc=/proc/{pid}/ns/ipc", "--", sys.executable, "-c",
                        "import ctypes; l = ctypes.CDLL(None, use_errno=True); "
                        f"assert l.shmget({key}, 4096, 0o1600) >= 0"], check=True)
        r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", f"container:{donor}",
                          "busybox", "cat", "/proc/sysvipc/shm")
        assert r.returncode == 0 and str(key) in r.stdout.split(), r.stderr
        r = skiffd.docker("run", "--rm", "--network", "none", "busybox",
                          "cat", "/proc/sysvipc/shm")
        assert r.returncode == 0 and str(key) not in r.stdout.split(), r.stderr
        # by ID as well as by name
        r = skiffd.docker("run", "--rm", "--network", "none", "--ipc",
                          f"container:{info['Id']}", "busybox", "readlink", "/proc/self/ns/ipc")
        assert r.returncode == 0 and r.stdout.strip() == donor_ns, r.stderr
    finally:
        skiffd.docker("rm", "-f", donor)
    assert not _mounted(skiffd, shm)      # the donor's shm tmpfs went with it


@pytest.mark.parametrize("mode", [None, "private"])
def test_private_donor_refused(skiffd, mode):
    donor = _name("ipc-priv")
    info = _run_donor(skiffd, donor, *(["--ipc", mode] if mode else []))
    assert info["HostConfig"]["IpcMode"] == "private"   # Docker's default since 20.10
    try:
        joiner = _name("ipc-join")
        r = skiffd.docker("run", "--name", joiner, "--network", "none", "--ipc",
                          f"container:{donor}", "busybox", "true")
        assert r.returncode == 125
        assert (f"Error response from daemon: failed to join IPC namespace: container {donor}: "
                "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                in r.stderr)
        assert not _inspect(skiffd, joiner)["State"]["Running"]
    finally:
        skiffd.docker("rm", "-f", donor)


def test_donor_not_running_refused(skiffd):
    donor = _name("ipc-idle")
    skiffd.docker("create", "--name", donor, "--ipc", "shareable", "busybox", "true",
                  check=True)
    r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", f"container:{donor}",
                      "busybox", "true")
    assert r.returncode == 125
    assert f"failed to join IPC namespace: container {donor} is not running" in r.stderr


def test_missing_donor_refused(skiffd):
    r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", "container:no-such-donor",
                      "busybox", "true")
    assert r.returncode == 125
    assert "failed to join IPC namespace: No such container: no-such-donor" in r.stderr


def test_host_ipc_sees_host_shm(skiffd):
    fname = f"skiff-ipc-test-{secrets.token_hex(4)}"
    path = os.path.join("/dev/shm", fname)
    with open(path, "w") as f:
        f.write("from-host\n")
    try:
        r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", "host", "busybox", "sh",
                          "-c", f"cat /dev/shm/{fname}; readlink /proc/self/ns/ipc")
        assert r.returncode == 0, r.stderr
        seen, ns = r.stdout.splitlines()
        assert seen == "from-host"
        assert ns == os.readlink("/proc/self/ns/ipc")
    finally:
        os.unlink(path)


def test_none_has_no_shm(skiffd):
    r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", "none", "busybox", "sh",
                      "-c", "readlink /proc/self/ns/ipc; ls /dev/shm")
    assert r.returncode != 0
    assert "/dev/shm: No such file or directory" in r.stderr
    assert r.stdout.strip() != os.readlink("/proc/self/ns/ipc")


def test_private_shm_size(skiffd):
    r = skiffd.docker("run", "--rm", "--network", "none", "--shm-size", "16m", "busybox", "sh",
                      "-c", "df -k /dev/shm | tail -1")
    assert r.returncode == 0 and r.stdout.split()[1] == "16384", r.stderr
    r = skiffd.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                      "df -k /dev/shm | tail -1")
    assert r.returncode == 0 and r.stdout.split()[1] == "65536", r.stderr


def test_invalid_ipc_mode(skiffd):
    r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", "bogus", "busybox", "true")
    assert r.returncode == 125
    assert "invalid IPC mode: bogus" in r.stderr


def test_sdk_shareable_and_join(skiffd):
    c = skiffd.client.containers.run(
        "busybox", ["sh", "-c", "echo sdk > /dev/shm/s; echo ready; exec sleep 300"],
        ipc_mode="shareable", shm_size="8m", network_mode="none", detach=True)
    try:
        logs_until(skiffd, c.id, "ready")
        out = skiffd.client.containers.run(
            "busybox", ["sh", "-c", "cat /dev/shm/s; df -k /dev/shm | tail -1"],
            ipc_mode=f"container:{c.id}", network_mode="none", remove=True)
        seen, df = out.decode().splitlines()
        assert seen == "sdk" and df.split()[1] == "8192"
    finally:
        c.remove(force=True)


def test_host_ipc_donor_is_joinable(skiffd):
    """A donor in the host's IPC namespace is shareable: its joiners get the
    host's namespace and /dev/shm (Docker's ShmPath /dev/shm)."""
    donor = _name("ipc-hostdonor")
    fname = f"skiff-ipc-test-{secrets.token_hex(4)}"
    _run_donor(skiffd, donor, "--ipc", "host", shm_file=fname + "-donor")
    path = os.path.join("/dev/shm", fname)
    with open(path, "w") as f:
        f.write("host-shm\n")
    try:
        with open(path + "-donor") as f:
            assert f.read() == "from-donor\n"
        r = skiffd.docker("run", "--rm", "--network", "none", "--ipc", f"container:{donor}",
                          "busybox", "sh", "-c", f"cat /dev/shm/{fname}; readlink /proc/self/ns/ipc")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["host-shm", os.readlink("/proc/self/ns/ipc")]
    finally:
        os.unlink(path)
        try:
            os.unlink(path + "-donor")   # the host donor wrote the host's /dev/shm
        except FileNotFoundError:
            pass
        skiffd.docker("rm", "-f", donor)


def test_daemon_default_ipc_mode_shareable(tmp_path):
    """daemon.json ``default-ipc-mode: shareable`` (and ``default-shm-size``)
    make containers created without --ipc joinable, as Docker's daemon; a
    mode that cannot be a default stops skiffd with Docker's message."""
    import tempfile

    from tests.e2e.conftest import Daemon

    root = tempfile.mkdtemp(prefix="skiff-e2e-own-")
    d = Daemon(root)
    with open(os.path.join(root, "daemon.json"), "w") as f:
        json.dump({"cgroup-parent": d.cgroup_parent, "default-ipc-mode": "shareable",
                   "default-shm-size": "24M"}, f)
    try:
        d.preload()
        d.start()
        info = _run_donor(d, "donor")
        assert info["HostConfig"]["IpcMode"] == "shareable"
        assert info["HostConfig"]["ShmSize"] == 24 << 20
        r = d.docker("run", "--rm", "--network", "none", "--ipc", "container:donor", "busybox",
                     "sh", "-c", "cat /dev/shm/donor; df -k /dev/shm | tail -1")
        assert r.returncode == 0, r.stderr
        seen, df = r.stdout.splitlines()
        assert seen == "from-donor" and df.split()[1] == str(24 << 10)
    finally:
        d.destroy()
    bad = tempfile.mkdtemp(prefix="skiff-e2e-own-")
    d2 = Daemon(bad)
    with open(os.path.join(bad, "daemon.json"), "w") as f:
        json.dump({"cgroup-parent": d2.cgroup_parent, "default-ipc-mode": "host"}, f)
    try:
        with pytest.raises(RuntimeError) as ei:
            d2.start()
        assert ('IPC mode "host" is not supported as default value; use "shareable" or '
                '"private"') in str(ei.value)
    finally:
        d2.destroy()
