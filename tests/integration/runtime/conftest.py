"""Differential test harness: every test here runs against skiff-runtime,
runc and crun alike, so each check is proven on the peers first.

Fixtures
--------
``runtime`` (parametrized over ``skiff-runtime``, ``runc``, ``crun``)
    A :class:`Runtime` with its own ``--root`` state directory (under the
    test's tmp dir). A peer that cannot run here *fails* the test (it is
    never skipped). On teardown every container left in that root is
    ``delete --force``'d, so a failing test leaks nothing.

    - ``runtime.name``            "skiff-runtime" | "runc" | "crun"
    - ``runtime.root``            the ``--root`` directory
    - ``runtime.argv(*args)``     full argv: binary (+ wrapper), ``--root``, args
    - ``runtime.cmd(*args, input=None, timeout=60, check=False, **popen_kw)``
                                  run one command, return ``subprocess.CompletedProcess``
                                  (text, stdout/stderr captured, stdin /dev/null
                                  unless ``input`` is given)
    - ``runtime.run(bundle, *args, id=None, timeout=60)``
                                  ``run --bundle BUNDLE [args] ID`` in the foreground
                                  to completion → CompletedProcess (``.returncode``
                                  is the container's exit code, ``.stdout`` its output)
    - ``runtime.create(bundle, *args, id=None)`` → container id (raises on failure;
                                  stdio of the container goes to /dev/null unless
                                  ``stdout=`` file object is given)
    - ``runtime.start(id)``, ``runtime.state(id)`` (dict), ``runtime.kill(id, sig)``,
      ``runtime.delete(id, force=False)``, ``runtime.exec(id, *argv, opts=())``
                                  thin wrappers of the verbs (CompletedProcess or dict)
    - ``runtime.wait_exit(id, timeout=10)`` poll ``state`` until "stopped"
    - ``runtime.new_id()``        a unique container id

``make_bundle(args, terminal=False, readonly=False)`` (from tests/conftest.py)
    gives a fresh busybox bundle with runc's default config.json.

Helpers (import from this module: ``from tests.integration.runtime.conftest import ...``)
    - ``edit_config(bundle, fn)``  load config.json, call ``fn(spec)`` (mutate in
                                  place), write it back
    - ``run_bundle(runtime, bundle)`` → ``(exit_code, stdout)``; runs to completion
    - ``host_pid(runtime, id)``    the container init's pid as the host sees it
    - ``with_userns(spec)``        a new user namespace (root = host 100000)

crun 1.8 refuses to run on this machine's hybrid cgroup layout unless the
cgroup2 tree at /sys/fs/cgroup/unified is unmounted; it is wrapped in
``unshare -m`` (private mount namespace) that unmounts it first.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

RUNTIMES = ["skiff-runtime", "runc", "crun"]
_ids = itertools.count()

CRUN_WRAPPER = ('if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; '
                'exec crun "$@"')


def skiff_runtime_argv():
    """How to start skiff-runtime: the console script on PATH, else the module."""
    exe = shutil.which("skiff-runtime")
    if exe:
        return [exe]
    return [sys.executable, "-m", "skiff.runtime.cli"]


class Runtime:
    def __init__(self, name, root):
        self.name = name
        self.root = root
        if name == "skiff-runtime":
            self.base = skiff_runtime_argv()
        elif name == "crun":
            self.base = ["unshare", "-m", "--propagation", "private", "sh", "-c", CRUN_WRAPPER,
                         "crun"]
        else:
            self.base = [name]

    def __repr__(self):
        return f"<Runtime {self.name} root={self.root}>"

    def argv(self, *args):
        return [*self.base, "--root", self.root, *[str(a) for a in args]]

    def cmd(self, *args, input=None, timeout=60, check=False, **kw):
        kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
        kw.setdefault("text", True)
        if input is None:
            kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.run(self.argv(*args), input=input, timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(map(str, args))} failed "
                                 f"({p.returncode}): {p.stderr}")
        return p

    def new_id(self):
        return f"t{os.getpid()}-{next(_ids)}"

    def run(self, bundle, *args, id=None, timeout=60, **kw):
        return self.cmd("run", "--bundle", bundle, *args, id or self.new_id(),
                        timeout=timeout, **kw)

    def create(self, bundle, *args, id=None, stdout=None, **kw):
        cid = id or self.new_id()
        out = stdout if stdout is not None else subprocess.DEVNULL
        # the container inherits stdio: capture the runtime's stderr in a file,
        # never a pipe (a pipe would stay open as long as the container lives)
        with tempfile.TemporaryFile(mode="w+") as err:
            p = subprocess.run(self.argv("create", "--bundle", bundle, *args, cid),
                               stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               timeout=60, **kw)
            if p.returncode != 0:
                err.seek(0)
                raise AssertionError(f"{self.name} create failed ({p.returncode}): {err.read()}")
        return cid

    def start(self, cid, check=True):
        return self.cmd("start", cid, check=check)

    def state(self, cid):
        p = self.cmd("state", cid, check=True)
        return json.loads(p.stdout)

    def kill(self, cid, sig="KILL", *opts, check=True):
        return self.cmd("kill", *opts, cid, sig, check=check)

    def delete(self, cid, force=False, check=True):
        return self.cmd("delete", *(["--force"] if force else []), cid, check=check)

    def exec(self, cid, *argv, opts=(), **kw):
        return self.cmd("exec", *opts, cid, *argv, **kw)

    def list_ids(self):
        p = self.cmd("list", "--format", "json")
        if p.returncode != 0 or not p.stdout.strip() or p.stdout.strip() == "null":
            return []
        return [c["id"] for c in json.loads(p.stdout)]

    def wait_exit(self, cid, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(cid)["status"] == "stopped":
                return
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: container {cid} still running after {timeout}s")

    def cleanup(self):
        for cid in self.list_ids():
            self.cmd("delete", "--force", cid, timeout=30)


def _check_available(name):
    tool = "skiff-runtime" if name == "skiff-runtime" else name
    if name == "skiff-runtime":
        return
    if shutil.which(tool) is None:
        pytest.fail(f"peer runtime {tool} is not installed (a peer that cannot run fails)")
    if name == "crun" and shutil.which("unshare") is None:
        pytest.fail("crun needs util-linux unshare here")


@pytest.fixture(params=RUNTIMES)
def runtime(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _check_available(request.param)
    root = tmp_path / f"state-{request.param}"
    root.mkdir()
    rt = Runtime(request.param, str(root))
    yield rt
    rt.cleanup()


def edit_config(bundle, fn):
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
    fn(spec)
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return spec


def run_bundle(runtime, bundle, *args, timeout=60):
    """Run ``bundle`` to completion; return (exit code, stdout)."""
    p = runtime.run(bundle, *args, timeout=timeout)
    return p.returncode, p.stdout


def with_userns(spec):
    """Give ``spec`` a new user namespace with root mapped to host 100000
    (65536 ids), without the mounts a user namespace cannot make here (sysfs
    needs a netns it owns; cgroup). The rootfs must be owned by 100000."""
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] not in ("sysfs", "cgroup")]


def host_pid(runtime, cid):
    return runtime.state(cid)["pid"]
