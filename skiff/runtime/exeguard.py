"""The runtime's own executable, out of the container's reach (CVE-2019-5736).

Every process that skiff-runtime puts into a container starts as a fork of
the runtime, so its /proc/<pid>/exe is the runtime's interpreter until it
execs the user's program. A container that can reach that link (a
``#!/proc/self/exe`` script run by ``exec``, or ptrace rights) must not be
able to open the host's interpreter for writing.

runc 1.2 answers with a read-only copy per invocation (a detached read-only
bind mount, or a sealed memfd) and re-execs itself from it. For a Python
runtime that re-exec is a second interpreter start (~10 ms) in every create
and exec, so skiff-runtime keeps the interpreter it *starts from* read-only
instead: the launcher's shebang names ``<venv>/libexec/skiff-runtime-python``,
a copy of the interpreter that install.sh writes, and the first create or
exec after boot bind-mounts the real interpreter read-only onto that path
(one mount in the host's mount namespace, re-made after a reboot) and
re-execs once through it. From then on /proc/self/exe of every runtime
process is a file on a read-only mount: opening it for writing fails with
EROFS, from any mount namespace, and the container cannot remount a mount
of another namespace. The check is one statvfs() per command.

When that cannot be had (started as ``python -m``, or without the right to
mount), ``protected()`` is False and process.py falls back to a sealed
memfd copy per container (the old way).
"""

import os
import sys

GUARD_NAME = "skiff-runtime-python"
_ENV_TRIED = "SKIFF_RUNTIME_EXEGUARD_TRIED"


def guard_path(prefix=None):
    return os.path.join(prefix or sys.prefix, "libexec", GUARD_NAME)


def exe_readonly():
    """Is this process's executable on a read-only mount?"""
    try:
        return bool(os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _mounted_at(path):
    """Mount ids mounted at ``path`` in this mount namespace (mountinfo field 5)."""
    esc = path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
        .replace("\n", "\\012")
    ids = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" ", 5)
            if len(parts) > 4 and parts[4] == esc:
                ids.append(parts[0])
    return ids


def unmount_all(path):
    """Remove every mount stacked on ``path`` (install.sh, before it rewrites the copy)."""
    from skiff import sys as k
    while _mounted_at(path):
        k.umount(path, k.MNT_DETACH)


def mount_guard(path, source):
    """Bind ``source`` (the real interpreter) read-only onto ``path``."""
    from skiff import sys as k
    k.mount(source, path, None, k.MS_BIND)
    try:
        k.mount(None, path, None, k.MS_REMOUNT | k.MS_BIND | k.MS_RDONLY | k.MS_NOSUID |
                k.MS_NODEV)
    except OSError:
        k.umount(path, k.MNT_DETACH)
        raise


def protected():
    """True when this process runs from a read-only executable. If it does
    not but was started through the guard path, make the guard mount and
    re-exec through it (never returns then)."""
    tried = os.environ.pop(_ENV_TRIED, None)
    if exe_readonly():
        return True
    exe = sys.executable
    if tried or os.path.basename(exe) != GUARD_NAME or not sys.orig_argv:
        return False
    real = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(exe)), "bin",
                                         "python3"))
    try:
        import fcntl
        lock = os.open(os.path.dirname(exe), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # another runtime may have made it while we waited for the lock
        try:
            made = bool(os.statvfs(exe).f_flag & os.ST_RDONLY)
        except OSError:
            return False
        if not made:
            try:
                mount_guard(exe, real)
            except OSError:
                return False
    finally:
        os.close(lock)
    os.environ[_ENV_TRIED] = "1"
    os.execv(exe, sys.orig_argv)
