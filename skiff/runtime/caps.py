"""Capabilities: all five sets, applied in runc's order.

``drop_bounding`` runs while still root with CAP_SETPCAP; then the caller
switches user with PR_SET_KEEPCAPS; then ``apply`` sets effective,
permitted and inheritable with capset(2) and raises the ambient set.
"""

from skiff import sys as ksys


def _last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def mask(nums):
    m = 0
    for n in nums:
        m |= 1 << n
    return m


def drop_bounding(keep):
    keep = set(keep)
    for cap in range(_last_cap() + 1):
        if cap in keep:
            continue
        try:
            ksys.prctl(ksys.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != 22:  # EINVAL: the kernel does not know this cap
                raise


def apply(caps):
    """caps: {"effective": [nums], "permitted": ..., "inheritable": ..., "ambient": ...}"""
    last = _last_cap()
    eff = mask(c for c in caps["effective"] if c <= last)
    prm = mask(c for c in caps["permitted"] if c <= last)
    inh = mask(c for c in caps["inheritable"] if c <= last)
    ksys.capset(eff, prm, inh)
    ksys.prctl(ksys.PR_CAP_AMBIENT, ksys.PR_CAP_AMBIENT_CLEAR_ALL)
    for c in caps["ambient"]:
        if c > last:
            continue
        try:
            ksys.prctl(ksys.PR_CAP_AMBIENT, ksys.PR_CAP_AMBIENT_RAISE, c)
        except OSError:
            # like runc: an ambient cap that is not permitted+inheritable is skipped
            pass
