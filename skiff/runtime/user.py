"""User and group lookups in the container's own /etc/passwd and /etc/group.

Read directly from files under the container root: never glibc NSS (which
would load host libraries/config after entering the rootfs)."""


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f
                    if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def passwd_by_uid(uid, path="/etc/passwd"):
    for f in _read(path):
        if len(f) >= 7 and f[2].isdigit() and int(f[2]) == uid:
            return {"name": f[0], "uid": int(f[2]), "gid": int(f[3]) if f[3].isdigit() else 0,
                    "home": f[5], "shell": f[6]}
    return None


def passwd_by_name(name, path="/etc/passwd"):
    for f in _read(path):
        if len(f) >= 7 and f[0] == name:
            return {"name": f[0], "uid": int(f[2]), "gid": int(f[3]) if f[3].isdigit() else 0,
                    "home": f[5], "shell": f[6]}
    return None


def group_by_name(name, path="/etc/group"):
    for f in _read(path):
        if len(f) >= 3 and f[0] == name and f[2].isdigit():
            return int(f[2])
    return None


def parse_user_arg(spec, passwd="/etc/passwd", group="/etc/group"):
    """runc exec --user "uid[:gid]" (names allowed, resolved in the container's
    files) → (uid, gid)."""
    u, _, g = spec.partition(":")
    if u.isdigit():
        uid = int(u)
        ent = passwd_by_uid(uid, passwd)
        gid = ent["gid"] if ent else 0
    else:
        ent = passwd_by_name(u, passwd)
        if ent is None:
            raise ValueError(f"unable to find user {u}: no matching entries in passwd file")
        uid, gid = ent["uid"], ent["gid"]
    if g:
        if g.isdigit():
            gid = int(g)
        else:
            gg = group_by_name(g, group)
            if gg is None:
                raise ValueError(f"unable to find group {g}: no matching entries in group file")
            gid = gg
    return uid, gid
