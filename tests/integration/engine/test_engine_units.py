"""Engine pieces that need no daemon: status strings, config, signals, users."""

import os

import pytest

from skiff import errors
from skiff.engine import container, user
from skiff.engine.config import DaemonConfig
from skiff.engine.engine import merge_env, parse_signal


def test_human_durations_match_docker():
    hd = container.human_duration
    assert hd(0.2) == "Less than a second"
    assert hd(1) == "1 second" and hd(59) == "59 seconds"
    assert hd(60) == "About a minute" and hd(120) == "2 minutes"
    assert hd(3600) == "About an hour" and hd(7200) == "2 hours"
    assert hd(3 * 86400) == "3 days"


def test_config_keys_and_runtimes(tmp_path):
    p = tmp_path / "daemon.json"
    p.write_text('{"data-root": "/x", "runtimes": {"mine": {"path": "/bin/true"}}, '
                 '"default-runtime": "mine", "default-registry": "127.0.0.1:5000"}')
    c = DaemonConfig.load(str(p))
    assert c.data_root == "/x" and c.default_registry == "127.0.0.1:5000"
    assert c.runtime_path(None) == "/bin/true" and c.runtime_path("runc").endswith("runc")
    with pytest.raises(errors.InvalidArgument, match="unknown or invalid runtime name: nope"):
        c.runtime_path("nope")
    p.write_text('{"no-such-key": 1}')
    with pytest.raises(errors.InvalidArgument, match="no-such-key"):
        DaemonConfig.load(str(p))
    c = DaemonConfig.load(str(p.with_name("absent.json")) if False else None, {"exec-root": "/r"}) \
        if not os.path.exists("/etc/skiff/daemon.json") else None
    if c is not None:
        assert c.exec_root == "/r"


def test_signals_and_env():
    assert parse_signal("SIGTERM") == 15 and parse_signal("KILL") == 9 and parse_signal("2") == 2
    assert parse_signal(None) == 9
    with pytest.raises(errors.InvalidArgument):
        parse_signal("SIGNOPE")
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4"]) == ["A=1", "B=3", "C=4"]


def test_user_resolution(busybox_rootfs):
    assert user.resolve(busybox_rootfs, "") == {"uid": 0, "gid": 0}
    assert user.resolve(busybox_rootfs, "user") == {"uid": 1000, "gid": 1000, "additionalGids": [100]}
    assert user.resolve(busybox_rootfs, "1000:33") == {"uid": 1000, "gid": 33, "additionalGids": [100]}
    with pytest.raises(errors.InvalidArgument, match="unable to find user nobody2"):
        user.resolve(busybox_rootfs, "nobody2")


def test_detach_keys():
    from skiff.engine.engine import _scan_detach, parse_detach_keys
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(errors.InvalidArgument):
        parse_detach_keys("ctrl-aa")
    assert _scan_detach(b"ab\x10", b"\x10\x11") == (b"ab", b"\x10", False)
    assert _scan_detach(b"\x10\x11rest", b"\x10\x11") == (b"", b"", True)
    assert _scan_detach(b"plain", b"\x10\x11") == (b"plain", b"", False)
