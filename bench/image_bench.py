"""Image benchmarks, side by side with peers, as ratios.

1. Unpack of one layer holding a 200 MB file plus 20,000 small files:
   skiff's safe applier (openat2-confined, digest-verified) vs GNU tar
   (``tar -xpf``) vs umoci (``umoci raw unpack``, also digest-verified).
2. Commit of a container with a 10 MB change: skiff (diff upper dir → layer
   tar → content store + snapshot + image) vs ``podman commit`` (private
   --root under /tmp, removed afterwards).

Run as root:  /opt/skiff/venv/bin/python bench/image_bench.py [--runs 3]
Everything is created under a temporary directory and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skiff.image.archive.apply import apply_layer  # noqa: E402
from skiff.image.service import ImageService  # noqa: E402
from skiff.testing.images import make_busybox_archive  # noqa: E402

MB = 1 << 20
PY = sys.executable


def sh(*cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    return subprocess.run(list(cmd), **kw)


def timed(fn, runs: int, reset=None) -> list[float]:
    out = []
    for _ in range(runs):
        if reset:
            reset()
        os.sync()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(tools: dict, runs: int, warmup: int = 0) -> dict[str, list[float]]:
    """Round-robin the tools so that drift on a shared machine hits all.
    ``warmup`` untimed rounds first (whoever runs first after the test data
    was made and its sources deleted otherwise pays the filesystem's
    deferred work, several seconds on ext4)."""
    res: dict[str, list[float]] = {k: [] for k in tools}
    for k in tools:
        res[k + " [cpu]"] = []
    for _ in range(warmup):
        for fn, reset in tools.values():
            reset()
            fn()
    names = list(tools)
    for r in range(runs):
        # rotate the order each round: whatever a tool leaves behind for the
        # kernel to finish (writeback, freed blocks) does not always land
        # on the same successor
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, reset = tools[name]
            reset()
            os.sync()
            r0s = resource.getrusage(resource.RUSAGE_SELF)
            r0c = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            fn()
            res[name].append(time.perf_counter() - t)
            r1s = resource.getrusage(resource.RUSAGE_SELF)
            r1c = resource.getrusage(resource.RUSAGE_CHILDREN)
            res[name + " [cpu]"].append(
                (r1s.ru_utime - r0s.ru_utime) + (r1s.ru_stime - r0s.ru_stime) +
                (r1c.ru_utime - r0c.ru_utime) + (r1c.ru_stime - r0c.ru_stime))
    return res


def make_layer(work: str) -> str:
    src = os.path.join(work, "src")
    os.makedirs(src)
    with open(os.path.join(src, "big.bin"), "wb") as f:
        chunk = os.urandom(4 * MB)
        for _ in range(50):
            f.write(chunk)
    for d in range(200):
        dd = os.path.join(src, "small", f"d{d:03d}")
        os.makedirs(dd)
        for i in range(100):
            with open(os.path.join(dd, f"f{i:03d}.txt"), "wb") as f:
                f.write(os.urandom(512 + (i * 37) % 2048))
    tar = os.path.join(work, "layer.tar")
    sh("tar", "--numeric-owner", "-C", src, "-cf", tar, ".")
    shutil.rmtree(src)
    return tar


def bench_unpack(work: str, runs: int) -> dict:
    tar = make_layer(work)
    # A fresh destination per run; trees are deleted only at the end, so the
    # filesystem's work of freeing the previous run never lands in a timing.
    n = [0]
    dests = os.path.join(work, "dests")
    os.makedirs(dests)

    class Dest:
        def __fspath__(self):
            return os.path.join(dests, str(n[0]))

        def __str__(self):
            return os.fspath(self)
    dest = Dest()

    def reset():
        n[0] += 1

    def mk():
        reset()
        os.makedirs(os.fspath(dest))

    def skiff():
        with open(tar, "rb") as f:
            apply_layer(f, os.fspath(dest))
    # skiff in a fresh process too, as a one-shot command would pay it
    code = ("import sys; from skiff.image.archive.apply import apply_layer; "
            "apply_layer(open(sys.argv[1], 'rb'), sys.argv[2])")
    tools = {
        "skiff": (skiff, mk),
        "gnu tar": (lambda: sh("tar", "--numeric-owner", "-xpf", tar, "-C", str(dest)), mk),
        "skiff (new process)": (lambda: sh(PY, "-c", code, tar, str(dest)), mk),
    }
    if shutil.which("umoci"):
        svc_root = os.path.join(work, "svc")
        svc = ImageService(svc_root)
        with open(tar, "rb") as f:
            svc.import_tar(f, "bench", "layer")
        layout = os.path.join(work, "layout")
        svc.save_layout(["bench:layer"], layout)
        shutil.rmtree(svc_root)
        tools["umoci raw unpack"] = (
            lambda: sh("umoci", "raw", "unpack", "--image", f"{layout}:layer", str(dest)), reset)
    res = interleaved(tools, runs, warmup=1)
    shutil.rmtree(dests)
    os.unlink(tar)
    return res


def bench_commit(work: str, runs: int) -> dict:
    res = {}
    archive = os.path.join(work, "busybox.tar")
    make_busybox_archive(archive)
    payload = os.urandom(10 * MB)

    svc = ImageService(os.path.join(work, "skiff-root"))
    with open(archive, "rb") as f:
        svc.load(f)
    n = [0]

    def prep():
        n[0] += 1
        cid = f"bench{n[0]}"
        svc.prepare_container(cid, "busybox:latest")
        m = svc.mount_container(cid)
        try:
            with open(os.path.join(m, "payload.bin"), "wb") as f:
                f.write(payload)
        finally:
            svc.unmount_container(cid)

    def commit():
        svc.commit(f"bench{n[0]}", None, repo="committed", tag=str(n[0]))
    try:
        res.update(interleaved({"skiff commit": (commit, prep)}, runs))
    finally:
        for cid in svc.storage.container_ids():
            svc.remove_container(cid)

    if shutil.which("podman"):
        proot = os.path.join(work, "podman")
        base = ["podman", "--root", f"{proot}/root", "--runroot", f"{proot}/run",
                "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none"]
        try:
            sh(*base, "load", "-i", archive)
            k = [0]

            def pprep():
                k[0] += 1
                sh(*base, "create", "--ulimit", "nofile=1024:1024", "--ulimit",
                   "nproc=4096:4096", "--name", f"pc{k[0]}", "busybox:latest", "true")
                m = sh(*base, "mount", f"pc{k[0]}", text=True).stdout.strip()
                with open(os.path.join(m, "payload.bin"), "wb") as f:
                    f.write(payload)
                sh(*base, "umount", f"pc{k[0]}")

            res.update(interleaved({"podman commit": (
                lambda: sh(*base, "commit", "-q", f"pc{k[0]}", f"pcommitted:{k[0]}"),
                pprep)}, runs))
        finally:
            subprocess.run(base + ["rm", "-af"], capture_output=True)
            subprocess.run(base + ["rmi", "-af"], capture_output=True)
            subprocess.run(base + ["system", "reset", "-f"], capture_output=True)
            _umount_under(proot)
    return res


def _umount_under(path: str) -> None:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        mps = [l.split()[4] for l in f if l.split()[4].startswith(path)]
    for mp in sorted(mps, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def report(title: str, res: dict, ref: str) -> dict:
    print(f"\n{title}")
    out = {}
    for name, ts in res.items():
        base = statistics.median(res[ref + " [cpu]" if name.endswith("[cpu]")
                                     and ref + " [cpu]" in res else ref])
        med = statistics.median(ts)
        out[name] = {"median_s": round(med, 3), "runs": [round(t, 3) for t in ts],
                     "ratio_vs_" + ref.replace(" ", "_"): round(med / base, 2)}
        print(f"  {name:22s} median {med:7.3f} s   x{med / base:5.2f} of {ref}   "
              f"runs {', '.join(f'{t:.3f}' for t in ts)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--only", choices=("unpack", "commit"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (layer owners, overlay mounts, podman)")
    work = tempfile.mkdtemp(prefix="skiff-image-bench-", dir="/var/tmp")
    results = {}
    try:
        if args.only in (None, "unpack"):
            results["unpack"] = report("unpack: 200 MB file + 20,000 small files",
                                       bench_unpack(work, args.runs), "gnu tar")
        if args.only in (None, "commit"):
            results["commit"] = report("commit: 10 MB change on busybox",
                                       bench_commit(work, args.runs), "podman commit"
                                       if shutil.which("podman") else "skiff commit")
    finally:
        _umount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
