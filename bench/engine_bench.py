"""Engine benchmark: skiff (skiffd + conmon + runtime) against podman, in one run.

    /opt/skiff/venv/bin/python bench/engine_bench.py [-n 10] [--containers 20]

Measures, end to end through each engine's CLI:
  1. ``run --rm busybox true`` (skiff with skiff-runtime, runc and crun; podman with runc);
     with the default bridge network and with ``--network none``;
  2. ``exec <c> true`` latency into a running container;
  3. memory per idle container: 20 ``sleep`` containers, sum of the monitors'
     RSS and PSS (conmon for both engines), plus skiffd's own RSS.
Everything runs in a private network namespace and private state roots, so
no bridge or iptables rule reaches the host's. docker is not measured:
dockerd (docker.io) is not installed here and would set up its bridge and
iptables chains on the host network; say so in the output.
Prints a table and ratios (skiff / podman: < 1 means skiff is faster/smaller).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.e2e.conftest import Daemon  # noqa: E402  (the e2e daemon harness)

PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PODMAN_RUNC = ["--runtime", "runc"]


def timed(cmd, n, env=None, warm=1):
    for _ in range(warm):
        subprocess.run(cmd, env=env, capture_output=True)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True)
        out.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.returncode} {r.stderr.decode()[-400:]}")
    return statistics.median(out), min(out)


def mem_of(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


class Podman:
    def __init__(self, root, netns):
        self.root = root
        self.netns = netns
        self.base = ["nsenter", f"--net=/run/netns/{netns}", "--", "podman",
                     "--root", os.path.join(root, "root"), "--runroot", os.path.join(root, "run"),
                     "--tmpdir", os.path.join(root, "tmp"), "--cgroup-manager", "cgroupfs",
                     "--events-backend", "none"]

    def cmd(self, *a):
        return self.base + list(a)

    def load_busybox(self):
        from skiff.testing.images import make_busybox_archive
        path = os.path.join(self.root, "busybox.tar")
        make_busybox_archive(path, repo_tags=("docker.io/library/busybox:latest",))
        subprocess.run(self.cmd("load", "-i", path), check=True, capture_output=True)

    def conmon_pids(self):
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "conmon":
                        continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.root.encode() in f.read():
                        out.append(int(pid))
            except OSError:
                pass
        return out

    def cleanup(self):
        subprocess.run(self.cmd("rm", "-af", "-t", "0"), capture_output=True)
        subprocess.run(self.cmd("system", "reset", "-f"), capture_output=True)
        # whatever podman left mounted under its private root goes too
        with open("/proc/self/mountinfo") as f:
            points = [l.split()[4] for l in f if self.root in l.split()[4]]
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)


def skiff_conmon_pids(d):
    base = os.path.join(d.exec_root, "conmon")
    out = []
    for cid in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(os.path.join(base, cid, "conmon.pid")) as f:
                out.append(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--no-podman", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    n = args.n
    root = tempfile.mkdtemp(prefix="skiff-bench-")
    d = Daemon(os.path.join(root, "skiff"), runtime="skiff-runtime")
    os.makedirs(d.root, exist_ok=True)
    results = {}
    podman = None
    try:
        d.preload()
        d.start()
        env = d.env()
        dk = ["docker", "-H", d.host]
        for rt in ("skiff-runtime", "runc", "crun"):
            results[f"skiff/{rt} run --rm true (bridge)"] = timed(
                dk + ["run", "--rm", "--runtime", rt, "busybox", "true"], n, env)
        results["skiff/skiff-runtime run --rm true (none)"] = timed(
            dk + ["run", "--rm", "--network", "none", "busybox", "true"], n, env)
        subprocess.run(dk + ["run", "-d", "--name", "bx", "busybox", "sleep", "3000"], env=env,
                       check=True, capture_output=True)
        results["skiff exec true"] = timed(dk + ["exec", "bx", "true"], n, env)
        subprocess.run(dk + ["rm", "-f", "bx"], env=env, capture_output=True)
        for i in range(args.containers):
            subprocess.run(dk + ["run", "-d", "--network", "none", "busybox", "sleep", "3000"],
                           env=env, check=True, capture_output=True)
        time.sleep(1)
        pids = skiff_conmon_pids(d)
        rss, pss = mem_of(pids)
        results["skiff monitors (conmon) RSS KiB/container"] = (rss / max(len(pids), 1), None)
        results["skiff monitors (conmon) PSS KiB/container"] = (pss / max(len(pids), 1), None)
        drss, _ = mem_of([d.proc.pid]) if d.proc else (0, 0)
        # nsenter execs skiffd in place, so the Popen pid is skiffd
        results["skiffd RSS KiB (whole daemon)"] = (drss, None)
        d.remove_all_containers()

        if not args.no_podman and shutil.which("podman"):
            podman = Podman(os.path.join(root, "podman"), d.netns)
            os.makedirs(podman.root, exist_ok=True)
            podman.load_busybox()
            pr = podman.cmd("run", "--rm", *PODMAN_ULIMITS)
            results["podman/runc run --rm true (bridge)"] = timed(
                pr + ["--runtime", "runc", "busybox", "true"], n)
            # crun 1.8 refuses hybrid cgroup hosts unless the v2 tree is hidden,
            # which skiffd does in its own mount namespace and podman does not
            try:
                results["podman/crun run --rm true (bridge)"] = timed(
                    pr + ["--runtime", "crun", "busybox", "true"], n)
            except RuntimeError as e:
                print(f"podman/crun: {str(e)[-160:]}", file=sys.stderr)
            results["podman/runc run --rm true (none)"] = timed(
                pr + ["--runtime", "runc", "--network", "none", "busybox", "true"], n)
            subprocess.run(podman.cmd("run", "-d", *PODMAN_ULIMITS, *PODMAN_RUNC, "--name", "bx", "busybox",
                                      "sleep", "3000"), check=True, capture_output=True)
            results["podman exec true"] = timed(podman.cmd("exec", "bx", "true"), n)
            subprocess.run(podman.cmd("rm", "-f", "-t", "0", "bx"), capture_output=True)
            for i in range(args.containers):
                subprocess.run(podman.cmd("run", "-d", *PODMAN_ULIMITS, *PODMAN_RUNC,
                                          "--network", "none",
                                          "busybox", "sleep", "3000"), check=True, capture_output=True)
            time.sleep(1)
            pids = podman.conmon_pids()
            rss, pss = mem_of(pids)
            results["podman monitors (conmon) RSS KiB/container"] = (rss / max(len(pids), 1), None)
            results["podman monitors (conmon) PSS KiB/container"] = (pss / max(len(pids), 1), None)
    finally:
        if podman is not None:
            podman.cleanup()
        d.destroy()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nengine bench (n={n}, {args.containers} idle containers, median [min])")
    for k, (med, mn) in results.items():
        if "KiB" in k:
            print(f"  {k:52s} {med:10.0f}")
        else:
            print(f"  {k:52s} {med * 1000:8.0f} ms  [{mn * 1000:.0f}]")

    def ratio(a, b):
        if a in results and b in results and results[b][0]:
            print(f"  {a} / {b}: {results[a][0] / results[b][0]:.2f}")
    print("\nratios (skiff / podman)")
    ratio("skiff/skiff-runtime run --rm true (bridge)", "podman/runc run --rm true (bridge)")
    ratio("skiff/runc run --rm true (bridge)", "podman/runc run --rm true (bridge)")
    ratio("skiff/crun run --rm true (bridge)", "podman/crun run --rm true (bridge)")
    ratio("skiff/skiff-runtime run --rm true (none)", "podman/runc run --rm true (none)")
    ratio("skiff exec true", "podman exec true")
    ratio("skiff monitors (conmon) PSS KiB/container", "podman monitors (conmon) PSS KiB/container")
    print("\ndocker: not measured — dockerd is not installed here, and running it would put its "
          "bridge and iptables chains on the host network.")


if __name__ == "__main__":
    main()
