"""The container's root filesystem, set up inside its new mount namespace
(runc's rootfs_linux.go): propagation, the bind of the rootfs onto itself,
every mount of config.json, devices, /dev symlinks, pivot_root; then, from
inside, sysctl, readonlyPaths, maskedPaths and the read-only root."""

import os
import stat

from skiff import sys as k
from skiff.sys import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
                       MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE)

DEFAULT_DEVICES = (
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))
# flags a bind mount keeps from its source; anything else needs a remount
_REMOUNT_MASK = ~(MS_BIND | MS_REC | MS_REMOUNT)


def secure_join(root, unsafe):
    """Resolve ``unsafe`` as if ``root`` were "/": symlinks (absolute or with
    "..") never lead outside ``root`` (runc's securejoin)."""
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p and p != "."]
    resolved = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, p)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            resolved.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise OSError(40, "too many levels of symbolic links", unsafe)
            target = os.readlink(cur)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x and x != "."] + parts
            continue
        resolved.append(p)
    return os.path.join(root, *resolved)


def _mkdirs(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)


def _touch(path):
    _mkdirs(os.path.dirname(path))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))


def _cgroup_layout():
    """Host cgroup mounts under /sys/fs/cgroup: [(name, fstype, super_options)]."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mp, fstype, superopts = parts[4], parts[sep + 1], parts[sep + 3]
            if fstype in ("cgroup", "cgroup2") and mp.startswith("/sys/fs/cgroup"):
                out.append((mp, fstype, superopts))
    return out


def _mount_cgroup(m, dest, cgroupns):
    layout = _cgroup_layout()
    ro = m.flags & MS_RDONLY
    base = (m.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) | (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if any(mp == "/sys/fs/cgroup" and t == "cgroup2" for mp, t, _ in layout):
        _mkdirs(dest)
        if cgroupns:
            k.mount("cgroup2", dest, "cgroup2", base | ro)
        else:
            k.mount("/sys/fs/cgroup", dest, None, MS_BIND | MS_REC)
            if ro:
                k.mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | base)
        return
    # cgroup v1 (or hybrid): a tmpfs holding one mount per hierarchy
    _mkdirs(dest)
    k.mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for mp, fstype, superopts in layout:
        name = mp[len("/sys/fs/cgroup"):].lstrip("/")
        if not name:
            continue
        sub = os.path.join(dest, name)
        _mkdirs(sub)
        if cgroupns:
            if fstype == "cgroup2":
                k.mount("cgroup2", sub, "cgroup2", base | ro)
            else:
                opts = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro"))
                k.mount("cgroup", sub, "cgroup", base | ro, opts)
        else:
            k.mount(mp, sub, None, MS_BIND | MS_REC)
            if ro:
                k.mount(None, sub, None, MS_BIND | MS_REMOUNT | MS_RDONLY | base)
    try:
        for entry in os.listdir("/sys/fs/cgroup"):
            host = os.path.join("/sys/fs/cgroup", entry)
            if os.path.islink(host):
                os.symlink(os.readlink(host), os.path.join(dest, entry))
    except OSError:
        pass
    if ro:
        k.mount(None, dest, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "mode=755")


def mount_one(rootfs, m, cgroupns):
    dest = secure_join(rootfs, m.destination)
    if not dest.startswith(rootfs):
        raise OSError(1, "mount destination outside rootfs", m.destination)
    if m.type == "cgroup" or m.type == "cgroup2":
        if m.type == "cgroup2":
            _mkdirs(dest)
            k.mount("cgroup2", dest, "cgroup2", m.flags)
        else:
            _mount_cgroup(m, dest, cgroupns)
        return
    if m.is_bind:
        src = m.source
        if not os.path.isabs(src):
            raise OSError(2, "bind mount source must be absolute", src)
        st = os.stat(src)  # ENOENT propagates with the path
        if stat.S_ISDIR(st.st_mode):
            _mkdirs(dest)
        else:
            _touch(dest)
        k.mount(src, dest, "bind", m.flags & (MS_BIND | MS_REC))
        extra = m.flags & _REMOUNT_MASK
        if extra:
            k.mount(None, dest, None, MS_BIND | MS_REMOUNT | extra | _locked_flags(dest))
    else:
        if m.destination == "/dev" or m.type in ("tmpfs", "proc", "sysfs", "mqueue", "devpts") \
                or not os.path.exists(dest):
            _mkdirs(dest)
        k.mount(m.source or m.type, dest, m.type, m.flags, m.data or None)
    if m.recursive:
        set_recursive_attrs(dest, m.recursive)
    if m.propagation:
        k.mount(None, dest, None, m.propagation)


def _locked_flags(path):
    """Flags the kernel refuses to clear on a bind remount (nosuid/nodev/noexec
    inherited from a mount owned by another user namespace): keep them."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    flags = 0
    if st.f_flag & os.ST_NOSUID:
        flags |= MS_NOSUID
    if st.f_flag & os.ST_NODEV:
        flags |= MS_NODEV
    if st.f_flag & os.ST_NOEXEC:
        flags |= MS_NOEXEC
    return flags


# runc's recursive mount options → (attr_set, attr_clr) of mount_setattr(2);
# an atime change must clear the whole atime field
_ATIME = k.MOUNT_ATTR__ATIME
RECURSIVE_ATTRS = {
    "rro": (k.MOUNT_ATTR_RDONLY, 0), "rrw": (0, k.MOUNT_ATTR_RDONLY),
    "rnosuid": (k.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, k.MOUNT_ATTR_NOSUID),
    "rnodev": (k.MOUNT_ATTR_NODEV, 0), "rdev": (0, k.MOUNT_ATTR_NODEV),
    "rnoexec": (k.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, k.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (k.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, k.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (k.MOUNT_ATTR_RELATIME, _ATIME), "rnorelatime": (k.MOUNT_ATTR_RELATIME, _ATIME),
    "rnoatime": (k.MOUNT_ATTR_NOATIME, _ATIME), "ratime": (k.MOUNT_ATTR_RELATIME, _ATIME),
    "rstrictatime": (k.MOUNT_ATTR_STRICTATIME, _ATIME),
    "rnostrictatime": (k.MOUNT_ATTR_RELATIME, _ATIME),
    "rnosymfollow": (k.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, k.MOUNT_ATTR_NOSYMFOLLOW),
}


def set_recursive_attrs(dest, names):
    """Apply runc's recursive options (rro, rnosuid, ...) to the mount at
    ``dest`` and every mount below it, in one mount_setattr(2). On a kernel
    without it (before 5.12), rro falls back to remounting each submount."""
    aset = aclr = 0
    for name in names:
        s, c = RECURSIVE_ATTRS[name]
        aset = (aset & ~c) | s
        aclr |= c
    aclr &= ~aset | _ATIME
    try:
        k.mount_setattr(dest, aset, aclr, recursive=True)
    except OSError as e:
        if e.errno != 38 or set(names) - {"rro"}:  # ENOSYS
            raise
        _remount_ro_recursive(dest)


def _remount_ro_recursive(dest):
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    for mp in mps:
        mp = mp.encode().decode("unicode_escape")
        if mp == dest or mp.startswith(dest + "/"):
            k.mount(None, mp, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(mp))


def make_device(rootfs, path, dtype, major, minor, mode, uid, gid, bind):
    dest = secure_join(rootfs, path)
    _mkdirs(os.path.dirname(dest))
    if os.path.lexists(dest):
        os.unlink(dest)
    if bind:
        # in a user namespace mknod is not allowed: bind the host node
        _touch(dest)
        k.mount(path, dest, "bind", MS_BIND)
        return
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dtype]
    old = os.umask(0)
    try:
        os.mknod(dest, kind | (mode & 0o7777), os.makedev(major, minor))
    finally:
        os.umask(old)
    os.chown(dest, uid, gid)


def setup_dev(rootfs, config, in_userns):
    dev_is_bind = any(m.destination == "/dev" and m.is_bind for m in config.mounts)
    if not dev_is_bind:
        for path, major, minor in DEFAULT_DEVICES:
            make_device(rootfs, path, "c", major, minor, 0o666, 0, 0, in_userns)
        for d in config.devices:
            make_device(rootfs, d.path, d.type, d.major, d.minor, d.mode or 0o666,
                        d.uid or 0, d.gid or 0, in_userns)
    # /dev/ptmx -> pts/ptmx and the /dev/fd family (runc setupPtmx, setupDevSymlinks)
    ptmx = secure_join(rootfs, "/dev/ptmx")
    if os.path.lexists(ptmx):
        if os.path.islink(ptmx) or not dev_is_bind:
            os.unlink(ptmx)
    if not os.path.lexists(ptmx):
        os.symlink("pts/ptmx", ptmx)
    links = list(DEV_SYMLINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for src, link in links:
        dst = secure_join(rootfs, link)
        if not os.path.lexists(dst):
            _mkdirs(os.path.dirname(dst))
            os.symlink(src, dst)


def prepare_root(rootfs, propagation):
    """Make the host's mounts invisible-to-propagation and bind the rootfs
    onto itself so it is a mount point (pivot_root needs one)."""
    k.mount(None, "/", None, propagation or (MS_SLAVE | MS_REC))
    _make_parent_private(rootfs)
    k.mount(rootfs, rootfs, "bind", MS_BIND | MS_REC)


def _make_parent_private(rootfs):
    # pivot_root fails if the new root's parent mount is shared
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if (rootfs == mp or rootfs.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    try:
        k.mount(None, best, None, MS_PRIVATE)
    except OSError:
        pass


def pivot(rootfs, no_pivot):
    os.chdir(rootfs)
    if no_pivot:
        k.mount(rootfs, "/", None, k.MS_MOVE)
        os.chroot(".")
    else:
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.pivot_root(".", ".")
            os.fchdir(oldroot)
            k.mount(None, ".", None, MS_SLAVE | MS_REC)
            k.umount(".", MNT_DETACH)
            os.fchdir(newroot)
        finally:
            os.close(oldroot)
            os.close(newroot)
    os.chdir("/")


def write_sysctl(sysctl):
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(str(value))


def readonly_path(path):
    try:
        k.mount(path, path, None, MS_BIND | MS_REC)
    except FileNotFoundError:
        return
    k.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _locked_flags(path))


def mask_path(path):
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        k.mount("tmpfs", path, "tmpfs", MS_RDONLY)
    else:
        # /dev/null must be the real null device (CVE-2025-31133 class)
        dn = os.stat("/dev/null")
        if not stat.S_ISCHR(dn.st_mode) or dn.st_rdev != os.makedev(1, 3):
            raise OSError(1, "/dev/null is not the null device: refusing to mask", path)
        k.mount("/dev/null", path, None, MS_BIND)


def readonly_root():
    k.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags("/"))
