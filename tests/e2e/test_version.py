"""skiff version: docker 28's layout and JSON, the server part the same as
the real docker CLI prints against skiffd, and skiff's own components
(monitor, runtime, init) with the versions they report themselves."""

import json
import os
import shutil
import subprocess

import skiff

SKIFF = shutil.which("skiff") or "/usr/local/bin/skiff"


def skiff_cli(d, *args, host=None):
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    return subprocess.run([SKIFF, "-H", host or d.host, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def sections(text):
    """→ (client lines, server lines) of ``version``'s text output."""
    lines = text.splitlines()
    i = lines.index("") if "" in lines else len(lines)
    return lines[:i], lines[i + 1:]


def keys(lines):
    return [l.split(":", 1)[0] for l in lines]


def reported(argv):
    """(version, commit) a binary reports with --version."""
    out = subprocess.run(argv + ["--version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0].split("version", 1)[1].split()
    commit = ""
    for line in out.splitlines():
        if line.startswith("commit:"):
            commit = line.split(":", 1)[1].strip()
    if " - git." in out:
        commit = out.split(" - git.", 1)[1].split()[0]
    return first[0], commit


def test_version_layout_and_server_part_as_docker(skiffd):
    ours = skiff_cli(skiffd, "version")
    theirs = skiffd.docker("version")
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    oc, osrv = sections(ours.stdout)
    dc, dsrv = sections(theirs.stdout)
    # the server part is byte for byte what docker's CLI prints against skiffd
    assert osrv == dsrv
    # the client part: docker's fields in docker's order and alignment
    assert keys(oc[1:]) == keys(dc[1:]) == [" Version", " API version", " Go version",
                                            " Git commit", " Built", " OS/Arch", " Context"]
    assert oc[0] == "Client: skiff"
    assert oc[1] == f" Version:           {skiff.__version__}"
    assert all(l[20:21] != " " and l[19] == " " for l in oc[1:] if l[20:])
    # skiff's components where dockerd lists containerd, runc and docker-init
    assert osrv[0] == "Server: skiff" and osrv[1] == " Engine:"
    names = [l.strip().rstrip(":") for l in osrv if l.startswith(" ") and not l.startswith("  ")]
    assert names[:3] == ["Engine", "conmon", skiffd.runtime]
    assert names[3] in ("tini", "catatonit") and len(names) == 4
    comp = dict(zip(names, _component_versions(osrv)))
    assert comp["Engine"] == skiff.__version__
    assert comp["conmon"] == reported([shutil.which("conmon") or "/usr/bin/conmon"])[0]
    rt = shutil.which(skiffd.runtime) or skiffd.runtime
    assert comp[skiffd.runtime] == reported([rt])[0]


def _component_versions(server_lines):
    out = []
    for l in server_lines:
        if l.startswith("  Version:"):
            out.append(l.split(":", 1)[1].strip())
    return out


def test_version_format(skiffd):
    assert skiff_cli(skiffd, "version", "--format", "{{.Server.Version}}").stdout == \
        skiff.__version__ + "\n"
    assert skiffd.docker("version", "--format", "{{.Server.Version}}").stdout == \
        skiff.__version__ + "\n"
    ours = json.loads(skiff_cli(skiffd, "version", "--format", "{{json .}}").stdout)
    theirs = json.loads(skiffd.docker("version", "--format", "{{json .}}").stdout)
    assert ours["Server"] == theirs["Server"]
    # same JSON text too (field order, empty fields left out)
    assert skiff_cli(skiffd, "version", "--format", "{{json .Server}}").stdout == \
        skiffd.docker("version", "--format", "{{json .Server}}").stdout
    assert [k for k in ours["Client"] if k != "Platform"] == list(theirs["Client"])
    assert ours["Client"]["Version"] == skiff.__version__
    assert ours["Client"]["ApiVersion"] == ours["Server"]["ApiVersion"]
    comps = {c["Name"]: c for c in ours["Server"]["Components"]}
    conmon_v, conmon_commit = reported([shutil.which("conmon") or "/usr/bin/conmon"])
    assert comps["conmon"] == {"Name": "conmon", "Version": conmon_v,
                               "Details": {"GitCommit": conmon_commit}}
    engine = comps["Engine"]["Details"]
    assert engine["ApiVersion"] == ours["Server"]["ApiVersion"]
    assert engine["MinAPIVersion"] == ours["Server"]["MinAPIVersion"]


def test_version_without_a_daemon(tmp_path):
    r = skiff_cli(None, "version", host=f"unix://{tmp_path}/none.sock")
    assert r.returncode == 1
    client, server = sections(r.stdout)
    assert client[0] == "Client: skiff" and server == []
    assert keys(client[1:])[0] == " Version"
    assert "Cannot connect to the skiff daemon" in r.stderr
