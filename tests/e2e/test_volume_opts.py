"""Local volume driver options (``docker volume create --opt ...``), as
Docker's ``local`` driver: the volume is mounted on its ``_data`` when the
first container using it starts and unmounted when the last one stops."""

import json
import os
import secrets

import pytest
from tests.e2e.h5b_helpers import logs_until


def _mounted(skiffd, path: str) -> str | None:
    """The filesystem type mounted at ``path``, or None, as skiffd sees it
    (skiffd keeps container mounts in a mount namespace of its own)."""
    real = os.path.realpath(path)
    with open(f"/proc/{skiffd.proc.pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = left.split()
            if parts[4].replace("\\040", " ") == real:
                return right.split()[0]
    return None


@pytest.fixture
def vname(skiffd):
    names = []

    def make(prefix="vo"):
        n = f"{prefix}-{secrets.token_hex(3)}"
        names.append(n)
        return n
    yield make
    skiffd.remove_all_containers()
    for n in names:
        skiffd.docker("volume", "rm", "-f", n)


def _inspect(skiffd, name):
    r = skiffd.docker("volume", "inspect", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def test_tmpfs_volume_shared_sized_and_unmounted(skiffd, vname):
    v = vname("tmpfs")
    r = skiffd.docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                      "--opt", "device=tmpfs", "--opt", "o=size=10m,uid=1000", v)
    assert r.returncode == 0 and r.stdout.strip() == v, r.stderr
    info = _inspect(skiffd, v)
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=10m,uid=1000"}
    assert info["Driver"] == "local"
    mp = info["Mountpoint"]
    assert _mounted(skiffd, mp) is None          # nothing is mounted before a container starts

    skiffd.docker("run", "-d", "--name", f"{v}-a", "--network", "none", "-v", f"{v}:/data",
                  "busybox", "sh", "-c", "echo from-a > /data/f; stat -c %u /data; "
                  "df -k /data | tail -1; echo ready; exec sleep 300", check=True)
    out = logs_until(skiffd, f"{v}-a", "ready")
    assert _mounted(skiffd, mp) == "tmpfs"
    owner, dfline = out.splitlines()[:2]
    assert owner == "1000"               # o=uid=1000 reached the tmpfs
    assert dfline.split()[1] == "10240"  # size=10m: df inside shows 10 MiB

    # a second container sees the first one's data, and the size limit holds
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox", "sh",
                      "-c", "cat /data/f; dd if=/dev/zero of=/data/big bs=1M count=20")
    assert r.stdout.startswith("from-a\n"), r.stderr
    assert r.returncode != 0 and "No space left on device" in r.stderr
    # the second container stopped; the first still holds the mount
    assert _mounted(skiffd, mp) == "tmpfs"
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                      "cat", "/data/f")
    assert r.stdout == "from-a\n", r.stderr

    skiffd.docker("rm", "-f", f"{v}-a", check=True)
    assert _mounted(skiffd, mp) is None          # the last user stopped: unmounted
    # tmpfs content is gone with the mount, as with Docker; the volume stays
    assert os.listdir(mp) == []
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                      "sh", "-c", "ls -A /data; df -k /data | tail -1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "10240"
    assert _mounted(skiffd, mp) is None
    # a start that fails after the mount (no such command) leaves no mount
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                      "/no/such/command")
    assert r.returncode == 127, r.stderr
    assert _mounted(skiffd, mp) is None
    assert skiffd.docker("volume", "rm", v).returncode == 0


def test_bind_volume_keeps_host_data(skiffd, vname, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "seed").write_text("from-host\n")
    v = vname("bind")
    skiffd.docker("volume", "create", "--opt", "type=none", "--opt", "o=bind",
                  "--opt", f"device={host}", v, check=True)
    info = _inspect(skiffd, v)
    assert info["Options"] == {"type": "none", "o": "bind", "device": str(host)}
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                      "sh", "-c", "cat /data/seed; echo from-container > /data/out")
    assert r.returncode == 0 and r.stdout == "from-host\n", r.stderr
    assert (host / "out").read_text() == "from-container\n"
    assert _mounted(skiffd, info["Mountpoint"]) is None
    # removing the volume never touches the host directory
    assert skiffd.docker("volume", "rm", v).returncode == 0
    assert sorted(os.listdir(host)) == ["out", "seed"]


def test_read_only_bind_volume(skiffd, vname, tmp_path):
    host = tmp_path / "ro"
    host.mkdir()
    v = vname("robind")
    skiffd.docker("volume", "create", "--opt", "type=none", "--opt", "o=bind,ro",
                  "--opt", f"device={host}", v, check=True)
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                      "touch", "/data/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert os.listdir(host) == []
    assert _mounted(skiffd, _inspect(skiffd, v)["Mountpoint"]) is None


@pytest.mark.parametrize("opts,msg", [
    (["foo=bar"], 'invalid option: "foo"'),
    (["type=tmpfs"], 'missing required option: "device"'),
    (["device=tmpfs"], 'missing required option: "type"'),
    (["o=size=1m", "type=tmpfs"], 'missing required option: "device"'),
    (["size=10m"], "quota size requested but no quota support"),
])
def test_bad_options_refused_at_create(skiffd, vname, opts, msg):
    v = vname("bad")
    args = []
    for o in opts:
        args += ["--opt", o]
    r = skiffd.docker("volume", "create", *args, v)
    assert r.returncode == 1
    assert f"Error response from daemon: create {v}: {msg}" in r.stderr
    assert v not in skiffd.docker("volume", "ls", "-q").stdout.split()


def test_mount_failure_at_start(skiffd, vname, tmp_path):
    missing = tmp_path / "does-not-exist"
    v = vname("nodev")
    skiffd.docker("volume", "create", "--opt", "type=none", "--opt", "o=bind",
                  "--opt", f"device={missing}", v, check=True)
    mp = _inspect(skiffd, v)["Mountpoint"]
    r = skiffd.docker("run", "--name", f"{v}-c", "--network", "none", "-v", f"{v}:/data",
                      "busybox", "true")
    # the docker CLI maps a start error saying "no such file or directory" to 127
    assert r.returncode == 127
    assert (f"error while mounting volume '{mp}': failed to mount local volume: "
            f"mount {missing}:{mp}, flags: 0x1000: no such file or directory") in r.stderr
    state = json.loads(skiffd.docker("inspect", f"{v}-c").stdout)[0]["State"]
    assert not state["Running"]
    assert _mounted(skiffd, mp) is None
    # a bad mount option fails the same way, with the data string shown
    v2 = vname("badsize")
    skiffd.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                  "--opt", "o=size=lots", v2, check=True)
    mp2 = _inspect(skiffd, v2)["Mountpoint"]
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v2}:/data", "busybox",
                      "true")
    assert r.returncode == 125
    assert (f"failed to mount local volume: mount tmpfs:{mp2}, data: size=lots: "
            "invalid argument") in r.stderr
    assert _mounted(skiffd, mp2) is None
    # a block-device type: tried for real, the kernel's answer in Docker's words
    v3 = vname("ext4")
    skiffd.docker("volume", "create", "--opt", "type=ext4", "--opt",
                  "device=/dev/skiff-no-such-disk", v3, check=True)
    mp3 = _inspect(skiffd, v3)["Mountpoint"]
    r = skiffd.docker("run", "--rm", "--network", "none", "-v", f"{v3}:/data", "busybox",
                      "true")
    assert r.returncode == 127
    assert (f"failed to mount local volume: mount /dev/skiff-no-such-disk:{mp3}: "
            "no such file or directory") in r.stderr
    assert _mounted(skiffd, mp3) is None


def test_sdk_driver_opts(skiffd, vname):
    import docker

    v = vname("sdk")
    vol = skiffd.client.volumes.create(v, driver="local", driver_opts={
        "type": "tmpfs", "device": "tmpfs", "o": "size=4m"})
    assert vol.attrs["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}
    out = skiffd.client.containers.run("busybox", ["sh", "-c", "df -k /d | tail -1"],
                                       volumes={v: {"bind": "/d", "mode": "rw"}},
                                       network_mode="none", remove=True)
    assert out.split()[1] == b"4096"
    assert _mounted(skiffd, vol.attrs["Mountpoint"]) is None
    with pytest.raises(docker.errors.APIError) as ei:
        skiffd.client.volumes.create(vname("sdkbad"), driver_opts={"bogus": "1"})
    assert ei.value.status_code == 400 and 'invalid option: "bogus"' in str(ei.value)


def test_mount_survives_daemon_restart(make_skiffd):
    """The mount and its holders outlive a skiffd restart: the restarted
    daemon still unmounts when the last holder stops."""
    d = make_skiffd()
    v = "restart-" + secrets.token_hex(3)
    d.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
             "--opt", "o=size=2m", v, check=True)
    mp = _inspect(d, v)["Mountpoint"]
    d.docker("run", "-d", "--name", "holder", "--network", "none", "-v", f"{v}:/data",
             "busybox", "sh", "-c", "echo kept > /data/f; echo ready; exec sleep 300",
             check=True)
    logs_until(d, "holder", "ready")
    d.restart()
    assert _mounted(d, mp) == "tmpfs"
    r = d.docker("run", "--rm", "--network", "none", "-v", f"{v}:/data", "busybox",
                 "cat", "/data/f")
    assert r.returncode == 0 and r.stdout == "kept\n", r.stderr
    assert _mounted(d, mp) == "tmpfs"    # "holder" still runs and holds it
    d.docker("rm", "-f", "holder", check=True)
    assert _mounted(d, mp) is None
    assert d.docker("volume", "rm", v).returncode == 0


def test_mount_flag_volume_opts(skiffd, vname):
    """``--mount type=volume,volume-opt=...`` creates the volume with those
    driver options, as Docker does."""
    v = vname("mnt")
    r = skiffd.docker("run", "--rm", "--network", "none", "--mount",
                      f"type=volume,source={v},target=/d,volume-opt=type=tmpfs,"
                      "volume-opt=device=tmpfs,volume-opt=o=size=3m", "busybox", "sh", "-c",
                      "df -k /d | tail -1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "3072"
    info = _inspect(skiffd, v)
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=3m"}
    assert _mounted(skiffd, info["Mountpoint"]) is None
    bad = vname("mntbad")
    r = skiffd.docker("run", "--rm", "--network", "none", "--mount",
                      f"type=volume,source={bad},target=/d,volume-opt=nope=1", "busybox", "true")
    assert r.returncode == 125 and f'create {bad}: invalid option: "nope"' in r.stderr
    assert bad not in skiffd.docker("volume", "ls", "-q").stdout.split()


def test_skiff_cli_volume_opts(skiffd, vname):
    """The skiff CLI sends --opt the same way; its errors match docker's."""
    import subprocess
    import sys

    def skiff(*args):
        env = dict(os.environ, SKIFF_NO_AUTOSTART="1",
                   SKIFF_CONFIG=os.path.join(skiffd.root, "skiff-config"))
        env.pop("DOCKER_HOST", None)
        return subprocess.run([sys.executable, "-m", "skiff.cli.main", "-H", skiffd.host,
                               *args], capture_output=True, text=True, timeout=60, env=env)

    v = vname("cli")
    r = skiff("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", v)
    assert r.returncode == 0 and r.stdout.strip() == v, r.stderr
    r = skiff("run", "--rm", "--network", "none", "-v", f"{v}:/d", "busybox", "sh", "-c",
              "df -k /d | tail -1")
    assert r.returncode == 0 and r.stdout.split()[1] == "2048", r.stderr
    bad = vname("clibad")
    r = skiff("volume", "create", "-o", "o=size=1m", bad)
    d = skiffd.docker("volume", "create", "-o", "o=size=1m", bad)
    assert r.returncode == d.returncode == 1
    assert r.stderr == d.stderr
    assert "missing required option" in r.stderr


def test_api_driver_opts_must_be_strings(skiffd, vname):
    v = vname("api")
    r = skiffd.client.api.post(skiffd.client.api._url("/volumes/create"),
                               json={"Name": v, "DriverOpts": {"type": 1}})
    assert r.status_code == 400
    assert r.json()["message"] == ("json: cannot unmarshal number into Go struct field "
                                   "CreateOptions.DriverOpts of type string")
    assert v not in skiffd.docker("volume", "ls", "-q").stdout.split()
