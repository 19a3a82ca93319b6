"""version, info, inspect, events, login/logout and ``system`` subcommands."""

import json
import os
import sys

from skiff.cli import fmt
from skiff.cli import template as T
from skiff.cli.client import APIError, q
from skiff.cli.flags import F
from skiff.cli.main import Command


# -- credentials (docker's config.json format) ------------------------------------
def config_path():
    d = os.environ.get("SKIFF_CONFIG") or os.path.join(os.path.expanduser("~"), ".skiff")
    return os.path.join(d, "config.json")


def _load_config():
    try:
        with open(config_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_config(cfg):
    p = config_path()
    os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
    tmp = p + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent="\t")
    os.replace(tmp, p)


def _server_key(server):
    if not server or server in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "https://index.docker.io/v1/"
    return server


def load_auth(domain):
    import base64
    auths = _load_config().get("auths") or {}
    ent = auths.get(_server_key(domain)) or auths.get(domain)
    if not ent or not ent.get("auth"):
        return {}
    user, _, pw = base64.b64decode(ent["auth"]).decode().partition(":")
    return {"username": user, "password": pw, "serveraddress": domain}


def cmd_login(cli, args, name="login"):
    import base64
    import getpass
    cmd = Command(cli, name, "[OPTIONS] [SERVER]",
                  [F("u,username", "str", ""), F("p,password", "str", ""), F("password-stdin")],
                  args, max_args=1)
    o = cmd.opts
    server = cmd.args[0] if cmd.args else ""
    user = o.username
    pw = o.password
    if pw and o.password_stdin:
        sys.stderr.write("--password and --password-stdin are mutually exclusive\n")
        return 1
    if pw:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    if o.password_stdin:
        pw = sys.stdin.read().rstrip("\r\n")
    if not user:
        sys.stdout.write("Username: ")
        sys.stdout.flush()
        user = sys.stdin.readline().strip()
    if not pw:
        pw = getpass.getpass("Password: ")
    body = {"username": user, "password": pw, "serveraddress": _server_key(server)}
    r = cli.client.post("/auth", None, body) or {}
    cfg = _load_config()
    cfg.setdefault("auths", {})[_server_key(server)] = {
        "auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}
    _save_config(cfg)
    sys.stderr.write(f"\nWARNING! Your credentials are stored unencrypted in '{config_path()}'.\n"
                     "Configure a credential helper to remove this warning. See\n"
                     "https://docs.docker.com/go/credential-store/\n\n")
    print(r.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(cli, args, name="logout"):
    cmd = Command(cli, name, "[SERVER]", [], args, max_args=1)
    key = _server_key(cmd.args[0] if cmd.args else "")
    cfg = _load_config()
    auths = cfg.get("auths") or {}
    if key not in auths:
        print(f"Not logged in to {cmd.args[0] if cmd.args else 'docker.io'}")
        return 0
    print(f"Removing login credentials for {cmd.args[0] if cmd.args else 'https://index.docker.io/v1/'}")
    del auths[key]
    _save_config(cfg)
    return 0


# -- version / info ---------------------------------------------------------------------
_SERVER_KEYS = ("Platform", "Components", "Version", "ApiVersion", "MinAPIVersion", "GitCommit",
                "GoVersion", "Os", "Arch", "KernelVersion", "Experimental", "BuildTime")
_OMITEMPTY = ("Platform", "Components", "MinAPIVersion", "KernelVersion", "Experimental",
              "BuildTime")


def _ansic(rfc3339: str) -> str:
    """Go's reformatDate: an RFC 3339 time → time.ANSIC ("Mon Jan _2 15:04:05 2006");
    anything else unchanged."""
    import datetime
    if "T" not in rfc3339:
        return rfc3339
    try:
        t = datetime.datetime.fromisoformat(rfc3339)
    except ValueError:
        return rfc3339
    if t.tzinfo is None:
        return rfc3339
    return t.strftime("%a %b ") + f"{t.day:2d}" + t.strftime(" %H:%M:%S %Y")


def _server_version(srv: dict) -> dict:
    """The daemon's answer as docker's CLI holds it (types.Version): its
    fields in order, empty optional ones dropped, the Engine component's
    BuildTime in ANSIC form, an Engine component made up when missing."""
    srv = dict(srv)
    comps = []
    for comp in srv.get("Components") or []:
        comp = {"Name": comp.get("Name", ""), "Version": comp.get("Version", ""),
                **({"Details": {k: comp["Details"][k] for k in sorted(comp["Details"])}}
                   if comp.get("Details") else {})}
        if comp["Name"] == "Engine" and "BuildTime" in comp.get("Details", {}):
            comp["Details"]["BuildTime"] = _ansic(comp["Details"]["BuildTime"])
        comps.append(comp)
    if not any(c["Name"] == "Engine" for c in comps):
        det = {"ApiVersion": srv.get("ApiVersion", ""), "Arch": srv.get("Arch", ""),
               "BuildTime": _ansic(srv.get("BuildTime", "")),
               "Experimental": str(bool(srv.get("Experimental"))).lower(),
               "GitCommit": srv.get("GitCommit", ""), "GoVersion": srv.get("GoVersion", ""),
               "MinAPIVersion": srv.get("MinAPIVersion", ""), "Os": srv.get("Os", "")}
        comps.append({"Name": "Engine", "Version": srv.get("Version", ""), "Details": det})
    srv["Components"] = comps
    srv["Platform"] = {"Name": (srv.get("Platform") or {}).get("Name", "")}
    out = {}
    for k in _SERVER_KEYS:
        v = srv.get(k, "" if k != "Experimental" else False)
        if k in _OMITEMPTY and not v:
            continue
        out[k] = v
    return out


def _tabwrite(rows) -> str:
    """docker's tabwriter (minwidth 20, padding 1): ``(key, value)`` rows in a
    run are aligned; a plain string row ends the run."""
    out, run = [], []

    def flush():
        if run:
            width = max(20, max(len(k) + 1 for k, _ in run))
            out.extend(k.ljust(width) + v for k, v in run)
            run.clear()
    for r in rows:
        if isinstance(r, tuple):
            run.append(r)
        else:
            flush()
            out.append(r)
    flush()
    return "\n".join(out) + "\n"


def _version_text(client: dict, srv: dict | None) -> str:
    """docker 28's default ``version`` template, field for field."""
    name = (client.get("Platform") or {}).get("Name", "")
    api = client["ApiVersion"]
    if api != client.get("DefaultAPIVersion"):
        api += f" (downgraded from {client.get('DefaultAPIVersion')})"
    rows = ["Client:" + (f" {name}" if name else ""),
            (" Version:", client["Version"]), (" API version:", api),
            (" Go version:", client["GoVersion"]), (" Git commit:", client["GitCommit"]),
            (" Built:", client.get("BuildTime", "")),
            (" OS/Arch:", f"{client['Os']}/{client['Arch']}"), (" Context:", client["Context"])]
    if srv is not None:
        pname = (srv.get("Platform") or {}).get("Name", "")
        rows += ["", "Server:" + (f" {pname}" if pname else "")]
        for comp in srv.get("Components") or []:
            det = comp.get("Details") or {}
            rows.append(f" {comp['Name']}:")
            if comp["Name"] == "Engine":
                rows += [("  Version:", comp.get("Version", "")),
                         ("  API version:", f"{det.get('ApiVersion', '')} (minimum version "
                                            f"{det.get('MinAPIVersion', '')})"),
                         ("  Go version:", det.get("GoVersion", "")),
                         ("  Git commit:", det.get("GitCommit", "")),
                         ("  Built:", det.get("BuildTime", "")),
                         ("  OS/Arch:", f"{det.get('Os', '')}/{det.get('Arch', '')}"),
                         ("  Experimental:", det.get("Experimental", ""))]
            else:
                rows.append(("  Version:", comp.get("Version", "")))
                rows += [(f"  {k}:", str(det[k])) for k in sorted(det)]
    return _tabwrite(rows)


def cmd_version(cli, args, name="version"):
    import platform
    from skiff import __version__, versions
    from skiff.cli.client import ConnectError, MAX_API_VERSION
    cmd = Command(cli, name, "[OPTIONS]", [F("f,format", "str", "")], args, max_args=0)
    commit, built = versions.build_info_sync()
    client = {"Platform": {"Name": "skiff"}, "Version": __version__,
              "ApiVersion": MAX_API_VERSION, "DefaultAPIVersion": MAX_API_VERSION,
              "GitCommit": commit, "GoVersion": "python" + platform.python_version(),
              "Os": "linux", "Arch": _arch(platform.machine()), "BuildTime": _ansic(built),
              "Context": "default"}
    if not client["BuildTime"]:
        del client["BuildTime"]
    err = None
    try:
        srv = _server_version(cli.client.get("/version"))
        client["ApiVersion"] = cli.client.version
    except ConnectError as e:
        srv = None
        err = e
    if cmd.opts.format:
        out = T.render(cmd.opts.format.replace("\\n", "\n").replace("\\t", "\t"),
                       {"Client": client, "Server": srv})
        print(out)
        if err is not None:
            sys.stderr.write(f"{err}\n")
        return 0 if srv is not None else 1
    sys.stdout.write(_version_text(client, srv))
    if srv is None:
        sys.stderr.write(f"{err}\n")
        return 1
    return 0


def _arch(m):
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def cmd_info(cli, args, name="info"):
    cmd = Command(cli, name, "[OPTIONS]", [F("f,format", "str", "")], args, max_args=0)
    info = cli.client.get("/info")
    if cmd.opts.format:
        f = cmd.opts.format
        if f == "json":
            f = "{{json .}}"
        print(T.render(f.replace("\\n", "\n").replace("\\t", "\t"), info))
        return 0
    w = sys.stdout.write
    w("Client:\n Version:    " + __import__("skiff").__version__ + "\n Context:    default\n"
      " Debug Mode: false\n\nServer:\n")
    w(f" Containers: {info.get('Containers', 0)}\n  Running: {info.get('ContainersRunning', 0)}\n"
      f"  Paused: {info.get('ContainersPaused', 0)}\n  Stopped: {info.get('ContainersStopped', 0)}\n")
    w(f" Images: {info.get('Images', 0)}\n")
    w(f" Server Version: {info.get('ServerVersion', '')}\n")
    w(f" Storage Driver: {info.get('Driver', '')}\n")
    for k, v in info.get("DriverStatus") or []:
        w(f"  {k}: {v}\n")
    w(f" Logging Driver: {info.get('LoggingDriver', '')}\n")
    w(f" Cgroup Driver: {info.get('CgroupDriver', '')}\n")
    w(f" Cgroup Version: {info.get('CgroupVersion', '')}\n")
    plugins = info.get("Plugins") or {}
    if plugins:
        w(" Plugins:\n")
        for k in ("Volume", "Network", "Authorization", "Log"):
            if plugins.get(k):
                w(f"  {k}: {' '.join(plugins[k])}\n")
    w(f" Swarm: {(info.get('Swarm') or {}).get('LocalNodeState') or 'inactive'}\n")
    runtimes = info.get("Runtimes") or {}
    w(f" Runtimes: {' '.join(runtimes)}\n")
    w(f" Default Runtime: {info.get('DefaultRuntime', '')}\n")
    w(f" Init Binary: {info.get('InitBinary', '')}\n")
    for label, key in (("containerd version", "ContainerdCommit"), ("runc version", "RuncCommit"),
                       ("init version", "InitCommit")):
        w(f" {label}: {(info.get(key) or {}).get('ID', '')}\n")
    so = info.get("SecurityOptions") or []
    if so:
        w(" Security Options:\n")
        for s_ in so:
            kv = dict(p.partition("=")[::2] for p in s_.split(","))
            w(f"  {kv.get('name', '')}\n")
            for k, v in kv.items():
                if k != "name":
                    w(f"   {k.capitalize()}: {v}\n")
    w(f" Kernel Version: {info.get('KernelVersion', '')}\n")
    w(f" Operating System: {info.get('OperatingSystem', '')}\n")
    w(f" OSType: {info.get('OSType', '')}\n")
    w(f" Architecture: {info.get('Architecture', '')}\n")
    w(f" CPUs: {info.get('NCPU', 0)}\n")
    w(f" Total Memory: {fmt.bytes_size(info.get('MemTotal', 0))}\n")
    w(f" Name: {info.get('Name', '')}\n")
    w(f" ID: {info.get('ID', '')}\n")
    w(f" Docker Root Dir: {info.get('DockerRootDir', '')}\n")
    w(f" Debug Mode: {str(bool(info.get('Debug'))).lower()}\n")
    w(f" Experimental: {str(bool(info.get('ExperimentalBuild'))).lower()}\n")
    rc = info.get("RegistryConfig") or {}
    insecure = [k for k, v in (rc.get("IndexConfigs") or {}).items() if not v.get("Secure", True)]
    insecure += rc.get("InsecureRegistryCIDRs") or []
    if insecure:
        w(" Insecure Registries:\n")
        for r in insecure:
            w(f"  {r}\n")
    if rc.get("Mirrors"):
        w(" Registry Mirrors:\n")
        for m in rc["Mirrors"]:
            w(f"  {m}\n")
    w(f" Live Restore Enabled: {str(bool(info.get('LiveRestoreEnabled'))).lower()}\n\n")
    for warn in info.get("Warnings") or []:
        sys.stderr.write(warn + "\n")
    return 0


# -- inspect ---------------------------------------------------------------------------------
_KIND_PATHS = {
    "container": ("/containers/{}/json", "No such container"),
    "image": ("/images/{}/json", "No such image"),
    "network": ("/networks/{}", "No such network"),
    "volume": ("/volumes/{}", "No such volume"),
}


def _fetch(cli, ref, kinds, size=False):
    """→ (object or None, the last 404 APIError)."""
    last = None
    for k in kinds:
        path, _ = _KIND_PATHS[k]
        params = {"size": 1} if size and k == "container" else None
        try:
            return cli.client.get(path.format(q(ref) if k != "image" else ref), params), None
        except APIError as e:
            if e.status != 404:
                raise
            last = e
    return None, last


def inspect_objects(cli, refs, format_, kinds, size=False):
    objs = []
    missing = []
    for r in refs:
        o, err = _fetch(cli, r, kinds, size)
        if o is None:
            missing.append((r, err))
        else:
            objs.append(o)
    rc = 0
    if format_:
        f = format_
        if f == "json":
            f = "{{json .}}"
        try:
            tmpl = T.Template(f.replace("\\n", "\n").replace("\\t", "\t"))
        except T.TemplateError as e:
            sys.stderr.write(f"template parsing error: {e}\n")
            return 1
        for o in objs:
            try:
                sys.stdout.write(tmpl.render(o) + "\n")
            except T.TemplateError as e:
                sys.stderr.write(f"template: {e}\n")
                return 1
    else:
        sys.stdout.write(json.dumps(objs, indent=4, ensure_ascii=False) + "\n"
                         if objs else "[]\n")
    for m, err in missing:
        if len(kinds) == 1 and err is not None:
            sys.stderr.write(f"{err}\n")  # the daemon's words, as docker prints them
        else:
            sys.stderr.write(f"Error: No such object: {m}\n")
        rc = 1
    return rc


def cmd_inspect(cli, args, name="inspect"):
    cmd = Command(cli, name, "[OPTIONS] NAME|ID [NAME|ID...]",
                  [F("f,format", "str", ""), F("s,size"), F("type", "str", "")], args, min_args=1)
    o = cmd.opts
    if o.type:
        if o.type not in _KIND_PATHS:
            sys.stderr.write(f'"{o.type}" is not a valid value for --type\n')
            return 1
        kinds = (o.type,)
    else:
        kinds = ("container", "image", "network", "volume")
    return inspect_objects(cli, cmd.args, o.format, kinds, o.size)


# -- events -------------------------------------------------------------------------------
def cmd_events(cli, args, name="events"):
    from skiff.cli.commands.container import filters_json
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("f,filter", "list"), F("format", "str", ""), F("since", "str", ""),
                   F("until", "str", "")], args, max_args=0)
    o = cmd.opts
    params = {}
    try:
        if o.since:
            params["since"] = fmt.get_timestamp(o.since)
        if o.until:
            params["until"] = fmt.get_timestamp(o.until)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    f = filters_json(o.filter)
    if f:
        params["filters"] = f
    r = cli.client.request("GET", "/events", params)
    tmpl = None
    if o.format:
        tmpl = T.Template("{{json .}}" if o.format == "json" else o.format)
    import time
    for ev in r.iter_json():
        if tmpl:
            sys.stdout.write(tmpl.render(ev) + "\n")
        else:
            tn = ev.get("timeNano") or int(ev.get("time", 0) * 1e9)
            secs, ns = divmod(int(tn), 10 ** 9)
            lt = time.localtime(secs)
            off = lt.tm_gmtoff
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{ns:09d}" + (
                "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}")
            actor = ev.get("Actor") or {}
            attrs = actor.get("Attributes") or {}
            a = ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs))
            sys.stdout.write(f"{ts} {ev.get('Type', '')} {ev.get('Action', '')} "
                             f"{actor.get('ID', '')}{' (' + a + ')' if a else ''}\n")
        sys.stdout.flush()
    return 0


# -- system -------------------------------------------------------------------------------
def cmd_system(cli, args, name="system"):
    if not args or args[0] in ("-h", "--help"):
        print("\nUsage:  skiff system COMMAND\n\nCommands: df, events, info, prune")
        return 0
    sub, rest = args[0], args[1:]
    if sub == "info":
        return cmd_info(cli, rest, "system info")
    if sub == "events":
        return cmd_events(cli, rest, "system events")
    if sub == "df":
        return cmd_df(cli, rest, "system df")
    if sub == "prune":
        return cmd_prune(cli, rest, "system prune")
    sys.stderr.write(f"skiff: unknown command: skiff system {sub}\n\n"
                     "Run 'skiff system --help' for more information\n")
    return 1


DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}


def cmd_df(cli, args, name="system df"):
    cmd = Command(cli, name, "[OPTIONS]", [F("format", "str", ""), F("v,verbose")], args,
                  max_args=0)
    d = cli.client.get("/system/df") or {}
    rows = []

    def pct(r, t):
        return f" ({int(r * 100 / t)}%)" if t else ""
    imgs = d.get("Images") or []
    isize = d.get("LayersSize", 0) or sum(i.get("Size", 0) for i in imgs)
    iactive = sum(1 for i in imgs if (i.get("Containers") or 0) > 0)
    irecl = sum(i.get("Size", 0) - (i.get("SharedSize", 0) if i.get("SharedSize", -1) > 0 else 0)
                for i in imgs if not (i.get("Containers") or 0) > 0)
    irecl = max(0, min(irecl, isize))
    rows.append(("Images", len(imgs), iactive, isize, irecl))
    cs = d.get("Containers") or []
    csize = sum(c.get("SizeRw", 0) or 0 for c in cs)
    cactive = sum(1 for c in cs if c.get("State") == "running")
    crecl = sum(c.get("SizeRw", 0) or 0 for c in cs if c.get("State") != "running")
    rows.append(("Containers", len(cs), cactive, csize, crecl))
    vs = d.get("Volumes") or []
    vsize = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in vs)
    vactive = sum(1 for v in vs if (v.get("UsageData") or {}).get("RefCount", 0) > 0)
    vrecl = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in vs
                if (v.get("UsageData") or {}).get("RefCount", 0) == 0)
    rows.append(("Local Volumes", len(vs), vactive, vsize, vrecl))
    bc = d.get("BuildCache") or []
    bsize = sum(b.get("Size", 0) for b in bc)
    bactive = sum(1 for b in bc if b.get("InUse"))
    brecl = sum(b.get("Size", 0) for b in bc if not b.get("InUse") and not b.get("Shared"))
    rows.append(("Build Cache", len(bc), bactive, bsize, brecl))
    items = [fmt.MapCtx({"Type": t, "TotalCount": str(n), "Active": str(a),
                         "Size": fmt.human_size(s), "Reclaimable": fmt.human_size(r) + pct(r, s)},
                        DF_HEADERS) for t, n, a, s, r in rows]
    fmt.write_formatted(cmd.opts.format, items, fmt.header_ctx(DF_HEADERS), DF_TABLE)
    return 0


def cmd_prune(cli, args, name="system prune"):
    from skiff.cli.commands.container import _confirm, filters_json
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("a,all"), F("f,force"), F("filter", "list"), F("volumes")], args, max_args=0)
    o = cmd.opts
    if not o.force:
        warn = ("WARNING! This will remove:\n  - all stopped containers\n"
                "  - all networks not used by at least one container\n")
        if o.volumes:
            warn += "  - all anonymous volumes not used by at least one container\n"
        warn += ("  - all images without at least one container associated to them\n"
                 if o.all else "  - all dangling images\n")
        warn += "  - unused build cache\n"
        if not _confirm(warn):
            return 0
    c = cli.client
    flt = filters_json(o.filter)
    total = 0
    r = c.post("/containers/prune", {"filters": flt} if flt else None) or {}
    if r.get("ContainersDeleted"):
        print("Deleted Containers:")
        for x in r["ContainersDeleted"]:
            print(x)
        print()
    total += r.get("SpaceReclaimed", 0) or 0
    r = c.post("/networks/prune", {"filters": flt} if flt else None) or {}
    if r.get("NetworksDeleted"):
        print("Deleted Networks:")
        for x in r["NetworksDeleted"]:
            print(x)
        print()
    if o.volumes:
        r = c.post("/volumes/prune", {"filters": flt} if flt else None) or {}
        if r.get("VolumesDeleted"):
            print("Deleted Volumes:")
            for x in r["VolumesDeleted"]:
                print(x)
            print()
        total += r.get("SpaceReclaimed", 0) or 0
    iflt = list(o.filter or []) + ["dangling=" + ("false" if o.all else "true")]
    r = c.post("/images/prune", {"filters": filters_json(iflt)}) or {}
    if r.get("ImagesDeleted"):
        print("Deleted Images:")
        for d in r["ImagesDeleted"]:
            for k in ("Untagged", "Deleted"):
                if d.get(k):
                    print(f"{k.lower()}: {d[k]}")
        print()
    total += r.get("SpaceReclaimed", 0) or 0
    print(f"Total reclaimed space: {fmt.human_size(total)}")
    return 0
