"""cgroup v1 resource files (runc's libcontainer/cgroups/fs semantics)."""

import os

from skiff.errors import InvalidArgument

from . import devices as _devices
from ._io import exists, read, write


def ensure_cpuset(mount: str, path: str) -> None:
    """v1 cpuset: a new cgroup starts with empty cpus/mems and refuses tasks;
    copy them down from the closest ancestor that has them (runc ensureParent)."""
    rel = os.path.relpath(path, mount)
    cur = mount
    parts = [] if rel == "." else rel.split("/")
    for part in parts:
        parent, cur = cur, os.path.join(cur, part)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if not read(cur, f).strip():
                write(cur, f, read(parent, f).strip())


def apply(paths: dict[str, str], res: dict, *, update: bool = False) -> None:
    """Write ``linux.resources`` into the v1 hierarchies in ``paths``
    (controller → directory). Controllers not mounted are skipped, as runc
    does; a value the kernel refuses raises OSError naming file and value."""
    if not res:
        return
    if res.get("unified"):
        raise InvalidArgument("invalid configuration: cannot use unified on cgroup v1")
    mem = res.get("memory") or {}
    p = paths.get("memory")
    if p and mem:
        _memory(p, mem)
    cpu = res.get("cpu") or {}
    p = paths.get("cpu")
    if p and cpu:
        if cpu.get("shares"):
            write(p, "cpu.shares", cpu["shares"])
            got = int(read(p, "cpu.shares"))
            if got != cpu["shares"]:
                if cpu["shares"] > got:
                    raise InvalidArgument(f"the maximum allowed cpu-shares is {got}")
                raise InvalidArgument(f"the minimum allowed cpu-shares is {got}")
        if cpu.get("period"):
            write(p, "cpu.cfs_period_us", cpu["period"])
        if cpu.get("quota"):
            write(p, "cpu.cfs_quota_us", cpu["quota"])
        if cpu.get("burst") is not None and exists(p, "cpu.cfs_burst_us"):
            write(p, "cpu.cfs_burst_us", cpu["burst"])
        if cpu.get("realtimePeriod"):
            write(p, "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            write(p, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        if cpu.get("idle") is not None and exists(p, "cpu.idle"):
            write(p, "cpu.idle", cpu["idle"])
    p = paths.get("cpuset")
    if p and (cpu.get("cpus") or cpu.get("mems")):
        if cpu.get("cpus"):
            write(p, "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            write(p, "cpuset.mems", cpu["mems"])
    pids = res.get("pids") or {}
    p = paths.get("pids")
    if p and pids.get("limit"):
        write(p, "pids.max", "max" if pids["limit"] < 0 else pids["limit"])
    p = paths.get("blkio")
    if p and res.get("blockIO"):
        _blkio(p, res["blockIO"])
    p = paths.get("hugetlb")
    for h in res.get("hugepageLimits") or []:
        if p:
            write(p, f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"])
    net = res.get("network") or {}
    if paths.get("net_cls") and net.get("classID") is not None:
        write(paths["net_cls"], "net_cls.classid", net["classID"])
    if paths.get("net_prio"):
        for prio in net.get("priorities") or []:
            write(paths["net_prio"], "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")
    p = paths.get("devices")
    if p and res.get("devices") is not None:
        for rule in _devices.parse(res["devices"]):
            write(p, "devices.allow" if rule.allow else "devices.deny", rule.v1_line())


def _set_limit(p: str, value) -> None:
    try:
        write(p, "memory.limit_in_bytes", value)
    except OSError as e:
        if e.errno == 16:  # EBUSY: usage is above the new limit
            from ._io import read_int
            raise OSError(e.errno, f"unable to set memory limit to {value} (current usage: "
                          f"{read_int(p, 'memory.usage_in_bytes', 0)}, peak usage: "
                          f"{read_int(p, 'memory.max_usage_in_bytes', 0)})") from None
        raise


def _memory(p: str, mem: dict) -> None:
    limit = mem.get("limit") or 0
    swap = mem.get("swap") or 0
    has_memsw = exists(p, "memory.memsw.limit_in_bytes")
    if limit == -1 and swap == 0 and has_memsw:
        swap = -1
    if swap and not has_memsw:
        if swap != -1:
            raise InvalidArgument("Your kernel does not support swap limit capabilities "
                                  "or the cgroup is not mounted. Memory limited without swap.")
        swap = 0
    if limit and swap:
        # memsw must stay >= memory at every step: order the two writes
        cur_sw = int(read(p, "memory.memsw.limit_in_bytes"))
        if swap == -1 or swap > cur_sw:
            write(p, "memory.memsw.limit_in_bytes", swap)
            _set_limit(p, limit)
        else:
            _set_limit(p, limit)
            write(p, "memory.memsw.limit_in_bytes", swap)
    elif limit:
        _set_limit(p, limit)
    elif swap:
        write(p, "memory.memsw.limit_in_bytes", swap)
    if mem.get("reservation"):
        write(p, "memory.soft_limit_in_bytes", mem["reservation"])
    if mem.get("kernelTCP"):
        write(p, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
    if mem.get("swappiness") is not None and 0 <= mem["swappiness"] <= 100:
        write(p, "memory.swappiness", mem["swappiness"])
    if mem.get("disableOOMKiller"):
        write(p, "memory.oom_control", 1)


def _blkio(p: str, bio: dict) -> None:
    bfq = exists(p, "blkio.bfq.weight")
    wfile = "blkio.bfq.weight" if bfq else "blkio.weight"
    if bio.get("weight"):
        if not exists(p, wfile):
            raise InvalidArgument("blkio weight is not supported by this kernel "
                                  "(no blkio.weight or blkio.bfq.weight: enable the BFQ "
                                  "I/O scheduler)")
        write(p, wfile, bio["weight"])
    if bio.get("leafWeight") and exists(p, "blkio.leaf_weight"):
        write(p, "blkio.leaf_weight", bio["leafWeight"])
    for wd in bio.get("weightDevice") or []:
        if wd.get("weight"):
            f = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
            write(p, f, f"{wd['major']}:{wd['minor']} {wd['weight']}")
        if wd.get("leafWeight") and exists(p, "blkio.leaf_weight_device"):
            write(p, "blkio.leaf_weight_device",
                  f"{wd['major']}:{wd['minor']} {wd['leafWeight']}")
    for key, f in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                   ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                   ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                   ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for td in bio.get(key) or []:
            write(p, f, f"{td['major']}:{td['minor']} {td['rate']}")
