"""Container verbs: run, create, start, stop, ps, logs, exec, attach, ..."""

import json
import os
import sys

from skiff.cli import fmt
from skiff.cli.client import APIError, q
from skiff.cli.flags import F, UsageError
from skiff.cli.main import Command

_SIGNALS_PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                    "SIGALRM", "SIGCONT", "SIGTSTP")


def filters_json(items):
    """["status=exited", "label=a=b"] → '{"label":{"a=b":true},"status":{"exited":true}}'."""
    if not items:
        return None
    d = {}
    for f in items:
        k, eq, v = f.partition("=")
        if not eq:
            raise UsageError(f'invalid argument "{f}" for "-f, --filter" flag: bad format of filter (expected name=value)')
        d.setdefault(k.strip().lower(), {})[v] = True
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


def _err(msg):
    sys.stderr.write(msg + "\n")


# -- run / create ---------------------------------------------------------------
def _start_err_status(msg):
    if ("executable file not found" in msg or "no such file or directory" in msg
            or "system cannot find the file specified" in msg):
        return 127
    if "permission denied" in msg or "is a directory" in msg:
        return 126
    return 125


def _run_error(name, msg, status=125):
    sys.stderr.write(f"skiff: {msg}\n\nRun 'skiff {name} --help' for more information\n")
    return status


def pull_for_run(cli, image, platform, out):
    from skiff.cli import ref as R
    from skiff.cli.commands.image import pull_image
    repo, tag, digest = R.parse(image)
    pull_image(cli, repo, tag, digest, platform, out=out, quiet=False)


def create_container(cli, o, image, cmd, console=(0, 0)):
    from skiff.cli import ref as R
    from skiff.cli.runopts import build_create
    params, body = build_create(o, image, cmd, console)
    c = cli.client
    pull = (o.get("pull") or "missing").lower()
    if pull not in ("always", "missing", "never"):
        raise UsageError(f'invalid pull option: \'{pull}\': must be one of "always", "missing" or "never"')
    if pull == "always":
        pull_for_run(cli, image, o.platform, sys.stderr)
    try:
        r = c.post("/containers/create", params, body)
    except APIError as e:
        if e.status != 404 or pull == "never":  # docker pulls on any NotFound
            raise
        sys.stderr.write(f"Unable to find image '{R.familiar_tagged(image)}' locally\n")
        sys.stderr.flush()
        pull_for_run(cli, image, o.platform, sys.stderr)
        r = c.post("/containers/create", params, body)
    for w in r.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {w}\n")
    if o.cidfile:
        with open(o.cidfile, "x") as f:
            f.write(r["Id"])
    return r["Id"]


def cmd_create(cli, args, name="create"):
    from skiff.cli.runopts import RUN_FLAGS, CREATE_ONLY
    flags = [f for f in RUN_FLAGS if f.dest not in CREATE_ONLY or f.dest == "rm"]
    cmd = Command(cli, name, "[OPTIONS] IMAGE [COMMAND] [ARG...]", flags, args,
                  min_args=1, interspersed=False, desc="Create a new container")
    o = cmd.opts
    from skiff.cli.streams import JSONMessageError
    try:
        cid = create_container(cli, o, cmd.args[0], cmd.args[1:])
    except UsageError as e:
        return _run_error(name, str(e))
    except (APIError, JSONMessageError) as e:
        # docker create reports engine errors plainly, exit status 1
        sys.stderr.write(f"{e}\n")
        return 1
    print(cid)
    return 0


class _Waiter:
    """POST /containers/{id}/wait, registered before start (docker's order)."""

    def __init__(self, cli, cid, condition):
        import threading
        self.client = cli.new_client()
        self.cid = cid
        self.condition = condition
        self.registered = threading.Event()
        self.result = None
        self.error = None
        self._t = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self._t.start()

    def join(self):
        self._t.join()

    def run(self):
        try:
            r = self.client.request("POST", f"/containers/{q(self.cid)}/wait",
                                    {"condition": self.condition})
            self.registered.set()
            self.result = r.json()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            self.error = e
        finally:
            self.registered.set()


def _install_resize(cli, path, fd=1):
    def resize(*_):
        sz = _tsize(fd)
        if sz:
            try:
                cli.new_client().request("POST", path, {"h": sz[0], "w": sz[1]}).read()
            except Exception:  # noqa: BLE001 - best effort, like docker
                pass
    return resize


def _tsize(fd=1):
    from skiff.cli.streams import term_size
    return term_size(fd)


def _proxy_signals(cli, cid):
    import signal
    saved = {}

    def handler(signum, _frame):
        try:
            name = signal.Signals(signum).name
            cli.new_client().request("POST", f"/containers/{q(cid)}/kill", {"signal": name}).read()
        except Exception:  # noqa: BLE001
            pass
    for s in _SIGNALS_PROXIED:
        try:
            saved[s] = signal.signal(getattr(signal, s), handler)
        except (ValueError, OSError, AttributeError):
            pass
    return saved


def _restore_signals(saved):
    import signal
    for s, h in saved.items():
        try:
            signal.signal(getattr(signal, s), h)
        except (ValueError, OSError):
            pass


def cmd_run(cli, args, name="run"):
    import signal
    from skiff.cli.runopts import RUN_FLAGS
    from skiff.cli import streams
    cmd = Command(cli, name, "[OPTIONS] IMAGE [COMMAND] [ARG...]", RUN_FLAGS, args,
                  min_args=1, interspersed=False, desc="Create and run a new container from an image")
    o = cmd.opts
    stdin_tty = sys.stdin.isatty()
    stdout_tty = sys.stdout.isatty()
    if o.tty and o.interactive and not stdin_tty and not o.detach:
        sys.stderr.write("the input device is not a TTY\n")
        return 1
    console = (0, 0)
    if o.tty and stdout_tty:
        console = _tsize(1) or (0, 0)
    try:
        detach_keys = streams.parse_detach_keys(o.detach_keys or "ctrl-p,ctrl-q")
    except ValueError as e:
        return _run_error(name, str(e))
    try:
        cid = create_container(cli, o, cmd.args[0], cmd.args[1:], console)
    except UsageError as e:
        return _run_error(name, str(e))
    except APIError as e:
        return _run_error(name, str(e))
    except streams.JSONMessageError as e:
        return _run_error(name, str(e))
    c = cli.client
    if o.detach:
        # docker registers the wait even when detached (and drops it)
        waiter = _Waiter(cli, cid, "removed" if o.rm else "next-exit")
        waiter.start()
        waiter.registered.wait(5)
        try:
            c.request("POST", f"/containers/{q(cid)}/start").read()
        except APIError as e:
            return _run_error(name, str(e), _start_err_status(e.message))
        print(cid)
        return 0

    attach = [a.lower() for a in (o.attach or [])]
    a_in = ("stdin" in attach) if attach else o.interactive
    a_out = ("stdout" in attach) if attach else True
    a_err = ("stderr" in attach) if attach else True
    session = None
    if a_in or a_out or a_err:
        params = {"stream": 1}
        if a_in:
            params["stdin"] = 1
        if a_out:
            params["stdout"] = 1
        if a_err:
            params["stderr"] = 1
        if o.detach_keys:
            params["detachKeys"] = o.detach_keys
        try:
            sock, rfile, ctype = c.hijack(f"/containers/{q(cid)}/attach", params)
        except APIError as e:
            return _run_error(name, str(e))
        session = streams.Session(sock, rfile, o.tty, stdin=a_in, detach_keys=detach_keys)

    waiter = _Waiter(cli, cid, "removed" if o.rm else "next-exit")
    waiter.start()
    waiter.registered.wait(5)
    try:
        c.request("POST", f"/containers/{q(cid)}/start").read()
    except APIError as e:
        if session:
            session.sock.close()
        if o.rm:
            # docker waits for the daemon to remove it; bounded here
            waiter._t.join(10)
        return _run_error(name, str(e), _start_err_status(e.message))

    saved = {}
    if o.tty and stdout_tty:
        resize = _install_resize(cli, f"/containers/{q(cid)}/resize")
        resize()
        try:
            signal.signal(signal.SIGWINCH, resize)
        except (ValueError, OSError):
            pass
    if o.sig_proxy and not o.tty:
        saved = _proxy_signals(cli, cid)
    try:
        if session is not None:
            try:
                with streams.RawTerminal(sys.stdin.fileno(), o.tty and a_in and stdin_tty):
                    session.run()
            except streams.StreamError as e:
                sys.stderr.write(f"skiff: {e}\n")
            if session.detached:
                return 0  # docker run says nothing when the user detaches
        waiter.join()
    finally:
        _restore_signals(saved)
    if waiter.error is not None:
        if isinstance(waiter.error, APIError):
            return _run_error(name, str(waiter.error))
        raise waiter.error
    res = waiter.result or {}
    werr = res.get("Error")
    if werr and werr.get("Message"):
        sys.stderr.write(f"skiff: {werr['Message']}\n")
        return 125
    return int(res.get("StatusCode", 0))


# -- simple multi-container verbs -------------------------------------------------
def _each(cli, names, fn, print_name=True):
    errors = []
    for n in names:
        try:
            fn(n)
            if print_name:
                print(n)
                sys.stdout.flush()
        except APIError as e:
            errors.append(str(e))
    for e in errors:
        sys.stderr.write(e + "\n")
    return 1 if errors else 0


def cmd_start(cli, args, name="start"):
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("a,attach"), F("i,interactive"), F("detach-keys", "str", "")], args, min_args=1)
    o = cmd.opts
    c = cli.client
    if o.attach or o.interactive:
        if len(cmd.args) > 1:
            sys.stderr.write("you cannot start and attach multiple containers at once\n")
            return 1
        return _attach_and_start(cli, cmd.args[0], o)
    errs = []
    for n in cmd.args:
        try:
            c.request("POST", f"/containers/{q(n)}/start").read()
            print(n)
            sys.stdout.flush()
        except APIError as e:
            errs.append((n, e))
    for n, e in errs:
        sys.stderr.write(f"{e}\n")
    if errs:
        sys.stderr.write(f"Error: failed to start containers: {', '.join(n for n, _ in errs)}\n")
        return 1
    return 0


def _attach_and_start(cli, ref, o):
    from skiff.cli import streams
    c = cli.client
    info = c.get(f"/containers/{q(ref)}/json")
    cid = info["Id"]
    tty = bool(info["Config"].get("Tty"))
    a_in = bool(o.interactive and info["Config"].get("OpenStdin"))
    params = {"stream": 1, "stdout": 1, "stderr": 1}
    if a_in:
        params["stdin"] = 1
    if o.detach_keys:
        params["detachKeys"] = o.detach_keys
    sock, rfile, _ = c.hijack(f"/containers/{q(cid)}/attach", params)
    sess = streams.Session(sock, rfile, tty, stdin=a_in,
                           detach_keys=streams.parse_detach_keys(o.detach_keys or "ctrl-p,ctrl-q"))
    waiter = _Waiter(cli, cid, "next-exit")
    waiter.start()
    waiter.registered.wait(5)
    c.request("POST", f"/containers/{q(cid)}/start").read()
    with streams.RawTerminal(sys.stdin.fileno(), tty and a_in and sys.stdin.isatty()):
        sess.run()
    if sess.detached:
        return 0
    waiter.join()
    return int((waiter.result or {}).get("StatusCode", 0))


def cmd_stop(cli, args, name="stop", verb="stop"):
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("s,signal", "str", ""), F("t,timeout", "int", None),
                   F("time", "int", None, dest="time")], args, min_args=1)
    o = cmd.opts
    params = {}
    if o.signal:
        params["signal"] = o.signal
    t = o.timeout if o.timeout is not None else o.time
    if t is not None:
        params["t"] = t
    c = cli.client
    return _each(cli, cmd.args,
                 lambda n: c.request("POST", f"/containers/{q(n)}/{verb}", params).read())


def cmd_restart(cli, args, name="restart"):
    return cmd_stop(cli, args, name, "restart")


def cmd_kill(cli, args, name="kill"):
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("s,signal", "str", "")], args, min_args=1)
    params = {"signal": cmd.opts.signal} if cmd.opts.signal else {}
    c = cli.client
    return _each(cli, cmd.args,
                 lambda n: c.request("POST", f"/containers/{q(n)}/kill", params).read())


def cmd_pause(cli, args, name="pause"):
    cmd = Command(cli, name, "CONTAINER [CONTAINER...]", [], args, min_args=1)
    c = cli.client
    return _each(cli, cmd.args, lambda n: c.request("POST", f"/containers/{q(n)}/pause").read())


def cmd_unpause(cli, args, name="unpause"):
    cmd = Command(cli, name, "CONTAINER [CONTAINER...]", [], args, min_args=1)
    c = cli.client
    return _each(cli, cmd.args, lambda n: c.request("POST", f"/containers/{q(n)}/unpause").read())


def cmd_rm(cli, args, name="rm"):
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("f,force"), F("l,link"), F("v,volumes")], args, min_args=1)
    o = cmd.opts
    params = {}
    if o.volumes:
        params["v"] = 1
    if o.link:
        params["link"] = 1
    if o.force:
        params["force"] = 1
    c = cli.client
    errors = []
    for n in cmd.args:
        try:
            c.request("DELETE", f"/containers/{q(n)}", params).read()
            print(n)
            sys.stdout.flush()
        except APIError as e:
            if o.force and e.status == 404:
                continue
            errors.append(str(e))
    for e in errors:
        sys.stderr.write(e + "\n")
    return 1 if errors else 0


def cmd_rename(cli, args, name="rename"):
    cmd = Command(cli, name, "CONTAINER NEW_NAME", [], args, exact=2)
    try:
        cli.client.request("POST", f"/containers/{q(cmd.args[0])}/rename",
                           {"name": cmd.args[1]}).read()
    except APIError as e:
        sys.stderr.write(f"{e}\nError: failed to rename container named {cmd.args[0]}\n")
        return 1
    return 0


def cmd_wait(cli, args, name="wait"):
    cmd = Command(cli, name, "CONTAINER [CONTAINER...]", [], args, min_args=1)
    c = cli.client
    errs = 0
    for n in cmd.args:
        try:
            r = c.post(f"/containers/{q(n)}/wait")
            print(r.get("StatusCode", 0))
            sys.stdout.flush()
        except APIError as e:
            sys.stderr.write(f"{e}\n")
            errs += 1
    return 1 if errs else 0


# -- ps -----------------------------------------------------------------------------
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def cmd_ps(cli, args, name="ps"):
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("a,all"), F("f,filter", "list"), F("format", "str", ""),
                   F("n,last", "int", -1), F("l,latest"), F("no-trunc"), F("q,quiet"),
                   F("s,size")], args, max_args=0)
    o = cmd.opts
    params = {}
    if o.all:
        params["all"] = 1
    limit = 1 if o.latest else o.last
    if limit != -1:
        params["limit"] = limit
    fmt_ = o.format
    want_size = o.size or (fmt_ and "{{.Size}}" in fmt_)
    if want_size and not o.quiet:
        params["size"] = 1
    f = filters_json(o.filter)
    if f:
        params["filters"] = f
    rows = cli.client.get("/containers/json", params) or []
    table = PS_TABLE + ("\t{{.Size}}" if o.size else "")
    if o.quiet:
        fmt_ = "{{.ID}}"
    import time
    now = time.time()
    items = [fmt.ContainerCtx(r, trunc=not o.no_trunc, now=now) for r in rows]
    fmt.write_formatted(fmt_, items, fmt.header_ctx(fmt.ContainerCtx.HEADERS), table)
    return 0


# -- logs -------------------------------------------------------------------------------
def cmd_logs(cli, args, name="logs"):
    from skiff.cli import streams
    cmd = Command(cli, name, "[OPTIONS] CONTAINER",
                  [F("details"), F("f,follow"), F("since", "str", ""), F("n,tail", "str", "all"),
                   F("t,timestamps"), F("until", "str", "")], args, exact=1)
    o = cmd.opts
    c = cli.client
    info = c.get(f"/containers/{q(cmd.args[0])}/json")
    params = {"stdout": 1, "stderr": 1}
    try:
        if o.since:
            params["since"] = fmt.get_timestamp(o.since)
        if o.until:
            params["until"] = fmt.get_timestamp(o.until)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if o.timestamps:
        params["timestamps"] = 1
    if o.follow:
        params["follow"] = 1
    params["tail"] = o.tail
    if o.details:
        params["details"] = 1
    r = c.request("GET", f"/containers/{q(info['Id'])}/logs", params)
    ctype = r.headers.get("content-type", "")
    tty = bool(info.get("Config", {}).get("Tty")) or "raw-stream" in ctype
    try:
        streams.copy_output(r.read1, tty)
    except streams.StreamError as e:
        sys.stderr.write(f"Error: {e}\n")
        return 1
    return 0


# -- exec -------------------------------------------------------------------------------
EXEC_FLAGS = [F("d,detach"), F("detach-keys", "str", ""), F("e,env", "list"),
              F("env-file", "list"), F("i,interactive"), F("privileged"), F("t,tty"),
              F("u,user", "str", ""), F("w,workdir", "str", "")]


def build_exec(o, cmd_args, console=None):
    from skiff.cli.runopts import expand_env, parse_env_file
    env = []
    for f in o.env_file or []:
        env.extend(parse_env_file(f))
    env.extend(expand_env(o.env))
    body = {"User": o.user, "Privileged": o.privileged, "Tty": o.tty,
            "AttachStdin": bool(o.interactive and not o.detach),
            "AttachStderr": not o.detach, "AttachStdout": not o.detach,
            "Detach": o.detach, "DetachKeys": o.detach_keys,
            "Env": env or None, "WorkingDir": o.workdir, "Cmd": list(cmd_args)}
    if console:
        body["ConsoleSize"] = list(console)
    return body


def cmd_exec(cli, args, name="exec"):
    import signal
    from skiff.cli import streams
    cmd = Command(cli, name, "[OPTIONS] CONTAINER COMMAND [ARG...]", EXEC_FLAGS, args,
                  min_args=2, interspersed=False, desc="Execute a command in a running container")
    o = cmd.opts
    c = cli.client
    if o.tty and o.interactive and not sys.stdin.isatty():
        sys.stderr.write("the input device is not a TTY\n")
        return 1
    info = c.get(f"/containers/{q(cmd.args[0])}/json")
    console = None
    if o.tty and sys.stdout.isatty():
        console = _tsize(1)
    body = build_exec(o, cmd.args[1:], console)
    try:
        r = c.post(f"/containers/{q(info['Id'])}/exec", None, body)
    except APIError as e:
        sys.stderr.write(f"{e}\n")
        return 1 if e.status != 409 else 1
    eid = r["Id"]
    start_body = {"Detach": o.detach, "Tty": o.tty}
    if console:
        start_body["ConsoleSize"] = list(console)
    if o.detach:
        c.request("POST", f"/exec/{q(eid)}/start", body=start_body).read()
        return 0
    try:
        sock, rfile, ctype = c.hijack(f"/exec/{q(eid)}/start", body=start_body)
    except APIError as e:
        sys.stderr.write(f"{e}\n")
        return _start_err_status(e.message) if e.status != 409 else 1
    sess = streams.Session(sock, rfile, o.tty, stdin=o.interactive,
                           detach_keys=streams.parse_detach_keys(o.detach_keys or "ctrl-p,ctrl-q"))
    if o.tty and console:
        resize = _install_resize(cli, f"/exec/{q(eid)}/resize")
        resize()
        try:
            signal.signal(signal.SIGWINCH, resize)
        except (ValueError, OSError):
            pass
    try:
        with streams.RawTerminal(sys.stdin.fileno(), o.tty and o.interactive and sys.stdin.isatty()):
            sess.run()
    except streams.StreamError as e:
        sys.stderr.write(f"{e}\n")
    if sess.detached:
        return 0
    r = c.get(f"/exec/{q(eid)}/json")
    code = r.get("ExitCode")
    return int(code) if code is not None else 0


def cmd_attach(cli, args, name="attach"):
    import signal
    from skiff.cli import streams
    cmd = Command(cli, name, "[OPTIONS] CONTAINER",
                  [F("detach-keys", "str", ""), F("no-stdin"), F("sig-proxy", "bool", True)],
                  args, exact=1)
    o = cmd.opts
    c = cli.client
    info = c.get(f"/containers/{q(cmd.args[0])}/json")
    st = info.get("State", {})
    if not st.get("Running"):
        sys.stderr.write("You cannot attach to a stopped container, start it first\n")
        return 1
    if st.get("Paused"):
        sys.stderr.write("You cannot attach to a paused container, unpause it first\n")
        return 1
    cid = info["Id"]
    tty = bool(info["Config"].get("Tty"))
    a_in = bool(info["Config"].get("OpenStdin")) and not o.no_stdin
    params = {"stream": 1, "stdout": 1, "stderr": 1}
    if a_in:
        params["stdin"] = 1
    if o.detach_keys:
        params["detachKeys"] = o.detach_keys
    sock, rfile, _ = c.hijack(f"/containers/{q(cid)}/attach", params)
    sess = streams.Session(sock, rfile, tty, stdin=a_in,
                           detach_keys=streams.parse_detach_keys(o.detach_keys or "ctrl-p,ctrl-q"))
    saved = _proxy_signals(cli, cid) if o.sig_proxy and not tty else {}
    if tty and sys.stdout.isatty():
        resize = _install_resize(cli, f"/containers/{q(cid)}/resize")
        resize()
        signal.signal(signal.SIGWINCH, resize)
    try:
        with streams.RawTerminal(sys.stdin.fileno(), tty and a_in and sys.stdin.isatty()):
            sess.run()
    finally:
        _restore_signals(saved)
    if sess.detached:
        # docker attach reports the escape as an error (exit 1)
        sys.stderr.write("read escape sequence\n")
        return 1
    info = c.get(f"/containers/{q(cid)}/json")
    return int(info.get("State", {}).get("ExitCode", 0) or 0)


# -- inspect-like ----------------------------------------------------------------------
def cmd_container_inspect(cli, args, name="container inspect"):
    from skiff.cli.commands.system import inspect_objects
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("f,format", "str", ""), F("s,size")], args, min_args=1)
    return inspect_objects(cli, cmd.args, cmd.opts.format, kinds=("container",),
                           size=cmd.opts.size)


def cmd_top(cli, args, name="top"):
    cmd = Command(cli, name, "CONTAINER [ps OPTIONS]", [], args, min_args=1,
                  interspersed=False)
    params = {}
    if len(cmd.args) > 1:
        params["ps_args"] = " ".join(cmd.args[1:])
    r = cli.client.get(f"/containers/{q(cmd.args[0])}/top", params)
    lines = ["\t".join(r.get("Titles") or [])]
    for p in r.get("Processes") or []:
        lines.append("\t".join(p))
    sys.stdout.write(fmt.tabwrite("\n".join(lines) + "\n", minwidth=20))
    return 0


def cmd_port(cli, args, name="port"):
    cmd = Command(cli, name, "CONTAINER [PRIVATE_PORT[/PROTO]]", [], args, min_args=1,
                  max_args=2)
    info = cli.client.get(f"/containers/{q(cmd.args[0])}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    out = []
    if len(cmd.args) == 2:
        want = cmd.args[1]
        if "/" not in want:
            want += "/tcp"
        binds = ports.get(want)
        if not binds:
            sys.stderr.write(f"Error: No public port '{want}' published for {cmd.args[0]}\n")
            return 1
        for b in binds:
            out.append(_hostport(b))
    else:
        def key(k):
            p, _, proto = k.partition("/")
            return (int(p), proto)
        for k in sorted(ports, key=key):
            for b in ports[k] or []:
                out.append(f"{k} -> {_hostport(b)}")
    for ln in out:
        print(ln)
    return 0


def _hostport(b):
    ip = b.get("HostIp") or "0.0.0.0"
    if ":" in ip:
        ip = f"[{ip}]"
    return f"{ip}:{b.get('HostPort')}"


def cmd_diff(cli, args, name="diff"):
    cmd = Command(cli, name, "CONTAINER", [], args, exact=1)
    changes = cli.client.get(f"/containers/{q(cmd.args[0])}/changes") or []
    for ch in changes:
        print(f"{'CAD'[ch.get('Kind', 0)]} {ch.get('Path')}")
    return 0


def cmd_container_prune(cli, args, name="container prune"):
    cmd = Command(cli, name, "[OPTIONS]", [F("f,force"), F("filter", "list")], args, max_args=0)
    if not cmd.opts.force and not _confirm("WARNING! This will remove all stopped containers."):
        return 0
    params = {}
    f = filters_json(cmd.opts.filter)
    if f:
        params["filters"] = f
    r = cli.client.post("/containers/prune", params) or {}
    deleted = r.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        for d in deleted:
            print(d)
        print()
    print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed', 0))}")
    return 0


def _confirm(warning):
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    ans = sys.stdin.readline().strip().lower()
    return ans in ("y", "yes")


# -- cp / export / commit ------------------------------------------------------------
def _split_cp(arg):
    if arg.startswith(("/", ".", "-")) or ":" not in arg:
        return None, arg
    c, _, p = arg.partition(":")
    return c, p


def cmd_cp(cli, args, name="cp"):
    import base64
    import io
    import tarfile
    cmd = Command(cli, name, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tskiff cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                  [F("a,archive"), F("L,follow-link"), F("q,quiet")], args, exact=2)
    src_c, src = _split_cp(cmd.args[0])
    dst_c, dst = _split_cp(cmd.args[1])
    c = cli.client
    if src_c and dst_c:
        sys.stderr.write("copying between containers is not supported\n")
        return 1
    if not src_c and not dst_c:
        sys.stderr.write("must specify at least one container source\n")
        return 1
    if src_c:
        r = c.request("GET", f"/containers/{q(src_c)}/archive", {"path": src})
        if dst == "-":
            for chunk in r.iter_chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return 0
        data = r.read()
        stat = {}
        h = r.headers.get("x-docker-container-path-stat")
        if h:
            stat = json.loads(base64.b64decode(h))
        base = stat.get("name") or os.path.basename(src.rstrip("/"))
        into_dir = os.path.isdir(dst)
        if not into_dir and dst.endswith("/"):
            sys.stderr.write(f"Error: destination directory \"{dst}\" must exist\n")
            return 1
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members = tf.getmembers()
            if not into_dir:
                # rename the top entry to dst
                for m in members:
                    if m.name == base or m.name.startswith(base + "/"):
                        m.name = os.path.basename(dst.rstrip("/")) + m.name[len(base):]
                target_dir = os.path.dirname(os.path.abspath(dst))
            else:
                target_dir = dst
            _safe_extract(tf, target_dir, members)
        if not cmd.opts.quiet:
            sys.stderr.write(f"Successfully copied {fmt.human_size(len(data))} to {dst}\n")
        return 0
    # host → container
    if src == "-":
        body = sys.stdin.buffer.read()
        c.request("PUT", f"/containers/{q(dst_c)}/archive",
                  {"path": dst, "noOverwriteDirNonDir": "true"}, body,
                  headers={"Content-Type": "application/x-tar"}).read()
        return 0
    if not os.path.exists(src):
        sys.stderr.write(f"lstat {os.path.abspath(src)}: no such file or directory\n")
        return 1
    # does dst exist in the container and is it a directory?
    target_dir, arcname = dst, os.path.basename(os.path.abspath(src))
    r = c.raw_request("HEAD", c.url(f"/containers/{q(dst_c)}/archive", {"path": dst}))
    r.read()
    is_dir = False
    if r.status == 200:
        h = r.headers.get("x-docker-container-path-stat")
        if h:
            st = json.loads(base64.b64decode(h))
            is_dir = bool(st.get("mode", 0) & (1 << 31))
    elif r.status == 404 and r.headers.get("content-type", "").startswith("application/json") and False:
        pass
    if not is_dir:
        target_dir = os.path.dirname(dst.rstrip("/")) or "/"
        arcname = os.path.basename(dst.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(src, arcname=arcname)
    data = buf.getvalue()
    c.request("PUT", f"/containers/{q(dst_c)}/archive",
              {"path": target_dir, "noOverwriteDirNonDir": "true"}, data,
              headers={"Content-Type": "application/x-tar"}).read()
    if not cmd.opts.quiet:
        sys.stderr.write(f"Successfully copied {fmt.human_size(len(data))} to {dst_c}:{dst}\n")
    return 0


def _safe_extract(tf, target_dir, members):
    """Extract refusing absolute paths, "..", and links that leave target_dir."""
    import tarfile
    if hasattr(tarfile, "tar_filter"):
        tf.extractall(target_dir, members=members, filter="tar")
        return
    for m in members:
        parts = m.name.split("/")
        if m.name.startswith("/") or ".." in parts:
            raise SystemExit(f"refusing to extract {m.name!r}: outside the destination")
        if m.islnk() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
            raise SystemExit(f"refusing to extract hard link {m.name!r} -> {m.linkname!r}")
        if m.isdev():
            raise SystemExit(f"refusing to extract device {m.name!r}")
    tf.extractall(target_dir, members=members)


def write_stream_out(r, output):
    if output:
        with open(output, "wb") as f:
            for chunk in r.iter_chunks():
                f.write(chunk)
        return 0
    if sys.stdout.isatty():
        sys.stderr.write("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        r.close()
        return 1
    for chunk in r.iter_chunks():
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return 0


def cmd_export(cli, args, name="export"):
    cmd = Command(cli, name, "[OPTIONS] CONTAINER", [F("o,output", "str", "")], args, exact=1)
    if not cmd.opts.output and sys.stdout.isatty():
        sys.stderr.write("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        return 1
    r = cli.client.request("GET", f"/containers/{q(cmd.args[0])}/export")
    return write_stream_out(r, cmd.opts.output)


def cmd_commit(cli, args, name="commit"):
    from skiff.cli import ref as R
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                  [F("a,author", "str", ""), F("c,change", "list"), F("m,message", "str", ""),
                   F("p,pause", "bool", True)], args, min_args=1, max_args=2)
    o = cmd.opts
    params = {"container": cmd.args[0]}
    if len(cmd.args) == 2:
        repo, tag, _ = R.parse(cmd.args[1])
        params["repo"] = repo  # fully qualified, as docker sends it
        params["tag"] = tag
    else:
        params["repo"] = ""
        params["tag"] = ""
    params["comment"] = o.message
    params["author"] = o.author
    if o.change:
        params["changes"] = o.change
    if not o.pause:
        params["pause"] = 0
    r = cli.client.post("/commit", params, Ellipsis)
    print(r["Id"])
    return 0


# -- update ---------------------------------------------------------------------------
def cmd_update(cli, args, name="update"):
    from skiff.cli.runopts import parse_restart, ram_in_bytes
    cmd = Command(cli, name, "[OPTIONS] CONTAINER [CONTAINER...]",
                  [F("blkio-weight", "int", 0), F("cpu-shares", "int", 0), F("cpus", "str", ""),
                   F("cpuset-cpus", "str", ""), F("cpuset-mems", "str", ""),
                   F("m,memory", "str", ""), F("memory-reservation", "str", ""),
                   F("memory-swap", "str", ""), F("pids-limit", "int", None),
                   F("restart", "str", "")], args, min_args=1)
    o = cmd.opts
    body = {}
    if o.blkio_weight:
        body["BlkioWeight"] = o.blkio_weight
    if o.cpu_shares:
        body["CpuShares"] = o.cpu_shares
    if o.cpus:
        body["NanoCpus"] = int(round(float(o.cpus) * 1e9))
    if o.cpuset_cpus:
        body["CpusetCpus"] = o.cpuset_cpus
    if o.cpuset_mems:
        body["CpusetMems"] = o.cpuset_mems
    if o.memory:
        body["Memory"] = ram_in_bytes(o.memory, "--memory")
    if o.memory_reservation:
        body["MemoryReservation"] = ram_in_bytes(o.memory_reservation, "--memory-reservation")
    if o.memory_swap:
        body["MemorySwap"] = -1 if o.memory_swap == "-1" else ram_in_bytes(o.memory_swap, "--memory-swap")
    if o.pids_limit is not None:
        body["PidsLimit"] = o.pids_limit
    if o.restart:
        body["RestartPolicy"] = parse_restart(o.restart)
    c = cli.client
    return _each(cli, cmd.args, lambda n: c.post(f"/containers/{q(n)}/update", None, body))


# -- stats ------------------------------------------------------------------------------
STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def stats_ctx(s, trunc=True, container=""):
    cpu = 0.0
    cs = s.get("cpu_stats") or {}
    ps = s.get("precpu_stats") or {}
    cdelta = (cs.get("cpu_usage") or {}).get("total_usage", 0) - \
        (ps.get("cpu_usage") or {}).get("total_usage", 0)
    sdelta = (cs.get("system_cpu_usage") or 0) - (ps.get("system_cpu_usage") or 0)
    ncpu = cs.get("online_cpus") or len((cs.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if sdelta > 0 and cdelta > 0:
        cpu = cdelta / sdelta * ncpu * 100.0
    ms = s.get("memory_stats") or {}
    usage = ms.get("usage", 0) or 0
    st = ms.get("stats") or {}
    # docker subtracts the page cache (v1: total_inactive_file, v2: inactive_file)
    if "total_inactive_file" in st and st["total_inactive_file"] < usage:
        usage -= st["total_inactive_file"]
    elif "inactive_file" in st and st["inactive_file"] < usage:
        usage -= st["inactive_file"]
    limit = ms.get("limit", 0) or 0
    memp = usage / limit * 100.0 if limit else 0.0
    rx = tx = 0
    for n in (s.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    br = bw = 0
    for e in ((s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (e.get("op") or "").lower()
        if op == "read":
            br += e.get("value", 0)
        elif op == "write":
            bw += e.get("value", 0)
    name = (s.get("name") or "").lstrip("/")
    sid = s.get("id", "")
    fields = {
        "ID": sid[:12] if trunc else sid, "Container": container or sid[:12], "Name": name or "--",
        "CPUPerc": f"{cpu:.2f}%", "MemUsage": f"{fmt.bytes_size(usage)} / {fmt.bytes_size(limit)}",
        "MemPerc": f"{memp:.2f}%",
        "NetIO": f"{fmt.human_size(rx, 3)} / {fmt.human_size(tx, 3)}",
        "BlockIO": f"{fmt.human_size(br, 3)} / {fmt.human_size(bw, 3)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }
    return fmt.MapCtx(fields, STATS_HEADERS)


def cmd_stats(cli, args, name="stats"):
    import time
    cmd = Command(cli, name, "[OPTIONS] [CONTAINER...]",
                  [F("a,all"), F("format", "str", ""), F("no-stream"), F("no-trunc")], args)
    o = cmd.opts
    c = cli.client
    names = cmd.args
    if not names:
        lst = c.get("/containers/json", {"all": 1} if o.all else None) or []
        names = [x["Id"] for x in lst]
    while True:
        items = []
        for n in names:
            try:
                s = c.get(f"/containers/{q(n)}/stats", {"stream": 0})
            except APIError as e:
                if cmd.args:
                    sys.stderr.write(f"{e}\n")
                    return 1
                continue
            items.append(stats_ctx(s, not o.no_trunc, n))
        if not o.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        fmt.write_formatted(o.format, items, fmt.header_ctx(STATS_HEADERS), STATS_TABLE)
        if o.no_stream:
            return 0
        time.sleep(1)
