"""skiff prints what the docker CLI prints for the same daemon answers:
tables, --format templates, -q, --no-trunc, inspect --format."""

import time

import pytest

from tests.unit.cli.conftest import needs_docker

pytestmark = needs_docker

H = 3600
# One clock per test for both clients (CreatedAt must agree); ages are chosen
# far from the boundaries of docker's human durations ("About a minute" is
# 60-119 s), so the two runs print the same relative times.
NOW = {"t": 0}


@pytest.fixture(autouse=True)
def _clock():
    NOW["t"] = int(time.time())


def _containers(req):
    now = NOW["t"]
    return 200, [
        {"Id": "a" * 64, "Names": ["/web"], "Image": "nginx:1.25", "ImageID": "sha256:" + "b" * 64,
         "Command": "/docker-entrypoint.sh nginx -g 'daemon off;'", "Created": now - 90,
         "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"PrivatePort": 443, "Type": "tcp"}],
         "Labels": {"com.example.team": "web", "a": "1"}, "State": "running",
         "Status": "Up About a minute", "SizeRw": 12345, "SizeRootFs": 187654321,
         "Mounts": [{"Type": "volume", "Name": "f" * 64, "Driver": "local",
                     "Destination": "/data"}],
         # one network: docker lists several in Go's random map order
         "NetworkSettings": {"Networks": {"mynet": {}}}},
        {"Id": "c" * 64, "Names": ["/db", "/web/db"], "Image": "sha256:" + "d" * 64,
         "ImageID": "sha256:" + "d" * 64, "Command": "sleep 1000", "Created": now - 3 * H - 60,
         "Ports": [{"PrivatePort": 5432, "Type": "tcp"}, {"PrivatePort": 5433, "Type": "tcp"},
                   {"PrivatePort": 53, "Type": "udp"}],
         "Labels": {}, "State": "exited", "Status": "Exited (137) 2 hours ago",
         "Mounts": [], "NetworkSettings": {"Networks": {}}},
        {"Id": "e" * 64, "Names": ["/tiny"], "Image": "busybox", "ImageID": "sha256:" + "1" * 64,
         "Command": "", "Created": now - 400 * 24 * H, "Ports": [], "Labels": None,
         "State": "created", "Status": "Created", "Mounts": None,
         "NetworkSettings": {"Networks": {"none": {}}}},
    ]


def _images(req):
    now = NOW["t"]
    return 200, [
        {"Id": "sha256:" + "1" * 64, "ParentId": "", "RepoTags": ["busybox:latest", "busybox:1.36"],
         "RepoDigests": ["busybox@sha256:" + "2" * 64], "Created": now - 5 * 24 * H,
         "Size": 4261234, "SharedSize": -1, "Labels": None, "Containers": 2},
        {"Id": "sha256:" + "3" * 64, "ParentId": "", "RepoTags": ["localhost:5000/team/app:v1"],
         "RepoDigests": [], "Created": now - 30 * 60 - 20, "Size": 999_999_999, "SharedSize": -1,
         "Labels": {"x": "y"}, "Containers": -1},
        {"Id": "sha256:" + "4" * 64, "ParentId": "", "RepoTags": [], "RepoDigests": [],
         "Created": now - 10 * 24 * H, "Size": 123, "SharedSize": -1, "Labels": None,
         "Containers": 0},
    ]


ROUTES = {("GET", "/containers/json"): _containers, ("GET", "/images/json"): _images}


def same_output(both, args):
    res = both(args, ROUTES)
    (pd, _), (ps, _) = res["docker"], res["skiff"]
    assert pd.returncode == 0, pd.stderr
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout == pd.stdout
    return ps.stdout


@pytest.mark.parametrize("args", [
    ["ps"], ["ps", "-a"], ["ps", "-a", "--no-trunc"], ["ps", "-q"], ["ps", "-a", "-s"],
    ["ps", "--format", "{{.Names}}\t{{.Ports}}"],
    ["ps", "--format", "table {{.ID}}\t{{.Labels}}\t{{.Networks}}"],
    ["ps", "--format", "table {{.Names}}\\t{{.Status}}\\t{{.State}}"],
    ["ps", "--format", "{{json .}}"],
    ["ps", "--format", "json"],
    ["ps", "--format", "{{.Label \"com.example.team\"}}|{{.Mounts}}|{{.LocalVolumes}}"],
    ["ps", "--format", "{{.Names | upper}} {{lower .Image}} {{printf \"%.5s\" .ID}}"],
    ["ps", "--format", "{{if eq .State \"running\"}}UP{{else}}{{.State}}{{end}} {{.Command}}"],
    ["ps", "--format", "{{join (split .Names \",\") \";\"}} {{len .Names}}"],
    ["ps", "--format", "{{.RunningFor}} / {{.Size}}"],
    ["images"], ["images", "-a"], ["images", "--no-trunc"], ["images", "-q"],
    ["images", "--digests"],
    ["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}} {{.Containers}}"],
    ["images", "--format", "json"],
    ["images", "--format", "table {{.ID}}\t{{.CreatedSince}}\t{{.VirtualSize}}"],
], ids=lambda a: " ".join(a))
def test_list_output_same_as_docker(both, args):
    same_output(both, args)


INSPECT = {
    "Id": "a" * 64, "Created": "2024-05-01T10:11:12.123456789Z", "Path": "sh",
    "Args": ["-c", "echo <hi> & bye"], "Name": "/web", "RestartCount": 0,
    "State": {"Status": "running", "Running": True, "Paused": False, "Pid": 4242,
              "ExitCode": 0, "StartedAt": "2024-05-01T10:11:13Z"},
    "Image": "sha256:" + "b" * 64,
    "HostConfig": {"Memory": 536870912, "NanoCpus": 1500000000, "Privileged": False,
                   "Binds": ["/a:/b"], "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                   "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
    "Config": {"Hostname": "aaaaaaaaaaaa", "Env": ["PATH=/bin", "A=1"], "Cmd": ["sh", "-c", "x"],
               "Labels": {"b": "2", "a": "1"}, "Tty": False, "Entrypoint": None,
               "ExposedPorts": {"80/tcp": {}}},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2", "Aliases": None,
                                                "IPPrefixLen": 16}},
                        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
    "Mounts": [],
}


@pytest.mark.parametrize("tmpl", [
    "{{.Name}}", "{{.State.Pid}} {{.State.Running}} {{.State.Status}}",
    "{{json .Config.Labels}}", "{{json .Args}}", "{{json .HostConfig.RestartPolicy}}",
    "{{json .Config.Entrypoint}}", "{{json .Config.ExposedPorts}}", "{{.Config.Env}}", "{{.Config.Labels}}",
    "{{range .Config.Env}}[{{.}}]{{end}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
    "{{range $i, $e := .Args}}{{$i}}:{{$e}} {{end}}",
    "{{index .Config.Labels \"a\"}}", "{{(index .HostConfig.PortBindings \"80/tcp\")}}",
    "{{(index (index .HostConfig.PortBindings \"80/tcp\") 0).HostPort}}",
    "{{range .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}}{{end}}",
    "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
    "{{if .State.Running}}running{{else}}stopped{{end}}",
    "{{with .HostConfig.RestartPolicy}}{{.Name}}:{{.MaximumRetryCount}}{{end}}",
    "{{.Config.Entrypoint}}|{{.HostConfig.Binds}}|{{.Mounts}}",
    "{{join .Config.Cmd \" \"}}", "{{upper .Name}} {{title \"hello world\"}}",
    "{{printf \"%s has pid %d\" .Name .State.Pid}}", "{{len .Config.Env}}",
    "{{- .Name -}}   {{- .Path}}", "{{$n := .Name}}{{$n}}{{$n}}",
    "{{if and .State.Running (not .State.Paused)}}ok{{end}}",
    "{{if or (eq .State.Status \"exited\") (eq .State.Status \"running\")}}known{{end}}",
    "{{json .NetworkSettings.Ports}}", "{{.Created}}",
    "{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}",
    "{{truncate .Id 12}} {{pad .Path 2 3}}|", "{{println .Name}}", "{{.Config.Tty}}",
])
def test_inspect_format_same_as_docker(both, tmpl):
    routes = {("GET", "/containers/web/json"): (200, INSPECT)}
    res = both(["inspect", "--type", "container", "-f", tmpl, "web"], routes)
    (pd, _), (ps, _) = res["docker"], res["skiff"]
    assert pd.returncode == 0, pd.stderr
    assert (ps.returncode, ps.stdout) == (0, pd.stdout), ps.stderr


def test_inspect_json_same_as_docker(both):
    routes = {("GET", "/containers/web/json"): (200, INSPECT)}
    res = both(["container", "inspect", "web"], routes)
    assert res["skiff"][0].stdout == res["docker"][0].stdout


def test_inspect_missing_object(both):
    res = both(["inspect", "nothere"], {})
    for tool, (p, _) in res.items():
        assert p.returncode == 1
        assert "No such object: nothere" in p.stderr, (tool, p.stderr)
        assert p.stdout == "[]\n"
