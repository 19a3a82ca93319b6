"""skiff-runtime's pure parts, no root: specconv, the runc-style flag parser,
JSON without `json`, secure_join, /etc/passwd lookups, signal names."""

import json
import os

import pytest

from skiff.runtime import fastjson, spec
from skiff.runtime.cli import COMMANDS, UsageError, parse_flags
from skiff.runtime.rootfs import secure_join
from skiff.runtime.user import parse_user_arg, passwd_by_uid
from skiff.sys import MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REC
from skiff.testing.busybox import runc_default_spec


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def test_default_spec_converts(bundle):
    c = spec.parse_config(runc_default_spec(["sh"]), bundle)
    assert c.root_path == os.path.join(bundle, "rootfs")
    assert c.process.args == ["sh"]
    assert c.process.caps["bounding"] == [29, 5, 10]
    assert [t for t, _ in c.namespaces] == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    sysfs = [m for m in c.mounts if m.type == "sysfs"][0]
    assert sysfs.flags & MS_RDONLY and sysfs.flags & MS_NOSUID
    assert c.process.rlimits == [(7, 1024, 1024)]


def test_mount_options():
    flags, clear, prop, data, rec = spec.parse_mount_options(
        ["rbind", "ro", "nosuid", "rslave", "size=1m", "mode=755", "rro", "dev"])
    assert flags & (MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID) == MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID
    assert clear & MS_NODEV
    assert prop and data == "size=1m,mode=755" and rec == ["rro"]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("process"), "Process must be specified"),
    (lambda s: s["process"].update(args=[]), "args must not be empty"),
    (lambda s: s["process"].update(cwd="relative"), "cwd must be an absolute path"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "duplicated ns"),
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), "not supported"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "no user mapping"),
    (lambda s: s["mounts"].append({"destination": "rel", "type": "tmpfs"}), "not absolute"),
    (lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
     "not supported"),
    (lambda s: s.update(hooks={"prestart": [{"path": "rel"}]}), "must be absolute"),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]),
     "unable to set hostname without a private UTS namespace"),
])
def test_invalid_specs_are_refused(bundle, mutate, message):
    s = runc_default_spec(["sh"])
    mutate(s)
    with pytest.raises(spec.SpecError, match=message):
        spec.parse_config(s, bundle)


def test_missing_rootfs(tmp_path):
    with pytest.raises(spec.SpecError, match="does not exist"):
        spec.parse_config(runc_default_spec(["sh"]), str(tmp_path))


def test_load_bundle_errors(tmp_path):
    with pytest.raises(spec.SpecError, match="config.json not found"):
        spec.load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(spec.SpecError, match="failed to parse"):
        spec.load_bundle(str(tmp_path))


def test_flag_parser_runc_style():
    opts, pos = parse_flags(["--bundle=/b", "--pid-file", "/p", "--no-pivot", "id"],
                            COMMANDS["create"], False)
    assert opts == {"bundle": "/b", "pid_file": "/p", "no_pivot": True} and pos == ["id"]
    opts, pos = parse_flags(["-t", "-e", "A=1", "--env", "B=2", "ctr", "sh", "-c", "x"],
                            COMMANDS["exec"], True)
    assert opts == {"tty": True, "env": ["A=1", "B=2"]}
    assert pos == ["ctr", "sh", "-c", "x"]
    with pytest.raises(UsageError, match="flag provided but not defined: --nope"):
        parse_flags(["--nope"], COMMANDS["start"], False)
    with pytest.raises(UsageError, match="needs an argument"):
        parse_flags(["--bundle"], COMMANDS["create"], False)


@pytest.mark.parametrize("obj", [
    {"a": [1, 2.5, None, True, False, "é\"\n"], "b": {}, "c": [], "d": {"e": -3}},
    [], "x", 0, {"nested": [[{"k": "v"}]]},
])
def test_fastjson_matches_json(obj):
    assert fastjson.loads(json.dumps(obj)) == obj
    assert json.loads(fastjson.dumps(obj)) == obj
    assert json.loads(fastjson.dumps(obj, indent=2)) == obj


def test_fastjson_errors():
    for bad in ("{", '{"a":}', "[1,]", "1 2", ""):
        with pytest.raises(ValueError):
            fastjson.loads(bad)


def test_secure_join_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    r = str(root)
    assert secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/up/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/../../x") == f"{r}/x"
    assert secure_join(r, "/new/dir") == f"{r}/new/dir"
    with pytest.raises(OSError):
        secure_join(r, "/loop1/x")


def test_passwd_and_user_arg(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "user:x:1000:100:u:/home/user:/bin/sh\n")
    (tmp_path / "group").write_text("root:x:0:\nusers:x:100:\nstaff:x:50:\n")
    pw, gr = str(tmp_path / "passwd"), str(tmp_path / "group")
    assert passwd_by_uid(1000, pw)["home"] == "/home/user"
    assert parse_user_arg("1000", pw, gr) == (1000, 100)
    assert parse_user_arg("user:staff", pw, gr) == (1000, 50)
    assert parse_user_arg("4242:7", pw, gr) == (4242, 7)
    with pytest.raises(ValueError, match="unable to find user nobody"):
        parse_user_arg("nobody", pw, gr)


def test_signal_names_and_numbers():
    from skiff.runtime.commands import parse_signal
    from skiff.runtime.state import RuntimeFailure
    assert parse_signal("KILL") == 9 == parse_signal("SIGKILL") == parse_signal("9")
    assert parse_signal("usr1") == 10
    with pytest.raises(RuntimeFailure):
        parse_signal("NOPE")
    with pytest.raises(RuntimeFailure):
        parse_signal("99")


def test_runtime_import_path_is_lean():
    """The commands that run per container import neither asyncio, aiohttp,
    pyroute2, json nor re (each costs milliseconds at every start)."""
    import subprocess
    import sys
    code = ("import sys; from skiff.runtime import cli, commands, state, fastjson; "
            "bad = [m for m in ('asyncio', 'aiohttp', 'pyroute2', 'json', 're', 'dataclasses')"
            " if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-IS", "-c",
                          f"import sys; sys.path.insert(0, {os.getcwd()!r}); " + code],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
