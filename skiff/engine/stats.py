"""Container stats from cgroup files (v1 and v2), in Docker's JSON shape."""

import os
import time

from skiff.engine.logs import format_ts

CG = "/sys/fs/cgroup"


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _int(path, default=0):
    v = _read(path)
    try:
        return int(v) if v not in (None, "max") else default
    except ValueError:
        return default


def _kv(path):
    out = {}
    t = _read(path)
    if t:
        for line in t.splitlines():
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out


def is_v2() -> bool:
    return os.path.exists(os.path.join(CG, "cgroup.controllers"))


def system_cpu_usage() -> int:
    t = _read("/proc/stat", "")
    for line in t.splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(x) for x in line.split()[1:8])
            return ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    return 0


def online_cpus() -> int:
    return os.cpu_count() or 1


def net_stats(pid: int) -> dict:
    out = {}
    t = _read(f"/proc/{pid}/net/dev") if pid else None
    if not t:
        return out
    for line in t.splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        f = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                     "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11]}
    return out


def sample(cgroups_path: str, pid: int) -> dict:
    """One Docker stats sample (without preread/precpu, filled by the caller)."""
    rel = cgroups_path.lstrip("/")
    mem, cpu, pids, blkio = {}, {}, {}, {"io_service_bytes_recursive": None,
                                          "io_serviced_recursive": None,
                                          "io_queue_recursive": None,
                                          "io_service_time_recursive": None,
                                          "io_wait_time_recursive": None,
                                          "io_merged_recursive": None,
                                          "io_time_recursive": None,
                                          "sectors_recursive": None}
    if is_v2():
        d = os.path.join(CG, rel)
        st = _kv(os.path.join(d, "memory.stat"))
        limit = _int(os.path.join(d, "memory.max"), 0) or _mem_total()
        mem = {"usage": _int(os.path.join(d, "memory.current")), "stats": st, "limit": limit}
        cs = _kv(os.path.join(d, "cpu.stat"))
        cpu = {"cpu_usage": {"total_usage": cs.get("usage_usec", 0) * 1000,
                             "usage_in_kernelmode": cs.get("system_usec", 0) * 1000,
                             "usage_in_usermode": cs.get("user_usec", 0) * 1000},
               "throttling_data": {"periods": cs.get("nr_periods", 0),
                                   "throttled_periods": cs.get("nr_throttled", 0),
                                   "throttled_time": cs.get("throttled_usec", 0) * 1000}}
        pids = {"current": _int(os.path.join(d, "pids.current")),
                "limit": _int(os.path.join(d, "pids.max"), 0)}
        if not pids["limit"]:
            pids.pop("limit")
    else:
        md = os.path.join(CG, "memory", rel)
        st = _kv(os.path.join(md, "memory.stat"))
        limit = _int(os.path.join(md, "memory.limit_in_bytes"), 0)
        if not limit or limit >= (1 << 62):
            limit = _mem_total()
        mem = {"usage": _int(os.path.join(md, "memory.usage_in_bytes")),
               "max_usage": _int(os.path.join(md, "memory.max_usage_in_bytes")),
               "failcnt": _int(os.path.join(md, "memory.failcnt")), "stats": st, "limit": limit}
        cd = os.path.join(CG, "cpuacct", rel)
        percpu = [int(x) for x in (_read(os.path.join(cd, "cpuacct.usage_percpu"), "") or "").split()]
        cst = _kv(os.path.join(cd, "cpuacct.stat"))
        tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        thr = _kv(os.path.join(CG, "cpu", rel, "cpu.stat"))
        cpu = {"cpu_usage": {"total_usage": _int(os.path.join(cd, "cpuacct.usage")),
                             "percpu_usage": percpu,
                             "usage_in_kernelmode": cst.get("system", 0) * tick,
                             "usage_in_usermode": cst.get("user", 0) * tick},
               "throttling_data": {"periods": thr.get("nr_periods", 0),
                                   "throttled_periods": thr.get("nr_throttled", 0),
                                   "throttled_time": thr.get("throttled_time", 0)}}
        pd = os.path.join(CG, "pids", rel)
        pids = {"current": _int(os.path.join(pd, "pids.current"))}
        lim = _int(os.path.join(pd, "pids.max"), 0)
        if lim:
            pids["limit"] = lim
    cpu["system_cpu_usage"] = system_cpu_usage()
    cpu["online_cpus"] = online_cpus()
    return {"read": format_ts(time.time_ns()), "pids_stats": pids, "blkio_stats": blkio,
            "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu, "memory_stats": mem,
            "networks": net_stats(pid)}


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _mem_total() -> int:
    t = _read("/proc/meminfo", "")
    for line in t.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0
