"""Write a fast launcher for skiff-runtime.

The console script pip writes starts the venv's interpreter with ``site``:
that imports the editable-install finder (pathlib, ...) and costs ~15 ms, on
every create/start/delete. The launcher instead runs the interpreter
isolated and without ``site`` (``-IS``: one shebang argument), from the
read-only guard path of exeguard.py, and puts exactly two directories on
sys.path: the one holding the ``skiff`` package (first) and the venv's
site-packages (last, for pyseccomp, imported only to compile a seccomp
profile that is not cached yet).

    python -m skiff.runtime.launcher /usr/local/bin/skiff-runtime

(install.sh runs this.)
"""

import os
import sys
import sysconfig

TEMPLATE = """#!{guard} -IS
# skiff-runtime launcher written by skiff.runtime.launcher (see there)
import sys
sys.path.insert(0, {pkg_parent!r})
sys.path.append({site!r})
from skiff.runtime.cli import main
code = main()
try:
    sys.stdout.flush()
    sys.stderr.flush()
finally:
    # no interpreter teardown (~1-4 ms): nothing is left to clean up
    import posix
    posix._exit(code or 0)
"""


def write_guard():
    """(Re)write the interpreter copy the launcher starts from and make its
    read-only bind mount now (see exeguard.py); → the copy's path."""
    from skiff.runtime import exeguard
    guard = exeguard.guard_path(sys.prefix)
    real = os.path.realpath(sys.executable)
    os.makedirs(os.path.dirname(guard), exist_ok=True)
    try:
        exeguard.unmount_all(guard)  # a mount point can be neither written nor renamed over
    except OSError:
        pass
    tmp = f"{guard}.tmp{os.getpid()}"
    with open(real, "rb") as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.chmod(tmp, 0o755)
    os.rename(tmp, guard)
    try:
        exeguard.mount_guard(guard, real)
    except OSError as e:  # no right to mount: the runtime falls back to a memfd copy
        print(f"skiff-runtime: no read-only interpreter mount ({e.strerror}); "
              "each container will use a sealed copy", file=sys.stderr)
    return guard


def write(dest):
    import skiff
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(skiff.__file__)))
    site = sysconfig.get_paths()["purelib"]
    text = TEMPLATE.format(guard=write_guard(), pkg_parent=pkg_parent, site=site)
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)  # replaces a symlink itself, never its target


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "/usr/local/bin/skiff-runtime")
