"""Fixtures: every test runs its NetworkManager inside a "host" network
namespace of its own (the test thread setns()es there), so skiff0, the SKIFF
chains and every address stay out of the real host and out of other tests."""

import os
import secrets
import shutil
import signal
import subprocess
import tempfile

import pytest

from skiff import sys as ksys
from skiff.network import netns as nsmod


class NamedNetns:
    """A network namespace bind-mounted in a temporary directory (not under
    /run/netns: the first ``ip netns add`` on a host leaves a /run/netns mount
    behind, which the leak check would see)."""

    def __init__(self, prefix):
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        self.dir = tempfile.mkdtemp(prefix=f"{prefix}-")
        self.path = nsmod.create(os.path.join(self.dir, "net"))
        self.exec(["ip", "link", "set", "lo", "up"])

    def exec(self, cmd, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["nsenter", f"--net={self.path}", *cmd], **kw)

    def delete(self):
        nsmod.delete(self.path)
        shutil.rmtree(self.dir, ignore_errors=True)


def _unmount_under(root):
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for t in sorted((t for t in targets if t.startswith(root + "/")), reverse=True):
        try:
            ksys.umount(t, ksys.MNT_DETACH)
        except OSError:
            pass


@pytest.fixture
def hostns():
    """A fresh network namespace that the test thread lives in for the test
    (subprocesses and threads started from it inherit it)."""
    ns = NamedNetns("skt-host")
    orig = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ksys.setns(fd, ksys.CLONE_NEWNET)
    finally:
        os.close(fd)
    try:
        yield ns
    finally:
        ksys.setns(orig, ksys.CLONE_NEWNET)
        os.close(orig)
        ns.delete()


@pytest.fixture
def procs():
    """Processes a test starts; killed (whole process group) at the end."""
    started = []

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, **kw)
        started.append(p)
        return p
    yield start
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@pytest.fixture
def manager_factory(hostns, tmp_path):
    """``make(config=None)`` → a NetworkManager on tmp state, torn down
    (containers, networks, chains, bridges, netns mounts) at the end."""
    from skiff.network import NetworkManager
    made = []

    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\nsearch test.invalid\n")  # never the real host's

    def make(config=None, state="state"):
        cfg = {"resolv-conf": str(resolv)}
        cfg.update(config or {})
        m = NetworkManager(str(tmp_path / state), str(tmp_path / "run"), cfg)
        made.append(m)
        return m
    yield make
    for m in made:
        try:
            db = m.store.read()
            for r in db.execute("SELECT container_id FROM sandboxes").fetchall():
                m.teardown_container(r[0])
            for r in db.execute("SELECT id FROM networks WHERE predefined=0").fetchall():
                m.remove(r[0])
            m.cleanup()
        finally:
            m.close()
    _unmount_under(str(tmp_path))


@pytest.fixture
def manager(manager_factory):
    m = manager_factory()
    m.ensure_default()
    return m


@pytest.fixture
def outside(hostns):
    """An "outside" host: its own namespace linked to the test host by a veth
    pair, host side 10.200.0.1/24, outside 10.200.0.2/24."""
    from pyroute2 import IPRoute
    ns = NamedNetns("skt-out")
    with IPRoute() as ip:
        ip.link("add", ifname="skt-up", kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns.path})
        idx = ip.link_lookup(ifname="skt-up")[0]
        ip.addr("add", index=idx, address="10.200.0.1", prefixlen=24)
        ip.link("set", index=idx, state="up")
    ns.exec(["ip", "addr", "add", "10.200.0.2/24", "dev", "eth0"], check=True)
    ns.exec(["ip", "link", "set", "eth0", "up"], check=True)
    ns.address = "10.200.0.2"
    try:
        yield ns
    finally:
        ns.delete()
        from pyroute2.netlink.exceptions import NetlinkError
        with IPRoute() as ip:  # usually gone with its peer already
            for idx in ip.link_lookup(ifname="skt-up"):
                try:
                    ip.link("del", index=idx)
                except NetlinkError:
                    pass


def in_ns(path, cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 20)
    return subprocess.run(["nsenter", f"--net={path}", *cmd], **kw)


def run_in(path, fn, *a):
    return nsmod.run_in_netns(path, fn, *a)
