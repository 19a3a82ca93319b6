"""/networks/*: through skiff.network.NetworkManager (H4)."""

import asyncio

from aiohttp import web

from skiff import errors
from skiff.api.routes import filters, json_body, json_response, qbool
from skiff.api.server import add_route


def _mgr(engine):
    nm = getattr(engine, "network", None)
    if nm is None:
        raise errors.NotImplementedYet("networking is not available")
    return nm


def _emit(engine, action, nid, attrs):
    ev = getattr(engine, "events", None)
    if ev is not None:
        try:
            ev.emit("network", action, nid, attrs)
        except Exception:
            pass


def register(app, engine):
    async def list_(request):
        return json_response(await asyncio.to_thread(_mgr(engine).list_json, filters(request)))

    async def inspect(request):
        verbose = qbool(request, "verbose")
        return json_response(await asyncio.to_thread(
            _mgr(engine).inspect_json, request.match_info["id"], verbose))

    async def create(request):
        body = await json_body(request, {}) or {}
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid JSON: expected an object")
        name = body.get("Name") or ""
        ipam = body.get("IPAM") or {}
        cfgs = ipam.get("Config") or []
        if len(cfgs) > 1:
            raise errors.InvalidArgument("skiff supports one IPAM config per network")
        c0 = cfgs[0] if cfgs else {}
        if body.get("Ingress"):
            raise errors.PermissionDenied("ingress networks need swarm mode")
        if body.get("Scope") not in (None, "", "local"):
            raise errors.InvalidArgument(f"unsupported scope {body['Scope']}")
        out = await asyncio.to_thread(
            _mgr(engine).create, name, driver=body.get("Driver") or "bridge",
            subnet=c0.get("Subnet") or None, gateway=c0.get("Gateway") or None,
            ip_range=c0.get("IPRange") or None, internal=bool(body.get("Internal")),
            labels=body.get("Labels") or {}, options=body.get("Options") or {},
            attachable=bool(body.get("Attachable")),
            enable_ipv6=bool(body.get("EnableIPv6")), ipam_driver=ipam.get("Driver"),
            ipam_options=ipam.get("Options"))
        _emit(engine, "create", out["Id"], {"name": name, "type": body.get("Driver") or "bridge"})
        return json_response(out, status=201)

    async def remove(request):
        nm = _mgr(engine)
        ref = request.match_info["id"]
        n = await asyncio.to_thread(nm.get, ref)
        nid = await asyncio.to_thread(nm.remove, ref)
        _emit(engine, "destroy", nid, {"name": n.get("name", ref), "type": n.get("driver", "")})
        return web.Response(status=204)

    async def prune(request):
        out = await asyncio.to_thread(_mgr(engine).prune, filters(request))
        _emit(engine, "prune", "", {})
        return json_response(out)

    async def connect(request):
        nm = _mgr(engine)
        body = await json_body(request, {}) or {}
        c = engine.get(body.get("Container") or "")
        n = await asyncio.to_thread(nm.get, request.match_info["id"])
        ep = body.get("EndpointConfig") or {}
        ip = (ep.get("IPAMConfig") or {}).get("IPv4Address") or None
        aliases = list(ep.get("Aliases") or [])
        mode = c.host_config.get("NetworkMode", "bridge")
        if mode == "host" or n.get("driver") == "host":
            raise errors.PermissionDenied("container cannot be disconnected from host network "
                                          "or connected to host network")
        if mode == "none" or mode.startswith("container:"):
            raise errors.PermissionDenied(
                "container cannot be connected to multiple networks with one of the networks "
                "in private (none) mode")
        requested = c.private.setdefault("RequestedNetworks", {}) or {}
        if not requested:
            requested[mode] = {}
        c.private["RequestedNetworks"] = requested
        if n["name"] in requested and c.running is False:
            raise errors.PermissionDenied(f"endpoint with name {c.name} already exists in "
                                          f"network {n['name']}")
        if c.running:
            default_only = set(requested) <= {"bridge"}
            settings = await asyncio.to_thread(nm.connect, c.id, n["name"], ip, aliases)
            nets = c.rec.setdefault("NetworkSettings", {}).setdefault("Networks", {}) or {}
            c.rec["NetworkSettings"]["Networks"] = nets
            nets[n["name"]] = settings
            if default_only and n["name"] != "bridge":
                # its first user network: DNS now goes through 127.0.0.11
                await asyncio.to_thread(engine.rewrite_resolv_conf, c)
        else:
            c.rec.setdefault("NetworkSettings", {}).setdefault("Networks", {})
            c.rec["NetworkSettings"]["Networks"] = c.rec["NetworkSettings"]["Networks"] or {}
            c.rec["NetworkSettings"]["Networks"][n["name"]] = _empty_endpoint(n, aliases, ip)
        requested[n["name"]] = {"IPAMConfig": {"IPv4Address": ip} if ip else None,
                                "Aliases": aliases or None}
        engine.save(c)
        _emit(engine, "connect", n["id"], {"container": c.id, "name": n["name"],
                                           "type": n.get("driver", "")})
        return web.Response(status=200)

    async def disconnect(request):
        nm = _mgr(engine)
        body = await json_body(request, {}) or {}
        n = await asyncio.to_thread(nm.get, request.match_info["id"])
        try:
            c = engine.get(body.get("Container") or "")
        except errors.NotFound:
            if body.get("Force"):
                return web.Response(status=200)
            raise
        requested = c.private.get("RequestedNetworks") or {}
        if c.running:
            await asyncio.to_thread(nm.disconnect, c.id, n["name"], bool(body.get("Force")))
        elif n["name"] not in requested and \
                n["name"] not in ((c.rec.get("NetworkSettings") or {}).get("Networks") or {}):
            raise errors.PermissionDenied(
                f"container {c.id[:12]} is not connected to network {n['name']}")
        requested.pop(n["name"], None)
        if not requested:
            requested = {}
        c.private["RequestedNetworks"] = requested
        nets = (c.rec.get("NetworkSettings") or {}).get("Networks") or {}
        nets.pop(n["name"], None)
        engine.save(c)
        _emit(engine, "disconnect", n["id"], {"container": c.id, "name": n["name"],
                                              "type": n.get("driver", "")})
        return web.Response(status=200)

    add_route(app, "GET", "/networks", list_)
    add_route(app, "POST", "/networks/create", create)
    add_route(app, "POST", "/networks/prune", prune)
    add_route(app, "GET", "/networks/{id}", inspect)
    add_route(app, "DELETE", "/networks/{id}", remove)
    add_route(app, "POST", "/networks/{id}/connect", connect)
    add_route(app, "POST", "/networks/{id}/disconnect", disconnect)


def _empty_endpoint(n, aliases, ip):
    return {"IPAMConfig": {"IPv4Address": ip} if ip else None, "Links": None,
            "Aliases": aliases or None, "MacAddress": "", "DriverOpts": None,
            "NetworkID": n["id"], "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
