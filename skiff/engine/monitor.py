"""The per-container monitor: conmon.

conmon (the monitor Podman and CRI-O use) holds a container's stdio, its
log file, its TTY and finally its exit code, so containers outlive skiffd.
The engine talks to it through files and sockets only:

- ``<exec-root>/conmon/<id>/``: ``conmon.pid``, ``pid`` (container pid),
  ``exits/<id>`` (exit code), persist dir (``exit``, ``oom``), runtime log;
- ``<bundle>/attach``: SOCK_SEQPACKET; output packets start with a byte
  (2 stdout, 3 stderr), input is written raw to the container's stdin;
- ``<bundle>/ctl``: a fifo; ``"1 <h> <w>\\n"`` resizes the TTY.

The runtime (skiff-runtime, runc or crun) is driven with runc's command line:
conmon runs ``create``; the engine runs ``start``, ``kill``, ``pause``,
``resume``, ``delete``, ``state``, ``ps`` and ``exec``.
"""

import asyncio
import json
import os
import shutil
import signal
import socket

from skiff import errors

CONMON = shutil.which("conmon") or "/usr/bin/conmon"


class Monitor:
    def __init__(self, exec_root: str, runtime_root: str):
        self.base = os.path.join(exec_root, "conmon")
        self.runtime_root = runtime_root
        os.makedirs(self.base, exist_ok=True)
        os.makedirs(runtime_root, exist_ok=True)

    def dir(self, cid: str) -> str:
        return os.path.join(self.base, cid)

    def exit_file(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "exits", cid)

    def runtime_log(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "runtime.log")

    async def create(self, cid: str, *, name: str, bundle: str, runtime: str, log_path: str,
                     terminal: bool, stdin: bool, runtime_args=(), log_size_max: int = 0) -> int:
        """Start conmon, which runs ``<runtime> create``; → container pid."""
        d = self.dir(cid)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(os.path.join(d, "exits"))
        for stale in ("attach", "ctl", "winsz"):
            try:
                os.unlink(os.path.join(bundle, stale))
            except FileNotFoundError:
                pass
        args = conmon_argv(cid, cid, runtime, bundle, d, name, os.path.join(d, "exits"),
                           "k8s-file:" + log_path, self.runtime_root, self.runtime_log(cid))
        args += ["--persist-dir", d, "--syslog"]
        for a in runtime_args:
            args += ["--runtime-arg", a]
        if log_size_max > 0:
            args += ["--log-size-max", str(int(log_size_max))]
        if terminal:
            args.append("-t")
        if stdin:
            args.append("-i")
        sync_r, sync_w = os.pipe()
        start_r, start_w = os.pipe()
        env = conmon_env(sync_w, start_r)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, pass_fds=(sync_w, start_r), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
        finally:
            os.close(sync_w)
            os.close(start_r)
        try:
            os.write(start_w, b"\0")
        except BrokenPipeError:
            pass   # conmon already gave up: its stderr says why
        finally:
            os.close(start_w)
        _, err = await proc.communicate()
        try:
            data = await asyncio.wait_for(_read_line(sync_r), 120)
        except asyncio.TimeoutError:
            raise errors.Internal(f"{os.path.basename(runtime)} create did not report in 120 s")
        finally:
            os.close(sync_r)
        if proc.returncode != 0:
            raise errors.Internal(f"conmon failed: {err.decode(errors='replace').strip()}")
        pid = None
        msg = ""
        for line in data.decode(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "data" in obj:
                pid = int(obj["data"])
                msg = obj.get("message", msg)
                break
        if pid is None or pid <= 0:
            raise errors.Internal(self._runtime_error(cid) or msg or
                                  "conmon did not report the container's pid")
        return pid

    def _runtime_error(self, cid: str) -> str:
        try:
            with open(self.runtime_log(cid)) as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                obj = json.loads(line)
            except ValueError:
                if line.strip():
                    return line.strip()
                continue
            if obj.get("level") in ("error", "fatal"):
                return obj.get("msg", "")
        return ""

    def conmon_pid(self, cid: str) -> int | None:
        try:
            with open(os.path.join(self.dir(cid), "conmon.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def read_exit(self, cid: str) -> int | None:
        for p in (self.exit_file(cid), os.path.join(self.dir(cid), "exit")):
            try:
                with open(p) as f:
                    t = f.read().strip()
                if t:
                    return int(t)
            except (OSError, ValueError):
                continue
        return None

    def oom_killed(self, cid: str) -> bool:
        return os.path.exists(os.path.join(self.dir(cid), "oom"))

    def watch(self, cid: str, callback) -> bool:
        """Call ``callback()`` (in the loop) once conmon exits. False if it is gone."""
        pid = self.conmon_pid(cid)
        if pid is None:
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        # pid reuse guard: the process must still be conmon
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "conmon":
                    os.close(fd)
                    return False
        except OSError:
            os.close(fd)
            return False
        loop = asyncio.get_running_loop()

        def ready():
            loop.remove_reader(fd)
            os.close(fd)
            callback()
        loop.add_reader(fd, ready)
        return True

    async def runtime(self, runtime: str, *args, check=True, timeout=60) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            runtime, "--root", self.runtime_root, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise errors.Internal(f"{os.path.basename(runtime)} {args[0]}: timed out")
        out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
        if check and proc.returncode != 0:
            raise errors.Internal(_clean_runtime_err(err_s) or
                                  f"{os.path.basename(runtime)} {args[0]} failed")
        return proc.returncode, out_s, err_s

    async def start(self, runtime: str, cid: str):
        await self.runtime(runtime, "start", cid)

    async def kill(self, runtime: str, cid: str, sig: int | str = signal.SIGTERM, all_=False):
        args = ["kill"] + (["--all"] if all_ else []) + [cid, str(int(sig)) if not isinstance(sig, str) else sig]
        return await self.runtime(runtime, *args, check=False)

    async def delete(self, runtime: str, cid: str):
        await self.runtime(runtime, "delete", "--force", cid, check=False)

    async def state(self, runtime: str, cid: str) -> dict | None:
        rc, out, _ = await self.runtime(runtime, "state", cid, check=False)
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def resize(self, bundle: str, height: int, width: int):
        path = os.path.join(bundle, "ctl")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            raise errors.Conflict(f"cannot resize: {e.strerror}")
        try:
            os.write(fd, f"1 {int(height)} {int(width)}\n".encode())
        finally:
            os.close(fd)

    def cleanup(self, cid: str):
        shutil.rmtree(self.dir(cid), ignore_errors=True)


async def _read_line(fd: int) -> bytes:
    """Read conmon's sync pipe until a newline or EOF, without a thread."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    out = b""
    while True:
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            return out
        out += chunk
        if b"\n" in out:
            return out


def _clean_runtime_err(s: str) -> str:
    lines = [l for l in s.strip().splitlines() if l.strip()]
    if not lines:
        return ""
    last = lines[-1]
    try:
        obj = json.loads(last)
        return obj.get("msg", last)
    except ValueError:
        pass
    if 'msg="' in last:
        return last.split('msg="', 1)[1].rsplit('"', 1)[0]
    return last


def conmon_argv(cid, session, runtime, bundle, state_dir, name, exit_dir, log, runtime_root,
                runtime_log):
    """conmon's arguments shared by a container's monitor and an exec's:
    ``state_dir`` holds its pid files and attach socket; the runtime gets
    ``--root``, JSON ``--log`` into ``runtime_log``."""
    return [CONMON, "--api-version", "1", "-c", cid, "-u", session, "-r", runtime,
            "-b", bundle, "-p", os.path.join(state_dir, "pid"), "-n", name,
            "--exit-dir", exit_dir, "--full-attach", "--socket-dir-path", state_dir,
            "-l", log, "--log-level", "error",
            "--conmon-pidfile", os.path.join(state_dir, "conmon.pid"),
            "--runtime-arg", "--root", "--runtime-arg", runtime_root,
            "--runtime-arg", "--log-format=json",
            "--runtime-arg", "--log", "--runtime-arg", runtime_log]


def conmon_env(sync_w, start_r):
    """conmon's environment: PATH, and its sync/start pipes (fds it inherits)."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "_OCI_SYNCPIPE": str(sync_w), "_OCI_STARTPIPE": str(start_r)}


CONN_SOCK_BUF_SIZE = 32 * 1024  # conmon reads its attach socket this much per packet


async def send_packets(loop, sock, data):
    """To conmon's attach socket (SOCK_SEQPACKET): one message per conmon
    read, at most 32 KiB each (a longer one would be cut short)."""
    for i in range(0, len(data), CONN_SOCK_BUF_SIZE):
        await loop.sock_sendall(sock, data[i:i + CONN_SOCK_BUF_SIZE])


async def attach_socket(bundle: str):
    """Connect to conmon's attach socket → a non-blocking SEQPACKET socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    # the bundle path may exceed sun_path's 108 bytes: go through the dir fd
    dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
    try:
        await loop.sock_connect(s, f"/proc/self/fd/{dfd}/attach")
    except BaseException:
        s.close()
        raise
    finally:
        os.close(dfd)
    return s
