"""Exec sessions: ``<runtime> exec --process <file> <id>`` run by the daemon,
with a pty (TTY) or pipes, the exit code recorded before the stream ends."""

import asyncio
import fcntl
import json
import os
import secrets
import signal
import struct
import termios

from skiff import errors
from skiff import oci
from skiff.engine import user as _user
from skiff.engine.engine import merge_env


class ExecInstance:
    def __init__(self, container, cfg: dict):
        self.id = secrets.token_hex(32)
        self.container = container
        self.cfg = cfg
        self.running = False
        self.exit_code = None
        self.pid = 0
        self.proc = None
        self.master = None
        self.started = False
        self.done = asyncio.Event()

    def inspect(self) -> dict:
        cmd = list(self.cfg.get("Cmd") or [])
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": bool(self.cfg.get("Tty")), "entrypoint": cmd[0] if cmd else "",
                              "arguments": cmd[1:], "privileged": bool(self.cfg.get("Privileged")),
                              "user": self.cfg.get("User") or ""},
            "OpenStdin": bool(self.cfg.get("AttachStdin")),
            "OpenStderr": bool(self.cfg.get("AttachStderr")),
            "OpenStdout": bool(self.cfg.get("AttachStdout")),
            "CanRemove": False, "ContainerID": self.container.id,
            "DetachKeys": self.cfg.get("DetachKeys") or "", "Pid": self.pid,
        }


def create(engine, ref: str, cfg: dict) -> ExecInstance:
    c = engine.get(ref)
    if not c.running:
        raise errors.Conflict(f"container {c.id} is not running")
    if c.paused:
        raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if not cfg.get("Cmd"):
        raise errors.InvalidArgument("No exec command specified")
    ex = ExecInstance(c, cfg)
    engine.execs[ex.id] = ex
    c.rec["ExecIDs"] = (c.rec.get("ExecIDs") or []) + [ex.id]
    engine.events.emit("container", "exec_create: " + " ".join(cfg["Cmd"]), c.id,
                       {"name": c.name, "image": c.config.get("Image", ""), "execID": ex.id})
    return ex


def get(engine, eid: str) -> ExecInstance:
    ex = engine.execs.get(eid)
    if ex is None:
        raise errors.NotFound(f"No such exec instance: {eid}")
    return ex


def _process_spec(engine, ex: ExecInstance, tty: bool, console_size) -> dict:
    c = ex.container
    cdir = engine.container_dir(c.id)
    with open(os.path.join(cdir, "config.json")) as f:
        spec = json.load(f)
    proc = dict(spec["process"])
    cfg = ex.cfg
    proc["args"] = list(cfg["Cmd"])
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    if tty and console_size and console_size[0] and console_size[1]:
        proc["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
    env = merge_env(proc.get("env") or [], cfg.get("Env") or [])
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    if cfg.get("WorkingDir"):
        proc["cwd"] = cfg["WorkingDir"]
    if cfg.get("User"):
        proc["user"] = _user.resolve(os.path.join(cdir, "rootfs"), cfg["User"])
    if cfg.get("Privileged"):
        caps = list(oci.ALL_CAPS)
        proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    return proc


async def start(engine, ex: ExecInstance, conn, *, detach: bool, tty: bool | None = None,
                console_size=None):
    if ex.started:
        raise errors.Conflict(f"Error: Exec command {ex.id} has already run")
    c = ex.container
    if not c.running:
        raise errors.Conflict(f"container {c.id} is not running")
    ex.started = True
    tty = bool(ex.cfg.get("Tty")) if tty is None else tty
    console_size = console_size or ex.cfg.get("ConsoleSize")
    cdir = engine.container_dir(c.id)
    pfile = os.path.join(cdir, f"exec-{ex.id}.json")
    logfile = os.path.join(cdir, f"exec-{ex.id}.log")
    with open(pfile, "w") as f:
        json.dump(_process_spec(engine, ex, tty, console_size), f)
    runtime = engine.runtime_path(c)
    argv = [runtime, "--root", engine.monitor.runtime_root, "--log", logfile,
            "--log-format", "json", "exec", "--process", pfile, c.id]
    loop = asyncio.get_running_loop()
    attach_in = bool(ex.cfg.get("AttachStdin")) and conn is not None and not detach
    engine.events.emit("container", "exec_start: " + " ".join(ex.cfg["Cmd"]), c.id,
                       {"name": c.name, "image": c.config.get("Image", ""), "execID": ex.id})
    try:
        if tty:
            master, slave = os.openpty()
            if console_size and console_size[0] and console_size[1]:
                _set_winsize(master, console_size[0], console_size[1])
            try:
                ex.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            ex.master = master
            os.set_blocking(master, False)
        else:
            ex.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if attach_in else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if (conn and not detach) else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE if (conn and not detach) else asyncio.subprocess.DEVNULL)
    except OSError as e:
        ex.exit_code = 126
        _cleanup(pfile)
        raise errors.Internal(f"OCI runtime exec failed: {e}")
    ex.running = True
    ex.pid = ex.proc.pid
    engine.monitor_exec = True

    async def finish():
        rc = await ex.proc.wait()
        ex.exit_code = _map_exit(rc, logfile)
        ex.running = False

    if detach or conn is None:
        async def bg():
            try:
                if tty:
                    await _drain_pty(ex.master, None)
                await finish()
            finally:
                if ex.master is not None:
                    os.close(ex.master)
                    ex.master = None
                _cleanup(pfile, logfile)
                _emit_die(engine, ex)
                ex.done.set()
        engine.spawn(bg())
        return

    try:
        if tty:
            in_task = loop.create_task(_pump_in_pty(conn, ex.master)) if attach_in else None
            await _drain_pty(ex.master, conn)
            await finish()
        else:
            in_task = loop.create_task(_pump_in_pipe(conn, ex.proc.stdin)) if attach_in else None
            _, err_bytes = await asyncio.gather(_pump_out(ex.proc.stdout, conn, 1),
                                                _pump_out(ex.proc.stderr, conn, 2))
            await finish()
            if ex.exit_code in (126, 127) and not err_bytes:
                msg = _runtime_error(logfile)
                if msg:
                    try:
                        await conn.send(2, (msg + "\n").encode())
                    except (ConnectionError, OSError):
                        pass
        if in_task:
            in_task.cancel()
    finally:
        if ex.running and ex.proc.returncode is None:
            # the client went away: the exec goes on, as with docker
            engine.spawn(_reap_later(ex, finish, logfile))
        if ex.master is not None:
            os.close(ex.master)
            ex.master = None
        _cleanup(pfile, logfile)
        if not ex.running:
            _emit_die(engine, ex)
            ex.done.set()


async def _reap_later(ex, finish, logfile):
    await finish()
    ex.done.set()


def _forget_old(engine, c, keep=20):
    """Finished exec sessions stay inspectable; only the last ``keep`` are kept."""
    ids = c.rec.get("ExecIDs") or []
    done = [i for i in ids if i in engine.execs and engine.execs[i].exit_code is not None]
    for i in done[:-keep] if len(done) > keep else []:
        ids.remove(i)
        engine.execs.pop(i, None)


def _emit_die(engine, ex):
    c = ex.container
    _forget_old(engine, c)
    engine.events.emit("container", "exec_die", c.id,
                       {"name": c.name, "image": c.config.get("Image", ""), "execID": ex.id,
                        "exitCode": str(ex.exit_code)})


def _map_exit(rc: int, logfile: str) -> int:
    if rc < 0:
        return 128 - rc
    if rc == 255:
        msg = _runtime_error(logfile).lower()
        if "executable file not found" in msg or "no such file or directory" in msg:
            return 127
        if "permission denied" in msg:
            return 126
        if msg:
            return 126
    return rc


def _runtime_error(logfile: str) -> str:
    try:
        with open(logfile) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("level") in ("error", "fatal"):
            return "OCI runtime exec failed: " + obj.get("msg", "") + ": unknown"
    return ""


def _cleanup(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def _set_winsize(fd, h, w):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(h), int(w), 0, 0))


def resize(engine, ex: ExecInstance, h: int, w: int):
    if ex.master is None or not ex.running:
        if not ex.running and ex.started:
            raise errors.Conflict(f"exec {ex.id} is not running")
        return
    _set_winsize(ex.master, h, w)
    try:
        os.kill(ex.proc.pid, signal.SIGWINCH)
    except ProcessLookupError:
        pass


async def _drain_pty(master, conn):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    def readable():
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
        q.put_nowait(data)
    loop.add_reader(master, readable)
    try:
        while True:
            data = await q.get()
            if not data:
                return
            if conn is not None:
                try:
                    await conn.send(1, data)
                except (ConnectionError, OSError):
                    conn = None
    finally:
        try:
            loop.remove_reader(master)
        except (ValueError, OSError):
            pass


async def _pump_in_pty(conn, master):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await conn.read()
            if not data:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(master, view)
                    view = view[n:]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
    except (ConnectionError, OSError):
        return


async def _pump_in_pipe(conn, stdin):
    try:
        while True:
            data = await conn.read()
            if not data:
                break
            stdin.write(data)
            await stdin.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            stdin.close()
        except Exception:
            pass


async def _pump_out(reader, conn, stream) -> int:
    n = 0
    while True:
        data = await reader.read(65536)
        if not data:
            return n
        n += len(data)
        try:
            await conn.send(stream, data)
        except (ConnectionError, OSError):
            conn = _Null()


class _Null:
    async def send(self, *a):
        pass
