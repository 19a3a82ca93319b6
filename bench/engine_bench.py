"""Engine benchmark: skiff (skiffd + conmon + runtime) against docker
(dockerd 20.10 + containerd + containerd-shim-runc-v2 + runc) and podman, in
one run.

    /opt/skiff/venv/bin/python bench/engine_bench.py [-n 10] [--containers 20]
        [--no-docker] [--no-podman] [--json out.json]

Measures, end to end through each engine's CLI (the same docker CLI 28.2 for
skiffd and dockerd; podman's own CLI):
  1. ``run --rm busybox true`` (skiff with skiff-runtime, runc and crun;
     docker with runc; podman with runc and crun), with the default bridge
     network and with ``--network none``;
  2. ``exec <c> true`` latency into a running container;
  3. memory per idle container: 20 ``sleep`` containers, sum of the
     per-container monitors' RSS and PSS (skiff: conmon; docker:
     containerd-shim-runc-v2; podman: conmon), plus the daemons' own RSS.
The timed commands of all engines are interleaved round by round (the order
rotates each round), so the machine's load hits every peer alike.
skiffd and dockerd (bench/dockerd.py) each run in a network namespace of
their own with private state roots; podman runs in skiffd's namespace. No
bridge or iptables rule reaches the host's.
Prints medians and ratios (skiff / peer: < 1 means skiff is faster/smaller).
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


def timed_interleaved(cmds, n, warm=1):
    """cmds: {label: (argv, env)}. Every round runs each command once, the
    order rotated by one each round. A peer whose command fails is dropped
    (with its error printed), not the whole bench."""
    labels = list(cmds)
    times = {k: [] for k in labels}
    for _ in range(warm):
        for k in list(labels):
            argv, env = cmds[k]
            r = subprocess.run(argv, env=env, capture_output=True)
            if r.returncode != 0:
                print(f"{k}: dropped: {r.returncode} {r.stderr.decode()[-300:]}", file=sys.stderr)
                labels.remove(k)
                del times[k]
    for i in range(n):
        order = labels[i % len(labels):] + labels[:i % len(labels)] if labels else []
        for k in order:
            argv, env = cmds[k]
            t = time.perf_counter()
            r = subprocess.run(argv, env=env, capture_output=True)
            times[k].append(time.perf_counter() - t)
            if r.returncode != 0:
                raise RuntimeError(f"{k}: {' '.join(argv)}: {r.returncode} "
                                   f"{r.stderr.decode()[-400:]}")
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


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


def idle_memory(start_one, monitor_pids, remove_all, count):
    for _ in range(count):
        start_one()
    time.sleep(1)
    pids = monitor_pids()
    rss, pss = mem_of(pids)
    remove_all()
    k = max(len(pids), 1)
    return len(pids), rss / k, pss / k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    n = args.n
    root = tempfile.mkdtemp(prefix="skiff-bench-")
    d = Daemon(os.path.join(root, "skiff"), runtime="skiff-runtime")
    os.makedirs(d.root, exist_ok=True)
    results = {}
    podman = dockerd = None
    versions = {}
    try:
        d.preload()
        d.start()
        env = d.env()
        dk = ["docker", "-H", d.host]
        if not args.no_docker:
            if shutil.which("dockerd"):
                from bench.dockerd import Dockerd
                dockerd = Dockerd().start()
                dockerd.load_busybox()
                versions["docker"] = "dockerd " + dockerd.version()
            else:
                print("docker: not measured (dockerd missing: apt-get install docker.io)",
                      file=sys.stderr)
        if not args.no_podman and shutil.which("podman"):
            podman = Podman(os.path.join(root, "podman"), d.netns)
            os.makedirs(podman.root, exist_ok=True)
            podman.load_busybox()
            versions["podman"] = subprocess.run(["podman", "--version"], capture_output=True,
                                                text=True).stdout.strip()
        dd = dockerd.cli() if dockerd else None

        # 1. run --rm true, every engine interleaved
        cmds = {}
        for rt in ("skiff-runtime", "runc", "crun"):
            cmds[f"skiff/{rt} run --rm true (bridge)"] = (
                dk + ["run", "--rm", "--runtime", rt, "busybox", "true"], env)
        cmds["skiff/skiff-runtime run --rm true (none)"] = (
            dk + ["run", "--rm", "--network", "none", "busybox", "true"], env)
        if dockerd:
            cmds["docker/runc run --rm true (bridge)"] = (dd + ["run", "--rm", "busybox", "true"], env)
            cmds["docker/runc run --rm true (none)"] = (
                dd + ["run", "--rm", "--network", "none", "busybox", "true"], env)
        if podman:
            pr = podman.cmd("run", "--rm", *PODMAN_ULIMITS)
            cmds["podman/runc run --rm true (bridge)"] = (pr + ["--runtime", "runc", "busybox", "true"], None)
            # crun 1.8 refuses hybrid cgroup hosts unless the v2 tree is hidden,
            # which skiffd does in its own mount namespace and podman does not
            cmds["podman/crun run --rm true (bridge)"] = (pr + ["--runtime", "crun", "busybox", "true"], None)
            cmds["podman/runc run --rm true (none)"] = (
                pr + ["--runtime", "runc", "--network", "none", "busybox", "true"], None)
        results.update(timed_interleaved(cmds, n))

        # 2. exec latency
        cmds = {}
        subprocess.run(dk + ["run", "-d", "--name", "bx", "busybox", "sleep", "3000"], env=env,
                       check=True, capture_output=True)
        cmds["skiff exec true"] = (dk + ["exec", "bx", "true"], env)
        if dockerd:
            dockerd.run("run", "-d", "--name", "bx", "busybox", "sleep", "3000")
            cmds["docker exec true"] = (dd + ["exec", "bx", "true"], env)
        if podman:
            subprocess.run(podman.cmd("run", "-d", *PODMAN_ULIMITS, *PODMAN_RUNC, "--name", "bx",
                                      "busybox", "sleep", "3000"), check=True, capture_output=True)
            cmds["podman exec true"] = (podman.cmd("exec", "bx", "true"), None)
        results.update(timed_interleaved(cmds, n))
        subprocess.run(dk + ["rm", "-f", "bx"], env=env, capture_output=True)
        if dockerd:
            dockerd.run("rm", "-f", "bx", check=False)
        if podman:
            subprocess.run(podman.cmd("rm", "-f", "-t", "0", "bx"), capture_output=True)

        # 3. memory per idle container, one engine at a time (PSS splits shared
        # pages among every process mapping them: conmon of skiff and podman
        # would share theirs if both sets ran at once)
        c = args.containers
        cnt, rss, pss = idle_memory(
            lambda: subprocess.run(dk + ["run", "-d", "--network", "none", "busybox", "sleep",
                                         "3000"], env=env, check=True, capture_output=True),
            lambda: skiff_conmon_pids(d), d.remove_all_containers, c)
        drss, _ = mem_of([d.proc.pid]) if d.proc else (0, 0)
        results["skiff monitor (conmon) RSS KiB/container"] = (rss, None)
        results["skiff monitor (conmon) PSS KiB/container"] = (pss, None)
        results["skiff daemon RSS KiB (skiffd)"] = (drss, None)
        results["skiff monitors counted"] = (cnt, None)
        if dockerd:
            def rm_docker():
                ids = dockerd.run("ps", "-aq").stdout.split()
                if ids:
                    dockerd.run("rm", "-f", *ids)
            # daemons' RSS while the containers run
            box = {}

            def shims():
                box["daemons"] = mem_of([dockerd.dockerd.pid, dockerd.containerd.pid])[0]
                return dockerd.shim_pids()
            cnt, rss, pss = idle_memory(
                lambda: dockerd.run("run", "-d", "--network", "none", "busybox", "sleep", "3000"),
                shims, rm_docker, c)
            results["docker monitor (containerd-shim-runc-v2) RSS KiB/container"] = (rss, None)
            results["docker monitor (containerd-shim-runc-v2) PSS KiB/container"] = (pss, None)
            results["docker daemons RSS KiB (dockerd + containerd)"] = (box["daemons"], None)
            results["docker monitors counted"] = (cnt, None)
        if podman:
            cnt, rss, pss = idle_memory(
                lambda: subprocess.run(podman.cmd("run", "-d", *PODMAN_ULIMITS, *PODMAN_RUNC,
                                                  "--network", "none", "busybox", "sleep", "3000"),
                                       check=True, capture_output=True),
                podman.conmon_pids,
                lambda: subprocess.run(podman.cmd("rm", "-af", "-t", "0"), capture_output=True), c)
            results["podman monitor (conmon) RSS KiB/container"] = (rss, None)
            results["podman monitor (conmon) PSS KiB/container"] = (pss, None)
            results["podman monitors counted"] = (cnt, None)
    finally:
        if podman is not None:
            podman.cleanup()
        if dockerd is not None:
            dockerd.stop()
        d.destroy()
        # podman re-creates its overlay self-bind-mount lazily: a last sweep of
        # every mount left under the bench's root before removing it
        with open("/proc/self/mountinfo") as f:
            left = [l.split()[4] for l in f if l.split()[4].startswith(root)]
        for p in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nengine bench (n={n} interleaved rounds, {args.containers} idle containers, "
          f"median [min]); load average {os.getloadavg()[0]:.2f}")
    for k, v in versions.items():
        print(f"  {k}: {v}")
    for k, (med, mn) in results.items():
        if "KiB" in k or "counted" in k:
            print(f"  {k:62s} {med:10.0f}")
        else:
            print(f"  {k:62s} {med * 1000:8.0f} ms  [{mn * 1000:.0f}]")

    ratios = {}

    def ratio(a, b):
        if a in results and b in results and results[b][0]:
            ratios[f"{a} / {b}"] = results[a][0] / results[b][0]
            print(f"  {a} / {b}: {ratios[f'{a} / {b}']:.2f}")
    for peer in ("docker", "podman"):
        print(f"\nratios (skiff / {peer})")
        ratio("skiff/skiff-runtime run --rm true (bridge)", f"{peer}/runc run --rm true (bridge)")
        ratio("skiff/runc run --rm true (bridge)", f"{peer}/runc run --rm true (bridge)")
        ratio("skiff/crun run --rm true (bridge)", f"{peer}/crun run --rm true (bridge)")
        ratio("skiff/skiff-runtime run --rm true (none)", f"{peer}/runc run --rm true (none)")
        ratio("skiff exec true", f"{peer} exec true")
        mon = "containerd-shim-runc-v2" if peer == "docker" else "conmon"
        ratio("skiff monitor (conmon) RSS KiB/container", f"{peer} monitor ({mon}) RSS KiB/container")
        ratio("skiff monitor (conmon) PSS KiB/container", f"{peer} monitor ({mon}) PSS KiB/container")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"n": n, "loadavg": os.getloadavg(), "versions": versions,
                       "results": results, "ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
