"""/_ping, /version, /info, /events, /system/df."""

import asyncio
import os
import platform
import socket
import time

from aiohttp import web

from skiff import errors
from skiff.api import middleware
from skiff.api.routes import filters, json_response
from skiff.api.server import add_route
from skiff.api.streams import json_stream, write_json
from skiff.engine import events as _events
from skiff.engine.logs import format_ts


def _ping_headers(resp):
    resp.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    resp.headers["Pragma"] = "no-cache"
    resp.headers["Builder-Version"] = "1"
    resp.headers["Swarm"] = "inactive"
    resp.headers["Docker-Experimental"] = "false"


def register(app, engine):
    async def ping(request):
        if request.method == "HEAD":
            resp = web.Response(status=200, headers={"Content-Type": "text/plain; charset=utf-8",
                                                     "Content-Length": "0"})
        else:
            resp = web.Response(status=200, text="OK", content_type="text/plain", charset="utf-8")
        _ping_headers(resp)
        return resp

    def version_obj(build=None, comps_extra=()):
        u = os.uname()
        commit, built = build or ("", "")
        details = {"ApiVersion": middleware.API_VERSION, "Arch": _arch(), "BuildTime": built,
                   "Experimental": "false", "GitCommit": commit, "GoVersion": "python" + platform.python_version(),
                   "KernelVersion": u.release, "MinAPIVersion": middleware.MIN_API_VERSION, "Os": "linux"}
        comps = [{"Name": "Engine", "Version": middleware.VERSION, "Details": details}] + list(comps_extra)
        return {"Platform": {"Name": "skiff"}, "Components": comps, "Version": middleware.VERSION,
                "ApiVersion": middleware.API_VERSION, "MinAPIVersion": middleware.MIN_API_VERSION,
                "GitCommit": commit, "GoVersion": details["GoVersion"], "Os": "linux", "Arch": _arch(),
                "KernelVersion": u.release, "BuildTime": built}

    async def version(request):
        # skiff's own parts where dockerd lists containerd, runc and docker-init:
        # the monitor, the default runtime and the init, with the versions they report
        from skiff import versions
        build = await versions.build_info()
        comps = await versions.components(engine.config)
        return json_response(version_obj(build, comps))

    async def info(request):
        cs = list(engine.containers.values())
        running = sum(1 for c in cs if c.running and not c.paused)
        paused = sum(1 for c in cs if c.paused)
        n_images = 0
        if engine.images is not None:
            try:
                n_images = len(engine.images.list_json({}))
            except Exception:
                n_images = 0
        u = os.uname()
        cgv = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
        cfg = engine.config
        return json_response({
            "ID": engine.db.get_meta("engine-id") or "", "Containers": len(cs),
            "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(cs) - running - paused, "Images": n_images,
            "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"],
                                                   ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                        "Authorization": None, "Log": ["json-file", "k8s-file"]},
            "MemoryLimit": True, "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or cgv == "2",
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True,
            "PidsLimit": True, "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
            "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": cfg.debug,
            "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": cgv == "1",
            "NGoroutines": len(asyncio.all_tasks()), "SystemTime": format_ts(time.time_ns()),
            "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgv,
            "NEventsListener": len(engine.events.subscribers), "KernelVersion": u.release,
            "OperatingSystem": _os_name(), "OSVersion": _os_version(), "OSType": "linux",
            "Architecture": u.machine, "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                               "AllowNondistributableArtifactsHostnames": None,
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                               "IndexConfigs": {}, "Mirrors": list(cfg.registry_mirrors)},
            "NCPU": os.cpu_count() or 1, "MemTotal": _memtotal(),
            "GenericResources": None, "DockerRootDir": cfg.data_root,
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": socket.gethostname(),
            "Labels": list(cfg.labels), "ExperimentalBuild": False,
            "ServerVersion": middleware.VERSION,
            "Runtimes": {k: {"path": v["path"]} for k, v in cfg.runtimes.items()},
            "DefaultRuntime": cfg.default_runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                      "ControlAvailable": False, "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "DefaultRegistry": cfg.default_registry,
            "Warnings": [] if cfg.default_registry == "docker.io" else
            [f"short image names resolve to {cfg.default_registry}"],
        })

    async def events_h(request):
        f = filters(request)
        since = request.query.get("since")
        until = request.query.get("until")
        since_ns = _ts_arg(since)
        until_ns = _ts_arg(until)
        q = engine.events.subscribe()
        try:
            resp = await json_stream(request)
            if since_ns is not None:
                for ev in list(engine.events.history):
                    if ev["timeNano"] >= since_ns and (until_ns is None or ev["timeNano"] <= until_ns) \
                            and _events.match(ev, f):
                        await write_json(resp, ev)
            if until_ns is not None and until_ns <= time.time_ns():
                return resp
            while True:
                timeout = None
                if until_ns is not None:
                    timeout = max(0.0, (until_ns - time.time_ns()) / 1e9)
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except asyncio.TimeoutError:
                    return resp
                if until_ns is not None and ev["timeNano"] > until_ns:
                    return resp
                if _events.match(ev, f):
                    await write_json(resp, ev)
        except (ConnectionError, RuntimeError):
            return web.Response()
        finally:
            engine.events.unsubscribe(q)

    async def df(request):
        images, layers = [], 0
        containers = engine.list(all_=True, size=True)
        in_use: dict[str, int] = {}
        for c in containers:
            if c.get("ImageID"):
                in_use[c["ImageID"]] = in_use.get(c["ImageID"], 0) + 1
        if engine.images is not None and hasattr(engine.images, "df"):
            try:
                d = await asyncio.to_thread(engine.images.df, in_use)
                images = d.get("Images", []) if isinstance(d, dict) else d
                layers = d.get("LayersSize", 0) if isinstance(d, dict) else 0
            except Exception:
                pass
        vols = []
        if engine.volumes is not None and hasattr(engine.volumes, "df"):
            try:
                vols = await asyncio.to_thread(engine.volumes.df)
            except Exception:
                vols = []
        return json_response({"LayersSize": layers, "Images": images,
                              "Containers": containers,
                              "Volumes": vols, "BuildCache": []})

    for m in ("GET", "HEAD"):
        add_route(app, m, "/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", info)
    add_route(app, "GET", "/events", events_h)
    add_route(app, "GET", "/system/df", df)


def _ts_arg(v):
    if not v:
        return None
    try:
        if "." in v:
            s, n = v.split(".", 1)
            return int(s) * 1_000_000_000 + int((n + "000000000")[:9])
        return int(v) * 1_000_000_000
    except ValueError:
        from skiff.engine.logs import parse_ts
        try:
            return parse_ts(v)
        except Exception:
            raise errors.InvalidArgument(f"invalid timestamp: {v}")


def _read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return ""


def _memtotal():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _osrel():
    out = {}
    for line in _read("/etc/os-release").splitlines():
        k, _, v = line.partition("=")
        out[k] = v.strip('"')
    return out


def _os_name():
    return _osrel().get("PRETTY_NAME", "Linux")


def _os_version():
    return _osrel().get("VERSION_ID", "")


def _arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)
