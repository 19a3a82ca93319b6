"""cgroup v2 resource files (runc's libcontainer/cgroups/fs2 semantics)."""

import os

from skiff.errors import InvalidArgument

from . import convert
from . import devices as _devices
from ._io import exists, read, write


def enable_controllers(mount: str, path: str) -> None:
    """Enable every available controller in cgroup.subtree_control of each
    ancestor of ``path`` (root down to its parent), so the leaf gets the
    interface files. Controllers that cannot be enabled are skipped."""
    rel = os.path.relpath(path, mount)
    if rel == ".":
        return
    cur = mount
    for part in rel.split("/"):
        avail = read(cur, "cgroup.controllers").split()
        enabled = set(read(cur, "cgroup.subtree_control").split())
        want = [c for c in avail if c not in enabled]
        if want:
            try:
                write(cur, "cgroup.subtree_control", " ".join("+" + c for c in want))
            except OSError:
                for c in want:
                    try:
                        write(cur, "cgroup.subtree_control", "+" + c)
                    except OSError:
                        pass
        cur = os.path.join(cur, part)


def apply(path: str, res: dict, *, update: bool = False) -> None:
    """Write ``linux.resources`` into the v2 cgroup at ``path``."""
    if not res:
        return
    mem = res.get("memory") or {}
    if mem:
        limit = mem.get("limit") or 0
        swap = convert.swap_v1_to_v2(mem.get("swap") or 0, limit)
        if swap:
            if exists(path, "memory.swap.max"):
                write(path, "memory.swap.max", convert.limit_str(swap))
            elif swap != -1:
                raise InvalidArgument("memory swap limit is not supported here "
                                      "(no memory.swap.max: swap accounting is off)")
        if limit:
            write(path, "memory.max", convert.limit_str(limit))
        if mem.get("reservation"):
            write(path, "memory.low", convert.limit_str(mem["reservation"]))
        if mem.get("disableOOMKiller"):
            raise InvalidArgument("disabling the OOM killer is not supported on cgroup v2")
    cpu = res.get("cpu") or {}
    if cpu:
        if cpu.get("shares"):
            write(path, "cpu.weight", convert.shares_to_weight(cpu["shares"]))
        line = convert.cpu_max(cpu.get("quota"), cpu.get("period"))
        if line:
            write(path, "cpu.max", line)
        if cpu.get("burst") is not None and exists(path, "cpu.max.burst"):
            write(path, "cpu.max.burst", cpu["burst"])
        if cpu.get("idle") is not None and exists(path, "cpu.idle"):
            write(path, "cpu.idle", cpu["idle"])
        if cpu.get("cpus"):
            write(path, "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            write(path, "cpuset.mems", cpu["mems"])
    pids = res.get("pids") or {}
    if pids.get("limit"):
        write(path, "pids.max", convert.limit_str(pids["limit"]))
    bio = res.get("blockIO") or {}
    if bio:
        _io(path, bio)
    for h in res.get("hugepageLimits") or []:
        write(path, f"hugetlb.{h['pageSize']}.max", h["limit"])
    for key, value in (res.get("unified") or {}).items():
        write(path, key, value)
    if res.get("devices") is not None:
        from . import bpf  # only v2 hosts with device rules pay for it
        emu = _devices.Emulator().apply_all(_devices.parse(res["devices"]))
        bpf.set_device_filter(path, emu)


def _io(path: str, bio: dict) -> None:
    bfq = exists(path, "io.bfq.weight")
    if bio.get("weight"):
        if bfq:
            write(path, "io.bfq.weight", bio["weight"])
        elif exists(path, "io.weight"):
            write(path, "io.weight", convert.blkio_weight_to_io_weight(bio["weight"]))
        else:
            raise InvalidArgument("io weight is not supported by this kernel "
                                  "(no io.weight or io.bfq.weight)")
    for wd in bio.get("weightDevice") or []:
        if wd.get("weight"):
            if bfq:
                write(path, "io.bfq.weight", f"{wd['major']}:{wd['minor']} {wd['weight']}")
            else:
                write(path, "io.weight", f"{wd['major']}:{wd['minor']} "
                      f"{convert.blkio_weight_to_io_weight(wd['weight'])}")
    for key, field in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                       ("throttleReadIOPSDevice", "riops"),
                       ("throttleWriteIOPSDevice", "wiops")):
        for td in bio.get(key) or []:
            rate = td["rate"] if td["rate"] else "max"
            write(path, "io.max", f"{td['major']}:{td['minor']} {field}={rate}")
