"""Pure conversions and validation for ``linux.resources`` (no I/O).

The numbers follow runc (libcontainer/cgroups/utils.go and fs2), so a spec
written for runc means the same thing here on cgroup v1 and v2.
"""

from skiff.errors import InvalidArgument

MAX_CPU_SHARES = 262144
MIN_CPU_SHARES = 2


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), runc's linear map.
    0 means "unset" and stays 0."""
    if not shares:
        return 0
    q = (shares - 2) * 9999
    # Go's integer division truncates toward zero (shares=1 → weight 1)
    return 1 + (q // 262142 if q >= 0 else -(-q // 262142))


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) → io.weight (1..10000), runc's map. 0 = unset."""
    if not weight:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_v1_to_v2(memory_swap: int, memory: int) -> int:
    """OCI ``memory.swap`` is memory+swap (the v1 memsw limit); v2's
    memory.swap.max is swap alone. Returns the v2 value: -1 = "max",
    0 = leave unset. Raises InvalidArgument for impossible pairs."""
    memory_swap = memory_swap or 0
    memory = memory or 0
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0):
        return memory_swap
    if memory in (0, -1):
        raise InvalidArgument("unable to set swap limit without memory limit")
    if memory < 0:
        raise InvalidArgument(f"invalid memory value: {memory}")
    if memory_swap < memory:
        raise InvalidArgument("memory+swap limit should be >= memory limit")
    return memory_swap - memory


def limit_str(value: int) -> str:
    """-1 (or any negative) → "max" (v2 files), else the number."""
    return "max" if value is not None and value < 0 else str(value)


def cpu_max(quota, period) -> str | None:
    """The v2 ``cpu.max`` line for OCI quota/period (runc: quota ≤ 0 = "max")."""
    quota = quota or 0
    period = period or 0
    if not quota and not period:
        return None
    s = str(quota) if quota > 0 else "max"
    if period:
        s += f" {period}"
    return s


def _digits(s: str) -> bool:
    return bool(s) and all("0" <= c <= "9" for c in s)


def _cpuset_ok(value: str) -> bool:
    """``N`` or ``N-M`` items separated by commas, blanks around the commas
    and at the ends (no ``re``: its import costs skiff-runtime's create ~8 ms)."""
    for part in value.split(","):
        a, dash, b = part.strip(" \t\n\r\f\v").partition("-")
        if not _digits(a) or (dash and not _digits(b)):
            return False
    return True


def check_cpuset(what: str, value: str) -> str:
    if not _cpuset_ok(value):
        raise InvalidArgument(f"invalid {what} value {value!r}: want a list like 0-2,4")
    for part in value.split(","):
        if "-" in part:
            a, b = part.split("-")
            if int(a) > int(b):
                raise InvalidArgument(f"invalid {what} value {value!r}: range {part} is reversed")
    return value.replace(" ", "")


def parse_cpuset(value: str) -> set[int]:
    out = set()
    for part in value.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return out


def _int(d: dict, key: str, where: str, minimum=None):
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"invalid {where}.{key}: {v!r} is not an integer")
    if minimum is not None and v < minimum:
        raise InvalidArgument(f"invalid {where}.{key}: {v} (minimum {minimum})")
    return v


def _page_size_ok(s: str) -> bool:
    """``<digits>KB|MB|GB|TB|PB`` (hugepageLimits.pageSize)."""
    return s[-2:] in ("KB", "MB", "GB", "TB", "PB") and _digits(s[:-2])


def validate(res: dict | None) -> dict:
    """Check ``linux.resources`` types and ranges before anything is created
    (bad input leaves no partial state). Returns the dict unchanged."""
    if not res:
        return {}
    if not isinstance(res, dict):
        raise InvalidArgument("linux.resources must be an object")
    mem = res.get("memory") or {}
    for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        v = _int(mem, k, "memory")
        if v is not None and v < -1:
            raise InvalidArgument(f"invalid memory.{k}: {v}")
    sw = _int(mem, "swappiness", "memory")
    if sw is not None and sw > 100 and sw != 2 ** 64 - 1:
        raise InvalidArgument(f"invalid memory swappiness value: {sw} (valid range is 0-100)")
    lim, swap = mem.get("limit"), mem.get("swap")
    if lim and swap and lim > 0 and swap > 0 and swap < lim:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    cpu = res.get("cpu") or {}
    _int(cpu, "shares", "cpu", 0)
    _int(cpu, "quota", "cpu")
    _int(cpu, "period", "cpu", 0)
    _int(cpu, "burst", "cpu", 0)
    _int(cpu, "realtimeRuntime", "cpu")
    _int(cpu, "realtimePeriod", "cpu", 0)
    for k in ("cpus", "mems"):
        if cpu.get(k):
            check_cpuset(f"cpuset.{k}", str(cpu[k]))
    pids = res.get("pids") or {}
    _int(pids, "limit", "pids")
    bio = res.get("blockIO") or {}
    w = _int(bio, "weight", "blockIO", 0)
    if w and not 10 <= w <= 1000:
        raise InvalidArgument(f"invalid blockIO.weight {w}: range is 10 to 1000")
    for key in ("weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        for dev in bio.get(key) or []:
            _int(dev, "major", f"blockIO.{key}", 0)
            _int(dev, "minor", f"blockIO.{key}", 0)
            if dev.get("major") is None or dev.get("minor") is None:
                raise InvalidArgument(f"blockIO.{key}: major and minor are required")
            if key != "weightDevice":
                _int(dev, "rate", f"blockIO.{key}", 0)
    for h in res.get("hugepageLimits") or []:
        if not _page_size_ok(str(h.get("pageSize", ""))):
            raise InvalidArgument(f"invalid hugepageLimits.pageSize {h.get('pageSize')!r}")
        _int(h, "limit", "hugepageLimits", 0)
    for d in res.get("devices") or []:
        if d.get("type", "a") not in ("a", "b", "c", "u", "p"):
            raise InvalidArgument(f"invalid device rule type {d.get('type')!r}")
        if set(d.get("access") or "") - set("rwm"):
            raise InvalidArgument(f"invalid device access {d.get('access')!r}")
        _int(d, "major", "devices")
        _int(d, "minor", "devices")
    uni = res.get("unified")
    if uni is not None:
        if not isinstance(uni, dict):
            raise InvalidArgument("linux.resources.unified must be an object")
        for k in uni:
            if "/" in k or k.startswith(".") or "." not in k:
                raise InvalidArgument(f"invalid unified resource key {k!r}")
    return res
