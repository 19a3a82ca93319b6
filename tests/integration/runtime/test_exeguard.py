"""skiff-runtime's own executable stays out of the container's reach
(CVE-2019-5736): the installed launcher runs from a read-only bind mount of
the interpreter (skiff/runtime/exeguard.py), re-made when it is missing;
started any other way, each container gets a sealed memfd copy instead.
These are skiff-runtime's own mechanisms (the peers are Go/C binaries with
their own), so the tests run it alone."""

import errno
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.runtime.conftest import Runtime, skiff_runtime_argv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _launcher_interpreter():
    exe = shutil.which("skiff-runtime")
    if exe is None:
        pytest.fail("skiff-runtime is not installed (run ./install.sh --dev)")
    with open(exe, "rb") as f:
        first = f.readline().decode()
    if not first.startswith("#!"):
        pytest.fail(f"{exe} is not the launcher install.sh writes")
    return first[2:].split()[0]


def _created_init_exe(rt, bundle):
    """Create a container; → (its id, what the waiting init's exe link shows)."""
    cid = rt.create(bundle)
    pid = rt.state(cid)["pid"]
    return cid, os.readlink(f"/proc/{pid}/exe")


def test_launcher_interpreter_is_a_read_only_mount():
    guard = _launcher_interpreter()
    assert os.path.basename(guard) == "skiff-runtime-python"
    assert os.statvfs(guard).f_flag & os.ST_RDONLY
    with pytest.raises(OSError) as e:
        os.open(guard, os.O_WRONLY | os.O_APPEND)
    # EROFS; ETXTBSY comes first while the interpreter runs (this test does)
    assert e.value.errno in (errno.EROFS, errno.ETXTBSY)


def test_waiting_init_runs_from_the_read_only_interpreter(make_bundle, tmp_path):
    rt = Runtime("skiff-runtime", str(tmp_path / "root"))
    try:
        cid, exe = _created_init_exe(rt, make_bundle(["true"]))
        assert exe == _launcher_interpreter()
        pid = rt.state(cid)["pid"]
        # the link leads to the read-only mount, whichever namespace opens it
        assert os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY
        with pytest.raises(OSError) as e:
            os.open(f"/proc/{pid}/exe", os.O_WRONLY | os.O_APPEND)
        assert e.value.errno in (errno.EROFS, errno.ETXTBSY)
        rt.start(cid)
        rt.wait_exit(cid)
        rt.delete(cid)
    finally:
        rt.cleanup()


def test_missing_guard_mount_is_remade(make_bundle, tmp_path):
    """After a reboot the bind mount is gone: the first command makes it
    again (here in a private mount namespace, so the host's stays as is)."""
    guard = _launcher_interpreter()
    bundle = make_bundle(["echo", "ran"])
    root = tmp_path / "root"
    script = ('set -e; umount "$1"; shift; '
              'if grep -q " $G " /proc/self/mountinfo; then echo STILL; fi; '
              '"$@"; grep " $G " /proc/self/mountinfo | grep -q " ro," && echo REMADE')
    argv = [*skiff_runtime_argv(), "--root", str(root), "run", "--bundle", bundle, "g1"]
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        guard, *argv], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, G=guard), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ran", "REMADE"]
    # the host's own mount was never touched
    assert os.statvfs(guard).f_flag & os.ST_RDONLY


def test_without_the_launcher_each_container_gets_a_sealed_copy(make_bundle, tmp_path):
    """`python -m skiff.runtime.cli` runs from the venv's writable
    interpreter: the in-container stages then re-exec from a sealed memfd."""
    rt = Runtime("skiff-runtime", str(tmp_path / "root"))
    rt.base = [sys.executable, "-m", "skiff.runtime.cli"]
    try:
        cid, exe = _created_init_exe(rt, make_bundle(["sh", "-c", "echo ok"]))
        assert exe.startswith("/memfd:skiff-runtime"), exe
        rt.start(cid)
        rt.wait_exit(cid)
        p = rt.exec(cid, "true")
        assert p.returncode != 0  # stopped: exec refused, as runc does
        rt.delete(cid)
        r = rt.run(make_bundle(["sh", "-c", "echo via-sealed"]))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "via-sealed\n"
    finally:
        rt.cleanup()
