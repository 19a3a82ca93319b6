"""Start skiffd in the background when no daemon answers (see skiff.cli.main)."""

import os
import shlex
import shutil
import subprocess
import sys
import time

from skiff.cli.client import DEFAULT_SOCKET, Client, ConnectError, parse_host

WAIT_SECONDS = 30.0


class AutostartError(ConnectError):
    def __init__(self, host, message):
        Exception.__init__(self, message)
        self.host = host

    def __str__(self):
        return self.args[0]


def daemon_command(sock):
    exe = shutil.which("skiffd")
    cmd = [exe] if exe else [sys.executable, "-c",
                             "import sys; from skiff.engine.daemon import main; sys.exit(main())"]
    default = os.path.abspath(sock) == DEFAULT_SOCKET
    exec_root = os.environ.get("SKIFF_EXEC_ROOT") or (
        "/run/skiff" if default else os.path.dirname(os.path.abspath(sock)))
    cmd += ["-H", "unix://" + sock, "--exec-root", exec_root]
    if os.environ.get("SKIFF_DATA_ROOT"):
        cmd += ["--data-root", os.environ["SKIFF_DATA_ROOT"]]
    if os.environ.get("SKIFF_DAEMON_ARGS"):
        cmd += shlex.split(os.environ["SKIFF_DAEMON_ARGS"])
    log = "/var/log/skiff/skiffd.log" if default else os.path.join(exec_root, "skiffd.log")
    return cmd, exec_root, log


def _answers(host):
    try:
        c = Client(host, timeout=2)
        c.ping()
        c.close()
        return True
    except (ConnectError, OSError, ValueError):
        return False


def start_daemon(host, err=None):
    """Start skiffd for ``host`` (a unix socket) and wait until it answers.
    Returns the pid, or None when another skiff started it meanwhile."""
    import fcntl
    err = err or sys.stderr
    kind, sock = parse_host(host)
    if kind != "unix":
        raise ConnectError(host)
    cmd, exec_root, log = daemon_command(sock)
    try:
        os.makedirs(exec_root, exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(sock)), exist_ok=True)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        lock = open(os.path.join(exec_root, "skiffd.autostart.lock"), "a")
    except OSError as e:
        raise AutostartError(host, f"Cannot connect to the skiff daemon at {host}. Is skiffd "
                                   f"running? (starting it failed: {e.strerror}: "
                                   f"{e.filename})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(host):
            return None
        try:
            with open(log, "ab") as logf:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=logf, start_new_session=True, close_fds=True,
                                        cwd="/")
        except OSError as e:
            raise AutostartError(host, f"Cannot connect to the skiff daemon at {host}. Is "
                                       f"skiffd running? (starting it failed: {e})") from None
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                raise AutostartError(
                    host, f"skiff: skiffd exited with status {rc} before answering on "
                          f"{host}; see {log}")
            if os.path.exists(sock) and _answers(host):
                err.write(f"skiff: started skiffd (pid {proc.pid})\n")
                err.flush()
                # the Popen object must not reap/kill it: forget it
                proc.returncode = 0
                return proc.pid
            time.sleep(0.05)
        raise AutostartError(host, f"skiff: skiffd (pid {proc.pid}) did not answer on "
                                   f"{host} within {int(WAIT_SECONDS)}s; see {log}")
