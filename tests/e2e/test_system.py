"""/_ping, /version, /info and error shapes, as clients read them."""

import json
import os
import socket

import docker
import pytest


def _raw(sock, req: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(req)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out


def test_ping_headers(skiffd):
    for method in ("HEAD", "GET"):
        out = _raw(skiffd.sock, f"{method} /_ping HTTP/1.0\r\n\r\n".encode())
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.") and " 200 " in lines[0]
        h = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        assert h["api-version"] == "1.47" and h["ostype"] == "linux"
        assert h["builder-version"] and h["swarm"] == "inactive"
        assert h["cache-control"] == "no-cache, no-store, must-revalidate"
        assert h["server"].startswith("Docker/")
        assert body == (b"OK" if method == "GET" else b"")


def test_version_info_and_negotiation(skiffd):
    v = json.loads(skiffd.docker("version", "--format", "{{json .Server}}", check=True).stdout)
    assert v["ApiVersion"] == "1.47" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux" and v["Components"][0]["Name"] == "Engine"
    info = skiffd.client.info()
    assert info["OSType"] == "linux" and info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == skiffd.data_root
    assert "runc" in info["Runtimes"] and "crun" in info["Runtimes"]
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    r = skiffd.docker("info", "--format", "{{.ServerVersion}} {{.Containers}}", check=True)
    assert r.stdout.split()[1] == "0"
    # every /vX.Y/ prefix in range works; outside it, Docker's message
    out = _raw(skiffd.sock, b"GET /v1.24/version HTTP/1.0\r\n\r\n")
    assert b" 200 " in out.split(b"\r\n")[0]
    out = _raw(skiffd.sock, b"GET /v1.99/version HTTP/1.0\r\n\r\n")
    assert b" 400 " in out.split(b"\r\n")[0]
    assert b"client version 1.99 is too new. Maximum supported API version is 1.47" in out
    # an old client pinned at 1.41 still works
    old = docker.APIClient(base_url=skiffd.host, version="1.41")
    assert old.version()["ApiVersion"] == "1.47"
    old.close()


def test_errors_are_docker_shaped(skiffd):
    out = _raw(skiffd.sock, b"GET /v1.44/containers/nope/json HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b" 404 " in head.split(b"\r\n")[0]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"message": "No such container: nope"}
    with pytest.raises(docker.errors.ImageNotFound):
        skiffd.client.containers.create("no-such-image-here:v1")
    out = _raw(skiffd.sock, b"GET /v1.44/no/such/route HTTP/1.0\r\n\r\n")
    assert b" 404 " in out.split(b"\r\n")[0]
    r = skiffd.docker("kill", "nope")
    assert r.returncode == 1 and "No such container: nope" in r.stderr


def test_system_df_and_events_filters(skiffd):
    skiffd.docker("create", "--name", "dfc", "busybox", "true", check=True)
    df = skiffd.client.df()
    assert [c["Names"] for c in df["Containers"]] == [["/dfc"]]
    r = skiffd.docker("system", "df", check=True)
    assert "Containers" in r.stdout
    # the image the container was created from counts as in use, as Docker's
    busybox = [i for i in df["Images"] if "busybox:latest" in (i.get("RepoTags") or [])]
    assert busybox and busybox[0]["Containers"] == 1
    images_row = [l.split() for l in r.stdout.splitlines() if l.startswith("Images")][0]
    assert images_row[2] == "1", r.stdout


def test_tcp_without_tls_is_refused_and_config_file_is_read(tmp_path):
    import subprocess
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(tmp_path / "data"),
                               "exec-root": str(tmp_path / "run"),
                               "hosts": ["tcp://127.0.0.1:23750"]}))
    # in a network namespace of its own: a daemon that got further would build its bridge there
    r = subprocess.run(["unshare", "-n", "skiffd", "--config-file", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "refusing to listen on tcp://127.0.0.1:23750 without TLS" in r.stderr
    cfg.write_text('{"no-such-option": true}')
    r = subprocess.run(["unshare", "-n", "skiffd", "--config-file", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "no-such-option" in r.stderr


def _cgroup_dirs(name):
    import glob
    return sorted(p for p in glob.glob(f"/sys/fs/cgroup/*/{name}") + glob.glob(f"/sys/fs/cgroup/{name}")
                  if os.path.isdir(p))


def test_daemon_cgroup_parent_made_at_start_and_removed_at_stop(make_skiffd):
    import secrets
    name = "skiff-e2e-cgp-" + secrets.token_hex(4)
    d = make_skiffd(extra_args=["--cgroup-parent", name])
    # there before any container, as Docker's /docker
    made = _cgroup_dirs(name)
    assert any(p.endswith(f"/pids/{name}") or p == f"/sys/fs/cgroup/{name}" for p in made), made
    d.docker("run", "-d", "--name", "inparent", "busybox", "sleep", "300", check=True)
    pid = json.loads(d.docker("inspect", "inparent").stdout)[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"/{name}/" in f.read()
    d.docker("rm", "-f", "inparent", check=True)
    assert _cgroup_dirs(name) == made      # stays while the daemon runs
    d.stop()
    assert _cgroup_dirs(name) == []        # a clean shutdown removes it (it is empty)
