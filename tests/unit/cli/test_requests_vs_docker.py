"""skiff sends what the docker CLI sends: both clients run against a
recording endpoint and the requests are compared field by field."""

import pytest

from tests.unit.cli.conftest import needs_docker

pytestmark = needs_docker

CID = "c0ffee" * 10 + "abcd"
CREATED = {("POST", "/containers/create"): (201, {"Id": CID, "Warnings": []})}

CREATE_CASES = [
    ["busybox"],
    ["--name", "web", "-e", "A=1", "-e", "B=two words", "-p", "8080:80", "-v", "/tmp:/data:ro",
     "--memory", "512m", "--cpus", "1.5", "--restart", "on-failure:3", "-t", "busybox",
     "sh", "-c", "echo hi"],
    ["-i", "--mount", "type=volume,src=vol1,dst=/v",
     "--mount", "type=bind,source=/tmp,target=/b,readonly", "--tmpfs", "/run:rw,size=64m",
     "-P", "--expose", "90", "--network", "mynet", "--ip", "10.1.0.5", "--network-alias", "web",
     "--ulimit", "nofile=1024:2048", "--health-cmd", "true", "--health-interval", "5s",
     "--health-retries", "3", "--init", "--device", "/dev/null:/dev/xnull:rwm",
     "--sysctl", "net.ipv4.ip_forward=1", "--shm-size", "128m", "--add-host", "h:1.2.3.4",
     "--dns", "10.0.0.53", "--log-opt", "max-size=10m", "--security-opt", "no-new-privileges",
     "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--read-only",
     "--pids-limit", "100", "--blkio-weight", "300", "-u", "1000:1000", "-w", "/tmp",
     "--entrypoint", "/bin/sh", "-h", "myhost", "--label", "a=b", "--stop-signal", "SIGINT",
     "--stop-timeout", "5", "--runtime", "runc", "--memory", "1g", "--memory-swap", "2g",
     "--memory-reservation", "100m", "--cpu-shares", "512", "--cpuset-cpus", "0", "--rm",
     "busybox"],
    ["-a", "stdout", "-v", "/anon", "-v", "named:/n", "-p", "127.0.0.1:8000-8001:80-81/udp",
     "--platform", "linux/amd64", "--entrypoint", "", "busybox"],
    ["-p", "80", "--ip6", "fd00::5", "--network", "n2", "--memory-swap", "-1", "--cpus", "0.5",
     "-it", "busybox", "sh"],
    ["-it", "--name=x", "--env=C=3", "-eD=4", "--rm=false", "--workdir=/w", "busybox",
     "ls", "-l", "--", "-x"],
    ["--restart", "always:3", "--restart=unless-stopped", "busybox"],
]


@pytest.mark.parametrize("args", CREATE_CASES, ids=lambda a: " ".join(a)[:40])
def test_create_body_matches_docker(both, args):
    res = both(["create"] + args, CREATED)
    bodies = {}
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        assert p.stdout.strip() == CID
        reqs = rec.find("POST", "/containers/create")
        assert len(reqs) == 1
        body = reqs[0].json()
        # docker 28 passes -e through a Go map: its Env order is random
        if body.get("Env"):
            body["Env"] = sorted(body["Env"])
        bodies[tool] = (reqs[0].query, body)
    assert bodies["skiff"][0] == bodies["docker"][0]
    assert bodies["skiff"][1] == bodies["docker"][1]


@pytest.mark.parametrize("args,needle", [
    (["--no-healthcheck", "--health-cmd", "x", "busybox"], "conflicts with --health"),
    (["--sysctl", "kernel.foo=1", "busybox"], "is not allowed"),
    (["--restart", "on-failure:x", "busybox"], "maximum retry count must be an integer"),
])
def test_create_flag_errors_like_docker(both, args, needle):
    res = both(["create"] + args, CREATED)
    for tool, (p, rec) in res.items():
        assert p.returncode == 125, (tool, p.stderr)
        assert needle in p.stderr
        assert not rec.find("POST", "/containers/create")


def test_unknown_flag_exit_125(both):
    res = both(["ps", "--bogus"], {})
    for tool, (p, _) in res.items():
        assert p.returncode == 125
        assert "unknown flag: --bogus" in p.stderr


def _container_json(tty=False):
    return {"Id": CID, "Name": "/x", "Config": {"Tty": tty, "OpenStdin": False},
            "State": {"Running": True, "Status": "running"}}


def test_exec_detach_body_matches_docker(both):
    routes = {("GET", f"/containers/{CID}/json"): (200, _container_json()),
              ("GET", "/containers/x/json"): (200, _container_json()),
              ("POST", f"/containers/{CID}/exec"): (201, {"Id": "e" * 64}),
              ("POST", "/containers/x/exec"): (201, {"Id": "e" * 64}),
              ("POST", f"/exec/{'e' * 64}/start"): (200, b"")}
    res = both(["exec", "-d", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "--privileged",
                "x", "sh", "-c", "sleep 1"], routes)
    got = {}
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        ex = [r for r in rec.requests if r.method == "POST" and r.path.endswith("/exec")]
        st = rec.find("POST", f"/exec/{'e' * 64}/start")
        assert len(ex) == 1 and len(st) == 1
        got[tool] = (ex[0].json(), st[0].json())
    assert got["skiff"] == got["docker"]


def test_pull_sends_qualified_name_and_auth_header(both):
    stream = (b'{"status":"Pulling from library/busybox","id":"latest"}\n'
              b'{"status":"Pulling fs layer","progressDetail":{},"id":"aaaaaaaaaaaa"}\n'
              b'{"status":"Downloading","progressDetail":{"current":5,"total":10},'
              b'"progress":"[==>  ]","id":"aaaaaaaaaaaa"}\n'
              b'{"status":"Pull complete","progressDetail":{},"id":"aaaaaaaaaaaa"}\n'
              b'{"status":"Digest: sha256:' + b"1" * 64 + b'"}\n'
              b'{"status":"Status: Downloaded newer image for busybox:latest"}\n')
    routes = {("POST", "/images/create"): (200, stream)}
    res = both(["pull", "busybox"], routes)
    outs = {}
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        reqs = rec.find("POST", "/images/create")
        assert len(reqs) == 1
        assert reqs[0].query == {"fromImage": ["docker.io/library/busybox"], "tag": ["latest"]}
        assert "x-registry-auth" in reqs[0].headers
        outs[tool] = p.stdout
    # not a terminal: progress lines are dropped, the rest printed as docker does
    assert outs["skiff"] == outs["docker"]


def test_pull_error_in_stream_exits_1(both):
    stream = (b'{"status":"Pulling from library/nope","id":"latest"}\n'
              b'{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\n')
    res = both(["pull", "nope"], {("POST", "/images/create"): (200, stream)})
    for tool, (p, _) in res.items():
        assert p.returncode == 1
        assert "manifest unknown" in p.stderr


def test_run_missing_image_pulls_then_retries(both):
    """create → 404 → "Unable to find image" → pull → create again."""
    state = {"n": 0}

    def create(req):
        state["n"] += 1
        if state["n"] % 2 == 1:
            return 404, {"message": "No such image: busybox:latest"}
        return 201, {"Id": CID, "Warnings": []}
    stream = b'{"status":"Status: Downloaded newer image for busybox:latest"}\n'
    routes = {("POST", "/containers/create"): create,
              ("POST", "/images/create"): (200, stream),
              ("POST", f"/containers/{CID}/start"): (204, None)}
    res = both(["run", "-d", "busybox", "true"], routes)
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        assert "Unable to find image 'busybox:latest' locally" in p.stderr
        seq = [(r.method, r.path) for r in rec.requests if r.path != "/_ping"]
        # docker registers the wait before start even with -d
        assert seq == [("POST", "/containers/create"), ("POST", "/images/create"),
                       ("POST", "/containers/create"), ("POST", f"/containers/{CID}/wait"),
                       ("POST", f"/containers/{CID}/start")]
        assert p.stdout.strip() == CID


def test_run_start_error_exit_codes(both):
    routes = {("POST", "/containers/create"): (201, {"Id": CID, "Warnings": []}),
              ("POST", f"/containers/{CID}/start"):
                  (400, {"message": 'failed to create task: exec: "nope": executable file '
                                    'not found in $PATH: unknown'})}
    res = both(["run", "-d", "busybox", "nope"], routes)
    for tool, (p, _) in res.items():
        assert p.returncode == 127, (tool, p.stderr)
        assert "executable file not found" in p.stderr


def test_negotiates_down_to_daemon_version(recorder):
    from tests.unit.cli.conftest import run_cli
    rec = recorder({("GET", "/containers/json"): (200, [])}, api_version="1.41")
    p = run_cli("skiff", rec.host, ["ps"])
    assert p.returncode == 0, p.stderr
    assert [r.version for r in rec.requests if r.path == "/containers/json"] == ["1.41"]
    assert rec.requests[0].method == "HEAD" and rec.requests[0].path == "/_ping"


@pytest.mark.parametrize("args", [
    ["ps", "-a", "--filter", "status=exited", "--filter", "label=a=b", "-n", "3", "-s"],
    ["ps", "-l"], ["ps", "-q", "--no-trunc"],
    ["images", "-a", "--filter", "dangling=true"], ["images", "busybox"],
    ["network", "ls", "--filter", "driver=bridge"], ["volume", "ls", "-f", "dangling=true"],
])
def test_list_queries_match_docker(both, args):
    routes = {("GET", "/containers/json"): (200, []), ("GET", "/images/json"): (200, []),
              ("GET", "/networks"): (200, []), ("GET", "/volumes"): (200, {"Volumes": []})}
    res = both(args, routes)
    queries = {}
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        queries[tool] = [(r.method, r.path, r.query) for r in rec.requests if r.path != "/_ping"]
    assert queries["skiff"] == queries["docker"]


@pytest.mark.parametrize("args,method,path,query", [
    (["stop", "-t", "3", "c1"], "POST", "/containers/c1/stop", {"t": ["3"]}),
    (["kill", "-s", "HUP", "c1"], "POST", "/containers/c1/kill", {"signal": ["HUP"]}),
    (["rm", "-fv", "c1"], "DELETE", "/containers/c1", {"force": ["1"], "v": ["1"]}),
    (["restart", "c1"], "POST", "/containers/c1/restart", {}),
    (["rename", "c1", "c2"], "POST", "/containers/c1/rename", {"name": ["c2"]}),
    (["pause", "c1"], "POST", "/containers/c1/pause", {}),
    (["tag", "busybox", "me/bb:v1"], "POST", "/images/busybox/tag",
     {"repo": ["docker.io/me/bb"], "tag": ["v1"]}),
    (["rmi", "-f", "busybox"], "DELETE", "/images/busybox", {"force": ["1"]}),
    (["commit", "-m", "hi", "-c", "ENV A=1", "c1", "me/img:t"], "POST", "/commit",
     {"container": ["c1"], "repo": ["docker.io/me/img"], "tag": ["t"], "comment": ["hi"],
      "changes": ["ENV A=1"]}),
])
def test_simple_verbs_send_what_docker_sends(both, args, method, path, query):
    routes = {(method, path): (204 if method != "DELETE" and path != "/commit" else 200,
                               {"Id": "sha256:" + "1" * 64} if path == "/commit" else
                               ([] if method == "DELETE" and "images" in path else None))}
    res = both(args, routes)
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        sent = [r for r in rec.requests if r.path != "/_ping"]
        assert [(r.method, r.path) for r in sent] == [(method, path)], tool
        q = {k: v for k, v in sent[0].query.items() if v != [""]}
        assert q == query, tool


def test_push_and_import_targets_match_docker(both, tmp_path):
    tarball = tmp_path / "empty.tar"
    tarball.write_bytes(b"\0" * 1024)
    routes = {("POST", "/images/docker.io/me/bb/push"): (200, b'{"status":"pushed"}\n'),
              ("POST", "/images/create"): (200, b'{"status":"sha256:' + b"1" * 64 + b'"}\n')}
    for args in (["push", "me/bb:v1"], ["import", "-c", "CMD x", str(tarball), "me/imp:t"]):
        res = both(args, routes)
        sent = {}
        for tool, (p, rec) in res.items():
            assert p.returncode == 0, (tool, p.stderr)
            sent[tool] = [(r.method, r.path, r.query, r.body) for r in rec.requests
                          if r.path != "/_ping"]
        assert sent["skiff"] == sent["docker"], args


def test_login_logout_like_docker(both, tmp_path):
    import json as _json
    routes = {("POST", "/auth"): (200, {"Status": "Login Succeeded", "IdentityToken": ""})}
    env = {"DOCKER_CONFIG": str(tmp_path / "d"), "SKIFF_CONFIG": str(tmp_path / "s")}
    res = both(["login", "-u", "me", "--password-stdin", "127.0.0.1:5999"], routes,
               stdin="secret\n", env=env)
    for tool, (p, rec) in res.items():
        assert (p.returncode, p.stdout) == (0, "Login Succeeded\n"), (tool, p.stderr)
        assert rec.find("POST", "/auth")[0].json() == {
            "username": "me", "password": "secret", "serveraddress": "127.0.0.1:5999"}
    saved = [_json.load(open(tmp_path / d / "config.json")) for d in ("d", "s")]
    assert saved[0] == saved[1]
    res = both(["logout", "127.0.0.1:5999"], routes, env=env)
    assert res["skiff"][0].stdout == res["docker"][0].stdout
    assert _json.load(open(tmp_path / "s" / "config.json")) == {"auths": {}}


@pytest.mark.parametrize("args", [
    ["rename", "a"], ["logs"], ["ps", "x"], ["images", "a", "b"], ["tag", "x"], ["exec", "c"],
    ["start"], ["volume", "create", "a", "b"], ["port"], ["run"], ["rm"], ["commit"],
    ["import"], ["wait"], ["network", "connect", "n"],
], ids=lambda a: " ".join(a))
def test_argument_count_errors_like_docker(both, args):
    res = both(args, {})
    d, s = res["docker"][0], res["skiff"][0]
    assert s.returncode == d.returncode == 1
    # docker 28 prints "SRun" for the at-most case (a stray byte): skiff does not
    assert s.stderr == d.stderr.replace("docker", "skiff").replace("\nSRun", "\nRun")
    assert not res["skiff"][1].requests


@pytest.mark.parametrize("pull,expect_pull", [("always", True), ("never", False)])
def test_run_pull_policy_sequence(both, pull, expect_pull):
    stream = b'{"status":"Status: Image is up to date for busybox:latest"}\n'
    routes = {("POST", "/containers/create"): (201, {"Id": CID, "Warnings": []}),
              ("POST", "/images/create"): (200, stream),
              ("POST", f"/containers/{CID}/start"): (204, None)}
    res = both(["run", "-d", "--pull", pull, "busybox", "true"], routes)
    seqs = {}
    for tool, (p, rec) in res.items():
        assert p.returncode == 0, (tool, p.stderr)
        seqs[tool] = [(r.method, r.path) for r in rec.requests
                      if r.path not in ("/_ping", f"/containers/{CID}/wait")]
    assert seqs["skiff"] == seqs["docker"]
    assert (("POST", "/images/create") in seqs["skiff"]) == expect_pull


@pytest.mark.parametrize("args,path,msg", [
    (["network", "inspect", "nothere"], "/networks/nothere", "network nothere not found"),
    (["volume", "inspect", "nothere"], "/volumes/nothere", "get nothere: no such volume"),
    (["container", "inspect", "nothere"], "/containers/nothere/json",
     "No such container: nothere"),
    (["logs", "nothere"], "/containers/nothere/json", "No such container: nothere"),
    (["kill", "nothere"], "/containers/nothere/kill", "No such container: nothere"),
    (["start", "nothere"], "/containers/nothere/start", "No such container: nothere"),
    (["rename", "nothere", "x"], "/containers/nothere/rename", "No such container: nothere"),
    (["create", "--name", "taken", "busybox"], "/containers/create",
     'Conflict. The container name "/taken" is already in use by container "abc".'),
])
def test_daemon_errors_printed_like_docker(both, args, path, msg):
    status = 409 if "Conflict" in msg else 404
    routes = {("GET", path): (status, {"message": msg}), ("POST", path): (status, {"message": msg})}
    res = both(args, routes)
    d, s = res["docker"][0], res["skiff"][0]
    assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr)
