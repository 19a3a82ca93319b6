"""OCI hooks: each runs with the container's state JSON on stdin, its own
env only, and an optional timeout (runc libcontainer/configs Hook.Run)."""

import os

from skiff.runtime import fastjson
from skiff.runtime.state import RuntimeFailure


def run_hooks(hooks, state, name):
    """Run every hook of one kind in order; the first failure raises."""
    for i, h in enumerate(hooks):
        err = run_one(h, state)
        if err:
            raise RuntimeFailure(f"error running {name} hook #{i}: {err}")


def run_one(h, state):
    """→ None on success, else runc's description of the failure."""
    import subprocess
    data = fastjson.dumps(state).encode()
    try:
        p = subprocess.run(h.args, executable=h.path, input=data, env=_env(h.env),
                           capture_output=True, timeout=h.timeout, close_fds=True, cwd="/")
    except subprocess.TimeoutExpired:
        return f"timeout after {h.timeout} seconds"
    except OSError as e:
        return f"fork/exec {h.path}: {e.strerror.lower()}"
    if p.returncode != 0:
        status = f"exit status {p.returncode}" if p.returncode > 0 \
            else f"signal: {-p.returncode}"
        return (f"{status}, stdout: {p.stdout.decode(errors='replace')}, "
                f"stderr: {p.stderr.decode(errors='replace')}")
    return None


def _env(lst):
    env = {}
    for e in lst:
        k, _, v = e.partition("=")
        env[k] = v
    return env


def run_in_container(hooks, state):
    """startContainer hooks: run by the init inside the container, after
    start and before the user's program; paths resolve in the container."""
    for i, h in enumerate(hooks):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r, 0)
                os.execve(h.path, h.args, _env(h.env))
            finally:
                os._exit(127)
        os.close(r)
        os.write(w, fastjson.dumps(state).encode())
        os.close(w)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeFailure(f"error running startContainer hook #{i}: exit status {code}")
