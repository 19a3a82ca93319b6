"""skiff-runtime: runc's command line.

    skiff-runtime [global options] command [command options] [arguments...]

Global options: --root DIR (default /run/skiff-runtime), --log FILE,
--log-format text|json; accepted and ignored, as the callers of runc pass
them: --debug, --systemd-cgroup, --criu PATH, --rootless VALUE.

Commands: spec, create, start, run, state, list, kill, delete, exec, pause,
resume, ps, update, features. Errors go to stderr (and --log) as runc writes them;
the exit status is 1 (runc's), or the container's for run/exec.

The command parser is hand-written (argparse costs start-up time and words
its errors differently from runc).
"""

import posix
import sys

DEFAULT_ROOT = "/run/skiff-runtime"
VERSION = "0.1.0"
SPEC_VERSION = "1.0.2-dev"

# flag -> (canonical name, takes a value, repeatable)
_GLOBAL = {
    "--root": ("root", True), "--log": ("log", True), "--log-format": ("log_format", True),
    "--debug": ("debug", False), "--systemd-cgroup": ("systemd_cgroup", False),
    "--criu": ("criu", True), "--rootless": ("rootless", True),
    "-v": ("version", False), "--version": ("version", False),
    "-h": ("help", False), "--help": ("help", False),
}
_CREATE = {
    "--bundle": ("bundle", True), "-b": ("bundle", True),
    "--console-socket": ("console_socket", True), "--pid-file": ("pid_file", True),
    "--no-pivot": ("no_pivot", False), "--no-new-keyring": ("no_new_keyring", False),
    "--preserve-fds": ("preserve_fds", True), "--no-subreaper": ("no_subreaper", False),
}
COMMANDS = {
    "spec": {"--bundle": ("bundle", True), "-b": ("bundle", True),
             "--rootless": ("rootless", False)},
    "create": _CREATE,
    "run": {**_CREATE, "--detach": ("detach", False), "-d": ("detach", False),
            "--keep": ("keep", False)},
    "start": {},
    "state": {},
    "list": {"--format": ("format", True), "-f": ("format", True),
             "--quiet": ("quiet", False), "-q": ("quiet", False)},
    "kill": {"--all": ("all", False), "-a": ("all", False)},
    "delete": {"--force": ("force", False), "-f": ("force", False)},
    "exec": {"--console-socket": ("console_socket", True), "--cwd": ("cwd", True),
             "--env": ("env", "multi"), "-e": ("env", "multi"),
             "--tty": ("tty", False), "-t": ("tty", False),
             "--user": ("user", True), "-u": ("user", True),
             "--additional-gids": ("additional_gids", "multi"),
             "-g": ("additional_gids", "multi"),
             "--process": ("process", True), "-p": ("process", True),
             "--detach": ("detach", False), "-d": ("detach", False),
             "--pid-file": ("pid_file", True), "--process-label": ("process_label", True),
             "--apparmor": ("apparmor", True), "--no-new-privs": ("no_new_privs", False),
             "--cap": ("cap", "multi"), "-c": ("cap", "multi"),
             "--preserve-fds": ("preserve_fds", True),
             "--ignore-paused": ("ignore_paused", False),
             "--cgroup": ("cgroup", "multi")},
    "pause": {},
    "resume": {},
    "ps": {"--format": ("format", True), "-f": ("format", True)},
    "features": {},
    "update": {"--resources": ("resources", True), "-r": ("resources", True),
               "--memory": ("memory", True), "--memory-reservation": ("memory_reservation", True),
               "--memory-swap": ("memory_swap", True), "--kernel-memory": ("kernel_memory", True),
               "--cpu-shares": ("cpu_shares", True), "--cpu-quota": ("cpu_quota", True),
               "--cpu-period": ("cpu_period", True), "--cpuset-cpus": ("cpuset_cpus", True),
               "--cpuset-mems": ("cpuset_mems", True), "--pids-limit": ("pids_limit", True),
               "--blkio-weight": ("blkio_weight", True)},
}


def abspath(path):
    """os.path.abspath without importing os (start-up: see state.py)."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    parts = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    return "/" + "/".join(parts)


class UsageError(Exception):
    pass


def parse_flags(argv, table, stop_at_positional):
    """urfave/cli style: --flag value, --flag=value, -f value; bool flags take
    no value (but accept --flag=true/false)."""
    opts = {}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("-") and a != "-":
            name, eq, val = a.partition("=")
            if name not in table:
                raise UsageError(f"flag provided but not defined: {name}")
            key, takes = table[name]
            if takes:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}")
                    val = argv[i]
                if takes == "multi":
                    opts.setdefault(key, []).append(val)
                else:
                    opts[key] = val
            else:
                opts[key] = (val.lower() not in ("false", "0")) if eq else True
            i += 1
            continue
        pos.append(a)
        if stop_at_positional:
            pos.extend(argv[i + 1:])
            break
        i += 1
    return opts, pos


class Log:
    def __init__(self, path, fmt):
        self.path = path
        self.fmt = fmt or "text"

    def _line(self, level, msg):
        import time
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            from skiff.runtime import fastjson
            return fastjson.dumps({"level": level, "msg": msg, "time": ts}) + "\n"
        esc = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'time="{ts}" level={level} msg="{esc}"\n'

    def error(self, msg):
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(self._line("error", msg))
            except OSError:
                pass
            sys.stderr.write(msg + "\n")
        else:
            sys.stderr.write(self._line("error", msg))
        sys.stderr.flush()

    def warn(self, msg):
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(self._line("warning", msg))
            except OSError:
                pass
        else:
            sys.stderr.write(self._line("warning", msg))


def _fail(log, cmd, msg, code):
    """Report a failed command in runc's words (callers match on them):
    "runc create failed: ..." (exit 1); "exec failed: ..." with exit 255 for
    anything exec fails at after its arguments were checked (the engine maps
    255 + the logged error to Docker's 126/127)."""
    if not msg.startswith("runc: "):
        if cmd in ("create", "run"):
            msg = f"runc {cmd} failed: {msg}"
        elif cmd == "exec":
            msg = f"exec failed: {msg}"
            code = 255
    log.error(msg)
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        gopts, rest = parse_flags(argv, _GLOBAL, stop_at_positional=True)
    except UsageError as e:
        Log(None, None).error(str(e))
        return 1
    log = Log(gopts.get("log"), gopts.get("log_format"))
    if gopts.get("version"):
        print(f"skiff-runtime version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    if not rest or gopts.get("help"):
        print(__doc__.strip())
        return 0
    cmd, args = rest[0], rest[1:]
    if cmd not in COMMANDS:
        log.error(f"No help topic for '{cmd}'")
        return 3
    root = abspath(gopts.get("root") or DEFAULT_ROOT)
    from skiff.runtime.state import RuntimeFailure, SpecError
    try:
        opts, pos = parse_flags(args, COMMANDS[cmd], stop_at_positional=(cmd == "exec"))
        if cmd in ("create", "run", "exec"):
            # before any side effect: this may re-exec the command once
            from skiff.runtime import exeguard, process
            process.DIRECT = exeguard.protected()
        if cmd in ("start", "state", "kill", "delete"):
            from skiff.runtime import lifecycle as verbs
        else:
            from skiff.runtime import commands as verbs
        return getattr(verbs, "cmd_" + cmd)(root, opts, pos, log) or 0
    except UsageError as e:
        log.error(str(e))
        return 1
    except (RuntimeFailure, SpecError) as e:
        return _fail(log, cmd, str(e), getattr(e, "exit_code", 1))
    except OSError as e:
        return _fail(log, cmd, f"{e.filename}: {e.strerror}" if e.filename else str(e), 1)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 — a runtime never dies with a traceback
        skiff_errors = sys.modules.get("skiff.errors")
        if skiff_errors and isinstance(e, skiff_errors.SkiffError):
            log.error(str(e))
            return 1
        log.error(f"{type(e).__name__}: {e}")
        if posix.environ.get(b"SKIFF_RUNTIME_TRACEBACK"):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
