"""docker volume create/ls/inspect/rm/prune and containers sharing volumes."""

import json
import os


def _vol(skiffd, *args):
    return skiffd.docker("volume", *args)


def test_volume_lifecycle(skiffd):
    r = _vol(skiffd, "create", "--label", "team=h5b", "h5b-v1")
    assert r.returncode == 0 and r.stdout.strip() == "h5b-v1", r.stderr
    try:
        info = json.loads(_vol(skiffd, "inspect", "h5b-v1").stdout)[0]
        assert info["Name"] == "h5b-v1" and info["Driver"] == "local"
        assert info["Scope"] == "local" and info["Labels"] == {"team": "h5b"}
        assert info["Mountpoint"] == os.path.join(skiffd.data_root, "volumes/h5b-v1/_data")
        assert os.path.isdir(info["Mountpoint"])
        assert info["CreatedAt"]
        ls = _vol(skiffd, "ls", "-q", "-f", "label=team=h5b").stdout.split()
        assert ls == ["h5b-v1"]
        assert "h5b-v1" not in _vol(skiffd, "ls", "-q", "-f", "label=team=other").stdout
        anon = _vol(skiffd, "create").stdout.strip()
        assert len(anon) == 64
        assert _vol(skiffd, "rm", anon).returncode == 0
    finally:
        _vol(skiffd, "rm", "-f", "h5b-v1")
    r = _vol(skiffd, "inspect", "h5b-v1")
    assert r.returncode == 1 and "no such volume" in r.stderr
    r = _vol(skiffd, "rm", "h5b-v1")
    assert r.returncode == 1 and "no such volume" in r.stderr


def test_named_volume_shared_between_containers(skiffd):
    try:
        r = skiffd.docker("run", "--rm", "--network", "none", "-v", "h5b-shared:/data",
                          "busybox", "sh", "-c", "echo written-by-first > /data/f")
        assert r.returncode == 0, r.stderr
        r = skiffd.docker("run", "--rm", "--network", "none", "-v", "h5b-shared:/data:ro",
                          "busybox", "sh", "-c", "cat /data/f; echo x > /data/g")
        assert r.stdout == "written-by-first\n", r.stderr
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        mp = json.loads(_vol(skiffd, "inspect", "h5b-shared").stdout)[0]["Mountpoint"]
        with open(os.path.join(mp, "f")) as f:
            assert f.read() == "written-by-first\n"
    finally:
        _vol(skiffd, "rm", "-f", "h5b-shared")


def test_volume_in_use_refused(skiffd):
    try:
        skiffd.docker("create", "--name", "h5b-vuser", "-v", "h5b-busy:/data", "busybox",
                      "true", check=True)
        r = _vol(skiffd, "rm", "h5b-busy")
        assert r.returncode == 1 and "volume is in use" in r.stderr
        c = json.loads(skiffd.docker("inspect", "h5b-vuser").stdout)[0]
        assert any(m["Type"] == "volume" and m["Name"] == "h5b-busy" and
                   m["Destination"] == "/data" for m in c["Mounts"])
        assert "h5b-busy" not in _vol(skiffd, "ls", "-q", "-f", "dangling=true").stdout
        skiffd.docker("rm", "h5b-vuser", check=True)
        assert "h5b-busy" in _vol(skiffd, "ls", "-q", "-f", "dangling=true").stdout
        assert _vol(skiffd, "rm", "h5b-busy").returncode == 0
    finally:
        skiffd.docker("rm", "-f", "h5b-vuser")
        _vol(skiffd, "rm", "-f", "h5b-busy")


def test_copy_up_from_image(skiffd):
    """A fresh named volume mounted over image content starts with a copy."""
    try:
        r = skiffd.docker("run", "--rm", "--network", "none", "-v", "h5b-etc:/etc", "busybox",
                          "cat", "/etc/passwd")
        assert r.returncode == 0 and "root:x:0:0" in r.stdout, r.stderr
        mp = json.loads(_vol(skiffd, "inspect", "h5b-etc").stdout)[0]["Mountpoint"]
        assert os.path.exists(os.path.join(mp, "passwd"))
        # only the first mount copies: a later change in the volume stays
        os.unlink(os.path.join(mp, "passwd"))
        r = skiffd.docker("run", "--rm", "--network", "none", "-v", "h5b-etc:/etc",
                          "busybox", "ls", "/etc/passwd")
        assert r.returncode != 0
    finally:
        _vol(skiffd, "rm", "-f", "h5b-etc")


def test_anonymous_volumes_and_prune(skiffd):
    r = skiffd.docker("create", "--name", "h5b-anon", "-v", "/scratch", "busybox", "true")
    assert r.returncode == 0, r.stderr
    try:
        c = json.loads(skiffd.docker("inspect", "h5b-anon").stdout)[0]
        (m,) = [m for m in c["Mounts"] if m["Destination"] == "/scratch"]
        anon = m["Name"]
        assert m["Type"] == "volume" and len(anon) == 64
        assert anon in _vol(skiffd, "ls", "-q").stdout
        skiffd.docker("rm", "-v", "h5b-anon", check=True)
        assert anon not in _vol(skiffd, "ls", "-q").stdout
        _vol(skiffd, "create", "h5b-named-prune")
        anon2 = _vol(skiffd, "create").stdout.strip()
        r = _vol(skiffd, "prune", "-f")
        assert anon2 in r.stdout and "h5b-named-prune" not in r.stdout
        assert "h5b-named-prune" in _vol(skiffd, "ls", "-q").stdout
        r = _vol(skiffd, "prune", "-af")
        assert "h5b-named-prune" in r.stdout
        assert "h5b-named-prune" not in _vol(skiffd, "ls", "-q").stdout
    finally:
        skiffd.docker("rm", "-f", "h5b-anon")
        _vol(skiffd, "rm", "-f", "h5b-named-prune")


def test_volumes_survive_daemon_restart(make_skiffd):
    d = make_skiffd()
    d.docker("run", "--network", "none", "--name", "h5b-persist", "-v", "h5b-keep:/data",
             "busybox", "sh", "-c", "echo kept > /data/k", check=True)
    d.restart()
    info = json.loads(d.docker("volume", "inspect", "h5b-keep", check=True).stdout)[0]
    assert info["Name"] == "h5b-keep"
    r = d.docker("volume", "rm", "h5b-keep")
    assert r.returncode == 1 and "volume is in use" in r.stderr
    r = d.docker("run", "--rm", "--network", "none", "-v", "h5b-keep:/data", "busybox",
                 "cat", "/data/k")
    assert r.stdout == "kept\n", r.stderr
    d.docker("rm", "h5b-persist", check=True)
    assert d.docker("volume", "rm", "h5b-keep").returncode == 0
