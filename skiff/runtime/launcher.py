"""Write a fast launcher for skiff-runtime.

The console script pip writes starts the venv's interpreter with ``site``:
that imports the editable-install finder (pathlib, ...) and costs ~15 ms, on
every create/start/delete. The launcher instead runs the interpreter
isolated and without ``site`` (``-IS``: one shebang argument) and puts exactly two directories on
sys.path: the one holding the ``skiff`` package (first) and the venv's
site-packages (last, for pyseccomp, imported only to compile a seccomp
profile that is not cached yet).

    python -m skiff.runtime.launcher /usr/local/bin/skiff-runtime

(install.sh runs this.)
"""

import os
import sys
import sysconfig

TEMPLATE = """#!{python} -IS
# skiff-runtime launcher written by skiff.runtime.launcher (see there)
import sys
sys.path.insert(0, {pkg_parent!r})
sys.path.append({site!r})
from skiff.runtime.cli import main
sys.exit(main())
"""


def write(dest):
    import skiff
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(skiff.__file__)))
    site = sysconfig.get_paths()["purelib"]
    text = TEMPLATE.format(python=sys.executable, pkg_parent=pkg_parent, site=site)
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)  # replaces a symlink itself, never its target


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "/usr/local/bin/skiff-runtime")
