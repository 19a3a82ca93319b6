"""Cold pull of a multi-layer image (~60 MB compressed, 6 layers) from a
local docker-registry on 127.0.0.1: skiff vs ``podman pull`` (and vs
``docker pull`` when a dockerd answers on /var/run/docker.sock), as ratios.

Every run starts from an empty store: skiff gets a fresh data root, podman a
fresh --root/--runroot (overlay driver, its default), docker has the image
removed first. skiff runs in a subprocess so interpreter start-up counts,
as podman's and docker's process start-up do.

Run as root:  /opt/skiff/venv/bin/python bench/pull_bench.py [--runs 5]
Everything lives under a temporary directory removed at the end; the only
traffic is to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skiff.testing import busybox  # noqa: E402
from skiff.testing import registry as R  # noqa: E402

MB = 1 << 20
PY = sys.executable


def make_image(tmp: str) -> dict:
    """busybox + 4 layers of mixed data (half incompressible) + one layer of
    3,000 small text files; about 60 MB compressed."""
    rng = random.Random(42)
    rootfs = busybox.make_rootfs(os.path.join(tmp, "rootfs"))
    layers = [R.layer_tar(rootfs=rootfs)]
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(64))
             for _ in range(256)]
    for i in range(4):
        text = b"\n".join(rng.choice(words) for _ in range(12 * MB // 65))
        layers.append(R.layer_tar({f"data/blob{i}.bin": rng.randbytes(13 * MB),
                                   f"data/text{i}.txt": text}))
    small = {f"usr/share/small/{d:02d}/f{n:04d}.txt": f"file {d}/{n}\n" * rng.randint(1, 40)
             for d in range(30) for n in range(100)}
    layers.append(R.layer_tar(small))
    return R.build_image(layers)


SKIFF_PULL = """
import sys
from skiff.image.service import ImageService
from skiff.registry import pull, RegistryConfig
pull(ImageService(sys.argv[1]), sys.argv[2], config=RegistryConfig())
"""


def time_skiff(ref: str, tmp: str) -> float:
    root = tempfile.mkdtemp(prefix="skiff-pull-", dir=tmp)
    t = time.perf_counter()
    subprocess.run([PY, "-c", SKIFF_PULL, root, ref], check=True)
    dt = time.perf_counter() - t
    shutil.rmtree(root)
    return dt


def podman_base(tmp: str) -> tuple[list[str], str, str]:
    root = tempfile.mkdtemp(prefix="pr-", dir=tmp)
    runroot = tempfile.mkdtemp(prefix="pbr-", dir="/tmp")   # podman wants < 50 chars
    return (["podman", "--root", root, "--runroot", runroot, "--cgroup-manager", "cgroupfs",
             "--events-backend", "none"], root, runroot)


def cleanup_podman(base, root, runroot):
    subprocess.run(base + ["rmi", "-af"], capture_output=True)
    for d in (runroot, root):
        mounts = [line.split()[4] for line in open("/proc/self/mountinfo")
                  if line.split()[4].startswith(d)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def time_podman(ref: str, tmp: str) -> float:
    base, root, runroot = podman_base(tmp)
    try:
        t = time.perf_counter()
        subprocess.run(base + ["pull", "--quiet", "--tls-verify=false", ref], check=True,
                       capture_output=True)
        return time.perf_counter() - t
    finally:
        cleanup_podman(base, root, runroot)


def docker_running() -> bool:
    if not shutil.which("docker") or not os.path.exists("/var/run/docker.sock"):
        return False
    return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True).returncode == 0


def time_docker(ref: str) -> float:
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True)
    t = time.perf_counter()
    subprocess.run(["docker", "pull", "-q", ref], check=True, capture_output=True)
    dt = time.perf_counter() - t
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="skiff-pull-bench-")
    reg = None
    try:
        img = make_image(tmp)
        size = sum(len(b) for d, b in img["blobs"].items())
        reg = R.Registry(os.path.join(tmp, "registry")).start()
        R.push_raw(reg, "bench/app", img, tag="1")
        ref = f"{reg.host}/bench/app:1"
        print(f"image: {len(img['layers'])} layers, {size / MB:.1f} MB compressed, "
              f"registry {reg.url}")
        results = {}
        tools = [("skiff", lambda: time_skiff(ref, tmp))]
        if shutil.which("podman"):
            tools.append(("podman", lambda: time_podman(ref, tmp)))
        if docker_running():
            tools.append(("docker", lambda: time_docker(ref)))
        for name, fn in tools:
            fn()                                          # warm the registry's page cache
            results[name] = []
        for _ in range(args.runs):                        # interleaved: load hits all alike
            for name, fn in tools:
                results[name].append(fn())
        print(f"\ncold pull, median of {args.runs} interleaved runs:")
        med = {k: statistics.median(v) for k, v in results.items()}
        for k, v in med.items():
            print(f"  {k:7s} {v:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in results[k])})")
        for peer in ("podman", "docker"):
            if peer in med:
                print(f"  skiff / {peer}: {med['skiff'] / med[peer]:.2f}  "
                      f"({med[peer] / med['skiff']:.2f}x {'faster' if med['skiff'] < med[peer] else 'slower'})")
        if "docker" not in med:
            print("  docker: not measured (no dockerd running on /var/run/docker.sock)")
        return 0
    finally:
        if reg:
            reg.stop()
        for d in glob.glob(os.path.join(tmp, "pr-*")):
            cleanup_podman(["podman", "--root", d], d, d)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
