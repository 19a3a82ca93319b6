"""Inspect cgroups the way skiff-runtime sees them (a debugging aid).

    python -m skiff.runtime.cgroups layout
    python -m skiff.runtime.cgroups paths ID [CGROUPS_PATH]
    python -m skiff.runtime.cgroups stats CGROUPS_PATH      # Docker-shaped JSON
    python -m skiff.runtime.cgroups pids CGROUPS_PATH
    python -m skiff.runtime.cgroups freezer CGROUPS_PATH
"""

import json
import sys

from . import detect, for_spec, resolve_path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    if cmd == "layout":
        lay = detect()
        print(json.dumps({"mode": lay.mode, "v1": lay.v1, "unified": lay.unified}, indent=2))
        return 0
    if cmd == "paths" and args:
        print(json.dumps(resolve_path(args[0], args[1] if len(args) > 1 else None), indent=2))
        return 0
    if cmd in ("stats", "pids", "freezer") and len(args) == 1:
        mgr = for_spec("inspect", {"cgroupsPath": args[0]})
        if not mgr.exists():
            print(f"no such cgroup: {args[0]}", file=sys.stderr)
            return 1
        if cmd == "stats":
            print(json.dumps(mgr.stats(), indent=2))
        elif cmd == "pids":
            print("\n".join(str(p) for p in mgr.pids()))
        else:
            print(mgr.freezer_state())
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
