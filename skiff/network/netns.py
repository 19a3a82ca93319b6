"""Network namespaces as files: create, enter (from a helper thread), delete.

A namespace lives as an nsfs bind mount at ``<exec_root>/netns/<id>``, so any
runtime (skiff-runtime, runc, crun) can join it by path, exactly as Docker's
``/var/run/docker/netns/<sandbox>``. Work inside a namespace is done in a
short-lived thread that ``setns()``es into it: the namespace of the rest of
the process (skiffd's asyncio loop) is never touched, and sockets opened there
stay bound to that namespace after the thread ends.
"""

import os
import threading

from skiff import sys as ksys


def run_in_netns(path, fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` in a new thread whose network namespace
    is the one at ``path``; return its result or raise its exception."""
    box = {}

    def body():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ksys.setns(fd, ksys.CLONE_NEWNET)
            finally:
                os.close(fd)
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name="skiff-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def create(path):
    """Create a new network namespace bind-mounted at ``path`` (its parent
    directory is created). Idempotent: an existing namespace mount is kept."""
    if is_netns(path):
        return path
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    box = {}

    def body():
        try:
            ksys.unshare(ksys.CLONE_NEWNET)
            tid = threading.get_native_id()
            ksys.mount(f"/proc/self/task/{tid}/ns/net", path, None, ksys.MS_BIND)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=body, name="skiff-netns-create", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise box["error"]
    return path


def is_netns(path):
    """True when ``path`` is a mounted namespace file (it lives on nsfs,
    the same device as /proc/self/ns/net)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def delete(path):
    """Unmount and remove a namespace file (missing is fine)."""
    try:
        ksys.umount(path, ksys.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
