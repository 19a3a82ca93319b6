"""skiff-runtime as a drop-in runc under containerd: Debian's containerd 1.6
and its containerd-shim-runc-v2 drive it (`ctr run --runc-binary`) through
run, run -d, exec (and a failing one), ps, pause, resume, kill and delete.

containerd runs with its own config, root, state and socket under the
test's tmp dir, inside a private mount namespace with a tmpfs on /run (the
shim and ctr write /run/containerd whatever their flags say), so nothing of
it reaches the host; the cgroups it makes (/<namespace>/<id>) are removed
afterwards."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from skiff.runtime import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/sock"
[ttrpc]
  address = "{d}/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""

SCRIPT = r"""
set -u
mount -t tmpfs tmpfs /run
containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
cpid=$!
i=0; while [ ! -S "$D/sock" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
c() { ctr -a "$D/sock" -n "$NS" "$@"; }
IMG=docker.io/library/busybox:latest
c image import "$D/bb.tar" >/dev/null
echo "== run"
c run --rm --runc-binary "$RT" $IMG c1 sh -c 'echo hello from c1; grep -c ":/'$NS'/c1$" /proc/self/cgroup; wc -l < /proc/self/cgroup'
echo "== run -d"
c run -d --runc-binary "$RT" $IMG c2 sleep 300
c task ls | grep -w c2
echo "== state"
"$RT" --root "/run/containerd/runc/$NS" state c2 | grep '"status"'
echo "== exec"
c task exec --exec-id e1 c2 sh -c 'echo exec ok; tr "\\0" " " < /proc/1/cmdline; echo'
echo "== exec bad"
c task exec --exec-id e2 c2 nope 2>&1; echo "rc=$?"
echo "== ps"
c task ps c2 | tail -n +2 | wc -l
echo "== pause"
c task pause c2; c task ls | grep -w c2
c task resume c2; c task ls | grep -w c2
echo "== kill"
c task kill -s SIGKILL c2
i=0; while ! c task ls | grep -w c2 | grep -q STOPPED && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
c task ls | grep -w c2
c task delete c2 >/dev/null; c container delete c2
echo "== left"
c task ls | tail -n +2 | wc -l
c image rm $IMG >/dev/null
kill $cpid; wait $cpid
echo "== end"
"""


@pytest.fixture
def containerd_env(tmp_path):
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (install.sh --dev installs containerd)")
    d = tmp_path / "ctd"
    d.mkdir()
    (d / "config.toml").write_text(CONFIG.format(d=d))
    subprocess.run([sys.executable, "-m", "skiff.testing.images", str(d / "bb.tar"),
                    "busybox:latest"], check=True, capture_output=True)
    ns = f"skiff-test-ctd{os.getpid()}"
    yield d, ns
    # whatever survived: processes that name our dir (containerd, shims)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if str(d).encode() in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    cgroups.for_spec(ns, {"cgroupsPath": "/" + ns}).destroy()


def test_containerd_drives_skiff_runtime(containerd_env):
    d, ns = containerd_env
    rt = shutil.which("skiff-runtime")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", SCRIPT],
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, D=str(d), NS=ns, RT=rt))
    log = (d / "containerd.log").read_text() if (d / "containerd.log").exists() else ""
    out = p.stdout
    sections = {}
    name = None
    for line in out.splitlines():
        if line.startswith("== "):
            name = line[3:]
            sections[name] = []
        elif name:
            sections[name].append(line)
    assert "end" in sections, (out, p.stderr, log[-2000:])
    # every hierarchy's cgroup is /<namespace>/<id>, as with runc
    hello, in_ns, total = sections["run"]
    assert hello == "hello from c1" and in_ns == total and int(total) >= 1, out
    assert "RUNNING" in sections["run -d"][-1]
    # the shim drove skiff-runtime: its own state is where the shim keeps runc's
    assert sections["state"] == ['  "status": "running",'], out
    assert sections["exec"] == ["exec ok", "sleep 300 "], out
    bad = "\n".join(sections["exec bad"])
    assert ('OCI runtime exec failed: exec failed: unable to start container process: '
            'exec: "nope": executable file not found in $PATH') in bad
    assert sections["exec bad"][-1] != "rc=0"
    assert sections["ps"] == ["1"]
    assert "PAUSED" in sections["pause"][0] and "RUNNING" in sections["pause"][1]
    assert "STOPPED" in sections["kill"][-1]
    assert sections["left"] == ["0"]
