"""Resolve Docker's ``user[:group]`` against a container's /etc/passwd and /etc/group."""

import os

from skiff import errors


def _read(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n").split(":") for l in f if l.strip() and not l.startswith("#")]
    except OSError:
        return []


def resolve(rootfs: str, user: str | None) -> dict:
    """→ OCI process.user {uid, gid, additionalGids}."""
    user = (user or "").strip()
    passwd = _read(os.path.join(rootfs, "etc/passwd"))
    groups = _read(os.path.join(rootfs, "etc/group"))
    name, _, group = user.partition(":")
    uid, gid, uname = 0, 0, "root"
    if name:
        if name.isdigit():
            uid = int(name)
            gid = uid if not any(p for p in passwd if len(p) > 3 and p[2] == name) else 0
            for p in passwd:
                if len(p) > 3 and p[2] == name:
                    gid, uname = int(p[3]), p[0]
                    break
            else:
                gid, uname = 0, None
        else:
            for p in passwd:
                if p[0] == name and len(p) > 3:
                    uid, gid, uname = int(p[2]), int(p[3]), name
                    break
            else:
                raise errors.InvalidArgument(
                    f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for g in groups:
                if g[0] == group and len(g) > 2:
                    gid = int(g[2])
                    break
            else:
                raise errors.InvalidArgument(
                    f"unable to find group {group}: no matching entries in group file")
    extra = []
    if uname:
        for g in groups:
            if len(g) > 3 and uname in g[3].split(",") and int(g[2]) != gid:
                extra.append(int(g[2]))
    out = {"uid": uid, "gid": gid}
    if extra:
        out["additionalGids"] = extra
    return out


def home_of(rootfs: str, uid: int) -> str:
    for p in _read(os.path.join(rootfs, "etc/passwd")):
        if len(p) > 5 and p[2] == str(uid):
            return p[5]
    return "/"
