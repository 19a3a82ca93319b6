"""skiff-runtime vs runc vs crun: create + start + wait + delete of `true`.

    sudo /opt/skiff/venv/bin/python bench/runtime_bench.py [-n 30] [--json out.json]

One busybox bundle (runc's default config.json running `true`) is used for
every runtime, under the same conditions, interleaved round by round so
machine noise hits all alike. The bench process is a child subreaper, so
the container's init is re-parented to it and waited for exactly.
Reports mean/median per cycle, each phase, ratios to runc, the peers'
versions, and where skiff-runtime's own start-up time goes (interpreter,
imports, the work of each command).

crun runs in `unshare -m` with /sys/fs/cgroup/unified unmounted (it refuses
this machine's hybrid cgroup layout otherwise); that wrapper's own cost
(unshare + sh, measured as `unshare ... crun --version`) is reported too.
"""

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from skiff.testing.busybox import make_bundle  # noqa: E402

CRUN_WRAPPER = ('if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; '
                'fi; exec crun "$@"')


def runtime_argv(name):
    if name == "skiff-runtime":
        return [shutil.which("skiff-runtime") or "/usr/local/bin/skiff-runtime"]
    if name == "crun":
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", CRUN_WRAPPER, "crun"]
    return [name]


def version(name):
    exe = {"skiff-runtime": runtime_argv("skiff-runtime")[0]}.get(name, name)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "?"


def call(argv):
    # stderr to a file, not a pipe: the container inherits it and lives on
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err)
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: {err.read().decode()}")


def cycle(name, root, bundle, i):
    base = runtime_argv(name) + ["--root", root]
    cid = f"bench-{os.getpid()}-{i}"
    pidfile = os.path.join(root, f"{cid}.pid")
    t0 = time.perf_counter()
    call(base + ["create", "--bundle", bundle, "--pid-file", pidfile, cid])
    t1 = time.perf_counter()
    pid = int(open(pidfile).read())
    call(base + ["start", cid])
    t2 = time.perf_counter()
    os.waitpid(pid, 0)  # we are a subreaper: the init is our child now
    t3 = time.perf_counter()
    call(base + ["delete", cid])
    t4 = time.perf_counter()
    os.unlink(pidfile)
    return {"total": t4 - t0, "create": t1 - t0, "start": t2 - t1, "wait": t3 - t2,
            "delete": t4 - t3}


def hyper(cmd, runs=20):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def breakdown():
    """Where skiff-runtime's start-up time goes (every skiff-runtime command
    ends with _exit, so the baselines do too), beside the peers' own start."""
    exe = runtime_argv("skiff-runtime")[0]
    with open(exe) as f:
        shebang = f.readline()[2:].strip().split()
    py = shebang[0]
    flags = shebang[1:]
    quit_ = "import posix; posix._exit(0)"
    out = {"interpreter": py, "interpreter_flags": " ".join(flags)}
    out["interpreter start + _exit (nothing imported)"] = hyper([py, *flags, "-c", quit_])
    out["+ import os"] = hyper([py, *flags, "-c", "import os; " + quit_])
    out["skiff-runtime --version (launcher, cli)"] = hyper([exe, "--version"])
    out["skiff-runtime state <missing> (a whole small command)"] = hyper(
        [exe, "--root", "/tmp/skiff-bench-none", "state", "x"])
    code = ("import skiff.runtime.cli, skiff.runtime.commands, skiff.runtime.process, "
            "skiff.runtime.spec, skiff.runtime.rootfs, skiff.runtime.cgroups, "
            "skiff.runtime.caps, skiff.runtime.user, skiff.runtime.hooks, skiff.sys._ffi; ")
    out["+ every module create imports"] = hyper([py, *flags, "-c",
                                                  _path_prefix(exe) + code + quit_])
    out["runc --version (Go start)"] = hyper(["runc", "--version"])
    out["crun --version (C start)"] = hyper(["crun", "--version"])
    return out


MINIMAL_START = """import posix, select, sys
d = sys.argv[1]
fd = posix.open(d + "/exec.fifo", posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
p = select.poll()
p.register(fd, select.POLLIN | select.POLLHUP)
while not p.poll(100):
    pass
posix.read(fd, 1)
posix.close(fd)
posix.unlink(d + "/exec.fifo")
posix._exit(0)
"""


def python_floor(root, bundle, runs=15):
    """The least a Python `start` can cost here: the launcher's interpreter
    running only what start must do (open exec.fifo, wait, read, unlink), no
    state check, no skiff import; interleaved with skiff-runtime's own start
    and runc's, each on a container its runtime created. → medians (s)."""
    exe = runtime_argv("skiff-runtime")[0]
    with open(exe) as f:
        shebang = f.readline()[2:].strip().split()
    runc_root = os.path.join(root, "floor-runc")
    ts = {"minimal": [], "skiff-runtime": [], "runc": []}
    for i in range(runs):
        for kind in ts:
            cid = f"floor-{os.getpid()}-{kind}-{i}"
            base = ["runc", "--root", runc_root] if kind == "runc" else [exe, "--root", root]
            call(base + ["create", "--bundle", bundle, cid])
            argv = ([*shebang, "-c", MINIMAL_START, os.path.join(root, cid)]
                    if kind == "minimal" else base + ["start", cid])
            t = time.perf_counter()
            subprocess.run(argv, check=True)
            ts[kind].append(time.perf_counter() - t)
            call(base + ["delete", "--force", cid])
    return {k: statistics.median(v) for k, v in ts.items()}


def _path_prefix(exe):
    # the launcher may put the source dir on sys.path itself: mirror it
    with open(exe) as f:
        text = f.read()
    for line in text.splitlines():
        if line.startswith("sys.path.insert"):
            return "import sys; " + line.strip() + "; "
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="cycles per runtime")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--runtimes", default="skiff-runtime,runc,crun")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    names = args.runtimes.split(",")
    tmp = tempfile.mkdtemp(prefix="skiff-rtbench-")
    try:
        bundle = make_bundle(os.path.join(tmp, "bundle"), ["true"])
        roots = {}
        for n in names:
            roots[n] = os.path.join(tmp, "state-" + n)
            os.makedirs(roots[n])
        results = {n: [] for n in names}
        for n in names:  # warm-up
            cycle(n, roots[n], bundle, -1)
        for i in range(args.n):
            for n in names:
                results[n].append(cycle(n, roots[n], bundle, i))
        report = {"cycles": args.n, "machine": f"{os.cpu_count()} cores",
                  "versions": {n: version(n) for n in names}, "runtimes": {}}
        for n in names:
            rs = results[n]
            report["runtimes"][n] = {
                k: {"mean_ms": 1000 * statistics.mean(r[k] for r in rs),
                    "median_ms": 1000 * statistics.median(r[k] for r in rs)}
                for k in ("total", "create", "start", "wait", "delete")}
        base = report["runtimes"].get("runc", {}).get("total", {}).get("median_ms")
        if "crun" in names:
            report["crun_wrapper_cost_ms_per_call"] = 1000 * (
                hyper(runtime_argv("crun") + ["--version"]) - hyper(["crun", "--version"]))
        if "skiff-runtime" in names:
            report["skiff_runtime_breakdown_ms"] = {
                k: (round(v * 1000, 2) if isinstance(v, float) else v)
                for k, v in breakdown().items()}
            floor = python_floor(roots["skiff-runtime"], bundle)
            bd = report["skiff_runtime_breakdown_ms"]
            bd["start, interleaved: minimal Python start (fifo only, no imports)"] = round(
                1000 * floor["minimal"], 2)
            bd["start, interleaved: skiff-runtime start"] = round(
                1000 * floor["skiff-runtime"], 2)
            bd["start, interleaved: runc start"] = round(1000 * floor["runc"], 2)
        print(f"create+start+wait+delete of `true`, {args.n} cycles each, "
              f"interleaved ({report['machine']})")
        print(f"{'runtime':15} {'median':>9} {'mean':>9} {'create':>8} {'start':>8} "
              f"{'wait':>7} {'delete':>8} {'vs runc':>8}")
        for n in names:
            r = report["runtimes"][n]
            ratio = r["total"]["median_ms"] / base if base else float("nan")
            r["ratio_to_runc"] = ratio
            print(f"{n:15} {r['total']['median_ms']:8.1f}ms {r['total']['mean_ms']:8.1f}ms "
                  f"{r['create']['median_ms']:7.1f} {r['start']['median_ms']:7.1f} "
                  f"{r['wait']['median_ms']:6.1f} {r['delete']['median_ms']:7.1f} "
                  f"{ratio:7.2f}x")
        print("versions:", "; ".join(f"{k}: {v}" for k, v in report["versions"].items()))
        if "crun_wrapper_cost_ms_per_call" in report:
            print(f"crun's unshare wrapper costs ~{report['crun_wrapper_cost_ms_per_call']:.1f} "
                  "ms per call (3 calls per cycle)")
        if "skiff_runtime_breakdown_ms" in report:
            print("skiff-runtime start-up (median ms):")
            for k, v in report["skiff_runtime_breakdown_ms"].items():
                print(f"  {k}: {v}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
