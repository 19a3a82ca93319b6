"""Drive an interactive docker CLI through a real pty."""

import fcntl
import os
import pty
import select
import struct
import termios
import time


def run_in_pty(argv, env, script, timeout=20, size=(31, 97)):
    """Run ``argv`` on a pty; ``script`` is a list of (wait_for_bytes|None, send_bytes).
    Returns (output bytes, exit code)."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        os.environ.clear()
        os.environ.update(env)
        os.execvp(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    out = b""
    steps = list(script)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if steps and (steps[0][0] is None or steps[0][0] in out):
                os.write(fd, steps.pop(0)[1])
                continue
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return out, os.waitstatus_to_exitcode(status)
