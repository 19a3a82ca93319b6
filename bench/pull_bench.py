"""Cold pull of a multi-layer image (~60 MB compressed, 6 layers) from a
local docker-registry on 127.0.0.1: skiff vs ``docker pull`` (a private
dockerd 20.10 started by bench/dockerd.py) vs ``podman pull``, as ratios.

With docker (the default when dockerd is installed; ``--no-docker`` skips it)
the bench process first enters the private dockerd's network namespace, so
the registry, skiff, podman and dockerd all meet on that namespace's
127.0.0.1 — same image, same registry, same conditions; nothing is on the
host's network. docker talks to its daemon over the unix socket.

Every run starts from an empty store: skiff gets a fresh data root, podman a
fresh --root/--runroot (overlay driver, its default), docker has the image
removed first. skiff runs in a subprocess so interpreter start-up counts,
as podman's and docker's process start-up do.

Run as root:  /opt/skiff/venv/bin/python bench/pull_bench.py [--runs 5] [--no-docker] [--json f]
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


def time_docker(dockerd, ref: str) -> float:
    dockerd.run("rmi", "-f", ref, check=False)
    t = time.perf_counter()
    dockerd.run("pull", "-q", ref)
    dt = time.perf_counter() - t
    dockerd.run("rmi", "-f", ref)
    return dt


def enter_netns(name: str) -> int:
    """Move this process (its main thread: children fork from it) into
    /run/netns/<name>; returns an fd of the original namespace."""
    from skiff import sys as ksys
    orig = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    ksys.setns(fd, ksys.CLONE_NEWNET)
    os.close(fd)
    return orig


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="skiff-pull-bench-")
    reg = dockerd = orig_ns = None
    versions = {}
    try:
        if not args.no_docker:
            if shutil.which("dockerd"):
                sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
                from dockerd import Dockerd
                dockerd = Dockerd().start()
                versions["docker"] = "dockerd " + dockerd.version()
                orig_ns = enter_netns(dockerd.netns)
            else:
                print("docker: not measured (dockerd missing: apt-get install docker.io)")
        img = make_image(tmp)
        size = sum(len(b) for d, b in img["blobs"].items())
        reg = R.Registry(os.path.join(tmp, "registry")).start()
        R.push_raw(reg, "bench/app", img, tag="1")
        ref = f"{reg.host}/bench/app:1"
        print(f"image: {len(img['layers'])} layers, {size / MB:.1f} MB compressed, "
              f"registry {reg.url}")
        results = {}
        tools = [("skiff", lambda: time_skiff(ref, tmp))]
        if dockerd:
            tools.append(("docker", lambda: time_docker(dockerd, ref)))
        if shutil.which("podman") and not args.no_podman:
            tools.append(("podman", lambda: time_podman(ref, tmp)))
            versions["podman"] = subprocess.run(["podman", "--version"], capture_output=True,
                                                text=True).stdout.strip()
        for name, fn in tools:
            fn()                                          # warm the registry's page cache
            results[name] = []
        for i in range(args.runs):                        # interleaved: load hits all alike
            k = i % len(tools)                            # and the order rotates
            for name, fn in tools[k:] + tools[:k]:
                results[name].append(fn())
        print(f"\ncold pull, median of {args.runs} interleaved runs "
              f"(load average {os.getloadavg()[0]:.2f}):")
        for k, v in versions.items():
            print(f"  {k}: {v}")
        med = {k: statistics.median(v) for k, v in results.items()}
        for k, v in med.items():
            print(f"  {k:7s} {v:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in results[k])})")
        ratios = {}
        for peer in ("docker", "podman"):
            if peer in med:
                ratios[peer] = med["skiff"] / med[peer]
                print(f"  skiff / {peer}: {ratios[peer]:.2f}  "
                      f"({med[peer] / med['skiff']:.2f}x {'faster' if med['skiff'] < med[peer] else 'slower'})")
        if args.json:
            import json
            with open(args.json, "w") as f:
                json.dump({"runs": results, "median": med, "ratios": ratios,
                           "versions": versions, "loadavg": os.getloadavg(),
                           "image_mb": size / MB, "layers": len(img["layers"])}, f, indent=2)
        return 0
    finally:
        if reg:
            reg.stop()
        if orig_ns is not None:
            from skiff import sys as ksys
            ksys.setns(orig_ns, ksys.CLONE_NEWNET)
            os.close(orig_ns)
        if dockerd:
            dockerd.stop()
        for d in glob.glob(os.path.join(tmp, "pr-*")):
            cleanup_podman(["podman", "--root", d], d, d)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
