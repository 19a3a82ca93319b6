"""Exec sessions: each runs under its own conmon (``conmon --exec``, which
runs ``<runtime> exec --detach --process <file> <id>``), so the process and
its stdio outlive skiffd; the exit code is recorded before the stream ends."""

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket

from skiff import errors
from skiff import oci
from skiff.engine import user as _user
from skiff.engine.engine import merge_env
from skiff.engine.monitor import attach_socket, conmon_argv, conmon_env

START_TIMEOUT = 120                 # s for conmon and the runtime to report the process


class ExecInstance:
    def __init__(self, container, cfg: dict):
        self.id = secrets.token_hex(32)
        self.container = container
        self.cfg = cfg
        self.running = False
        self.exit_code = None
        self.pid = 0
        self.proc = None
        self.dir = ""
        self.tty = False
        self.engine = None
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
    if cfg.get("DetachKeys"):
        from skiff.engine.engine import parse_detach_keys
        parse_detach_keys(cfg["DetachKeys"])
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


class _ExecProc:
    """The exec'd process as callers see it (health probes kill it on timeout):
    ``pid``, ``returncode`` (None while it runs), ``kill()``."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def kill(self):
        if self.returncode is None and self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Lines:
    """JSON lines from one of conmon's pipes (sync, attach), read without a thread."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    async def next(self) -> dict | None:
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf and not self.eof:
            fut = loop.create_future()
            loop.add_reader(self.fd, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                loop.remove_reader(self.fd)
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        if not line.strip():
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def start(engine, ex: ExecInstance, conn, *, detach: bool, tty: bool | None = None,
                console_size=None):
    """Run the exec under its own conmon (``conmon --exec``), as Podman does:
    conmon holds the process's stdio and exit code, so the process outlives
    skiffd (as under dockerd, where the shim holds it). Attached sessions go
    through conmon's attach socket; conmon waits for it before the runtime
    runs (``--exec-attach``) so no output is lost."""
    if ex.started:
        raise errors.Conflict(f"Error: Exec command {ex.id} has already run")
    c = ex.container
    if not c.running:
        raise errors.Conflict(f"container {c.id} is not running")
    ex.started = True
    ex.engine = engine
    tty = bool(ex.cfg.get("Tty")) if tty is None else tty
    ex.tty = tty
    console_size = console_size or ex.cfg.get("ConsoleSize")
    attach = conn is not None and not detach
    attach_in = attach and bool(ex.cfg.get("AttachStdin"))
    xdir = os.path.join(engine.monitor.dir(c.id), "exec-" + ex.id[:16])
    shutil.rmtree(xdir, ignore_errors=True)
    os.makedirs(xdir, mode=0o700)    # the process spec holds its env
    ex.dir = xdir
    pfile = os.path.join(xdir, "process.json")
    try:
        spec = _process_spec(engine, ex, tty, console_size)
    except BaseException:
        # dockerd: any error before the process runs leaves ExitCode 126
        ex.exit_code = 126
        _done(engine, ex)
        raise
    with open(pfile, "w") as f:
        json.dump(spec, f)
    engine.events.emit("container", "exec_start: " + " ".join(ex.cfg["Cmd"]), c.id,
                       {"name": c.name, "image": c.config.get("Image", ""), "execID": ex.id})
    sync = att = None
    sock = None
    start_w = -1
    try:
        sync, att, start_w = await _spawn_conmon(engine, ex, xdir, pfile, tty=tty,
                                                 stdin=attach_in, attach=attach)
        if attach:
            await asyncio.wait_for(att.next(), START_TIMEOUT)   # the attach socket is ready
            sock = await attach_socket(xdir)
            os.write(start_w, b"\0")     # now let it run the runtime
        os.close(start_w)
        start_w = -1
        first = await asyncio.wait_for(sync.next(), START_TIMEOUT)
    except BaseException as e:
        if start_w >= 0:
            os.close(start_w)
        if sock is not None:
            sock.close()
        if sync is not None:
            sync.close()
        ex.exit_code = 126
        _kill_conmon(xdir)      # cancelled or timed out: nothing is to start now
        _done(engine, ex)
        if isinstance(e, asyncio.TimeoutError):
            raise errors.Internal(f"OCI runtime exec failed: the exec did not start in "
                                  f"{START_TIMEOUT} s: unknown") from None
        raise
    finally:
        if att is not None:
            att.close()
    pid = int((first or {}).get("data", -1))
    if pid <= 0:
        # the runtime could not start the process: Docker's words and codes
        # (daemon: setExitCodeFromError; the message goes out on stdout)
        text = _failure_text((first or {}).get("message", ""), xdir)
        msg = f"OCI runtime exec failed: {text}: unknown"
        ex.exit_code = _start_failure_code(text)
        sync.close()
        if sock is not None:
            sock.close()
        _done(engine, ex)
        if not attach:
            if ex.exit_code in (126, 127):
                raise errors.InvalidArgument(msg)
            raise errors.Internal(msg)
        try:
            await conn.send(1, (msg + "\r\n").encode())
        except (ConnectionError, OSError):
            pass
        return
    ex.pid = pid
    ex.proc = _ExecProc(pid)
    ex.running = True
    if tty and console_size and console_size[0] and console_size[1]:
        _resize_ctl(xdir, console_size[0], console_size[1])
    if not attach:
        engine.spawn(_reap(engine, ex, sync))
        return
    client_gone = True
    try:
        client_gone = await _pump(ex, sock, conn, tty, attach_in)
    finally:
        sock.close()
        if client_gone:
            # the client went away (or the stream broke): the exec goes on
            engine.spawn(_reap(engine, ex, sync))
    if not client_gone:
        # the output ended: the exit code is final before the stream is
        await _reap(engine, ex, sync)


async def _spawn_conmon(engine, ex, xdir, pfile, *, tty, stdin, attach):
    c = ex.container
    runtime = engine.runtime_path(c)
    args = conmon_argv(c.id, ex.id, runtime, xdir, xdir, c.name.lstrip("/") or c.id, xdir,
                       "none", engine.monitor.runtime_root, os.path.join(xdir, "runtime.log"))
    args += ["--exec", "--exec-process-spec", pfile]
    if tty:
        # conmon's stdin is the terminal itself then: a client's EOF must not close it
        args += ["-t", "--leave-stdin-open"]
    if stdin:
        args.append("-i")
    if attach:
        args.append("--exec-attach")
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    fds = [sync_w, start_r]
    env = conmon_env(sync_w, start_r)
    att_r = -1
    if attach:
        att_r, att_w = os.pipe()
        fds.append(att_w)
        env["_OCI_ATTACHPIPE"] = str(att_w)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, pass_fds=fds, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    except OSError as e:
        for fd in fds + [sync_r, start_w] + ([att_r] if att_r >= 0 else []):
            os.close(fd)
        raise errors.Internal(f"OCI runtime exec failed: conmon: {e.strerror}: unknown")
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    sync = _Lines(sync_r)
    att = _Lines(att_r) if att_r >= 0 else None
    try:
        os.write(start_w, b"\0")      # conmon forks and detaches after this
    except BrokenPipeError:
        pass
    _, err = await proc.communicate()
    if proc.returncode != 0:
        sync.close()
        if att is not None:
            att.close()
        os.close(start_w)
        raise errors.Internal("OCI runtime exec failed: conmon: "
                              + err.decode(errors="replace").strip() + ": unknown")
    return sync, att, start_w


async def _pump(ex, sock, conn, tty, attach_in) -> bool:
    """conmon's attach socket → the client (packets: 2 stdout, 3 stderr);
    the client's input → the socket (its EOF closes the process's stdin).
    With a TTY the detach keys (default ctrl-p,ctrl-q) end the session and
    leave the process running, as Docker's. → True if the session ended
    before the output did (client gone or detached)."""
    from skiff.engine.engine import copy_stdin, parse_detach_keys
    loop = asyncio.get_running_loop()
    keys = parse_detach_keys(ex.cfg.get("DetachKeys")) if (tty and attach_in) else b""
    detached = loop.create_future()

    async def pump_in():
        try:
            if await copy_stdin(loop, conn, sock, keys):
                detached.set_result(True)
                return
        except (ConnectionError, OSError):
            pass
        if tty:
            # Docker: with a TTY the client's EOF ends the session (the
            # process keeps its terminal and goes on)
            if not detached.done():
                detached.set_result(False)
            return
        # conmon closes the process's stdin
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    in_task = loop.create_task(pump_in()) if attach_in else None
    ended_early = False
    try:
        while True:
            recv = loop.create_task(loop.sock_recv(sock, 65537))
            done, _ = await asyncio.wait({recv, detached}, return_when=asyncio.FIRST_COMPLETED)
            if recv not in done:
                recv.cancel()
                ended_early = True
                if detached.result():
                    _emit(ex, "exec_detach")
                break
            try:
                pkt = recv.result()
            except (ConnectionError, OSError):
                break
            if not pkt:
                break
            stream = 2 if pkt[0] == 3 and not tty else 1
            try:
                await conn.send(stream, pkt[1:])
            except (ConnectionError, OSError):
                ended_early = True
                break
    finally:
        if in_task:
            in_task.cancel()
        if not detached.done():
            detached.cancel()
    return ended_early


def _emit(ex, action):
    eng = ex.engine
    if eng is not None:
        c = ex.container
        eng.events.emit("container", action, c.id,
                        {"name": c.name, "image": c.config.get("Image", ""), "execID": ex.id})


async def _reap(engine, ex, sync):
    """Wait for conmon to report the exit code (its sync pipe's last line,
    else its exit file), then record it."""
    code = None
    try:
        while True:
            msg = await sync.next()
            if msg is not None and "data" in msg:
                code = int(msg["data"])
            if sync.eof and not sync.buf:
                break
    finally:
        sync.close()
    if code is None or code < 0:
        code = _read_exit(ex.dir, ex.container.id)
    ex.exit_code = code if code is not None and code >= 0 else 137
    ex.running = False
    if ex.proc is not None:
        ex.proc.returncode = ex.exit_code
    _done(engine, ex)


def _kill_conmon(xdir: str):
    try:
        with open(os.path.join(xdir, "conmon.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "conmon":
                os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _read_exit(xdir: str, cid: str):
    """conmon's exit file: ``<exit-dir>/<container id>``."""
    try:
        with open(os.path.join(xdir, cid)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _done(engine, ex):
    ex.running = False
    if ex.dir:
        shutil.rmtree(ex.dir, ignore_errors=True)
    _emit_die(engine, ex)
    ex.done.set()


def _failure_text(message: str, xdir: str) -> str:
    """The runtime's own words for why exec failed: the error it logged
    (``--log``, JSON), else what it said on stderr (conmon relays that)."""
    try:
        with open(os.path.join(xdir, "runtime.log")) as f:
            logged = f.read().splitlines()
    except OSError:
        logged = []
    for line in reversed(logged):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("level") in ("error", "fatal") and obj.get("msg"):
            return obj["msg"].strip()
    lines = [l.strip() for l in (message or "").splitlines() if l.strip()]
    for line in reversed(lines):
        if line.startswith("time=") and 'msg="' in line:
            line = line.split('msg="', 1)[1].rsplit('"', 1)[0]
        if "exec failed" in line or "container process" in line or "error" in line.lower():
            return line
    return lines[-1] if lines else "exec failed: unable to start container process"


def _start_failure_code(text: str) -> int:
    """moby's setExitCodeFromError: 126 cannot be invoked, 127 not found."""
    low = text.lower()
    if "permission denied" in low or "is a directory" in low:
        return 126
    if ("executable file not found" in low or "no such file or directory" in low
            or "not a directory" in low):
        return 127
    return 128


def _resize_ctl(xdir: str, h, w):
    """Resize through conmon's control fifo (``1 <h> <w>``)."""
    try:
        fd = os.open(os.path.join(xdir, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, f"1 {int(h)} {int(w)}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


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


def resize(engine, ex: ExecInstance, h: int, w: int):
    if not ex.running:
        if ex.started:
            raise errors.Conflict(f"exec {ex.id} is not running")
        return
    if ex.dir and ex.tty:
        _resize_ctl(ex.dir, h, w)
