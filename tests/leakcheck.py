"""Leak check: fails a test that leaves kernel or process state behind.

Before and after every test (and around the whole session) it snapshots:
mounts, network namespaces (/run/netns), network devices of the host
namespace, cgroup directories (every v1 hierarchy and the v2 tree),
iptables rules (filter, nat, mangle, raw) and nftables tables, and the
processes that are not kernel threads. Anything present after the test that
was not there before is a leak. The host may hold other engines' objects:
the comparison is by snapshot, not by name.

SKIFF_LEAK_CHECK=strict (default) fails the test; =warn prints; =off skips
(for developers running several suites at once on one machine: the check
cannot tell whose object is whose).
"""

import os
import re
import shutil
import subprocess
import time

import pytest

MODE = os.environ.get("SKIFF_LEAK_CHECK", "strict")
CGROUP_ROOT = "/sys/fs/cgroup"


# The first `ip netns add` on a host bind-mounts /run/netns onto itself
# (shared propagation, so later netns mounts reach every mount namespace)
# and iproute2 never undoes it: host set-up, not a test's object. The netns
# mounts under it (nsfs) are still compared.
_IPROUTE_DIRS = ("/run/netns", "/var/run/netns")


def _mounts():
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[4] in _IPROUTE_DIRS and parts[sep + 1] != "nsfs":
                continue
            out.add(f"{parts[4]} {parts[sep + 1]} {parts[sep + 2]}")
    return out


def _netns():
    out = set()
    for d in _IPROUTE_DIRS:
        try:
            out |= {f"netns {n}" for n in os.listdir(d)}
        except FileNotFoundError:
            pass
    return out


def _links():
    try:
        return {f"link {n}" for n in os.listdir("/sys/class/net")}
    except FileNotFoundError:
        return set()


def _cgroups():
    out = set()
    if not os.path.isdir(CGROUP_ROOT):
        return out
    for top in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, top)
        if os.path.islink(base) or not os.path.isdir(base):
            continue
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                out.add("cgroup " + os.path.relpath(os.path.join(dirpath, d), CGROUP_ROOT))
    return out


_COUNTERS = re.compile(r"\[\d+:\d+\]")


def _iptables():
    out = set()
    for tool in ("iptables-save", "ip6tables-save"):
        if not shutil.which(tool):
            continue
        r = subprocess.run([tool], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("#") or line in ("COMMIT",):
                continue
            out.add(f"{tool} " + _COUNTERS.sub("", line).strip())
    if shutil.which("nft"):
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        out |= {"nft " + line for line in r.stdout.splitlines() if line.strip()}
    return out


def _processes():
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        ppid, flags = int(rest[1]), int(rest[6])
        if flags & 0x00200000 or ppid == 2 or int(pid) == 2:  # PF_KTHREAD
            continue
        if int(pid) == me:
            continue
        state = rest[0]
        if state == "Z":
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        out.add(f"process {pid} {comm}")
    return out


def _fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


_session_fds = {}


def _closed_fds(before):
    """File descriptors of the test process that were open before the test
    and are now closed or point elsewhere: a double close in code that ran
    in-process (it would close pytest's own saved stdio later)."""
    after = _fds()
    return sorted(f"fd {fd} ({target}) closed or replaced"
                  for fd, target in before.items()
                  if fd > 2 and _session_fds.get(fd) == target and after.get(fd) != target and not target.startswith("anon_inode")
                  and "/proc/" not in target)


def snapshot():
    return _mounts() | _netns() | _links() | _cgroups() | _iptables() | _processes()


def diff(before, after_fn, grace=3.0):
    """New objects present after the test; waits up to ``grace`` seconds for
    exiting processes and lazily torn-down objects to go."""
    deadline = time.monotonic() + grace
    while True:
        extra = after_fn() - before
        if not extra or time.monotonic() > deadline:
            return sorted(extra)
        time.sleep(0.1)


def _report(what, extra):
    msg = f"leak check: {what} left behind:\n  " + "\n  ".join(extra[:50])
    if MODE == "strict":
        pytest.fail(msg, pytrace=False)
    else:
        print("\n" + msg)


@pytest.fixture(autouse=True)
def _leak_check(request):
    if MODE == "off" or os.geteuid() != 0 or request.node.get_closest_marker("no_leak_check"):
        yield
        return
    before = snapshot()
    fds = _fds()
    yield
    closed = _closed_fds(fds)
    if closed:
        pytest.fail("leak check: test " + request.node.nodeid + " closed file descriptors it "
                    "did not open:\n  " + "\n  ".join(closed), pytrace=False)
    extra = diff(before, snapshot)
    if extra:
        _report(f"test {request.node.nodeid}", extra)


_session_before = None


def pytest_sessionstart(session):
    global _session_before
    _session_fds.update(_fds())
    if MODE != "off" and os.geteuid() == 0:
        _session_before = snapshot()


def pytest_sessionfinish(session, exitstatus):
    if _session_before is None:
        return
    extra = diff(_session_before, snapshot, grace=5.0)
    if extra:
        print("\nleak check: the test session left behind:\n  " + "\n  ".join(extra[:80]))
        if MODE == "strict" and session.exitstatus == 0:
            session.exitstatus = 1


def pytest_configure(config):
    config.addinivalue_line("markers", "no_leak_check: skip the per-test leak check")
