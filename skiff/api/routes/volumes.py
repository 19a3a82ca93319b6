"""/volumes/*: the local volume driver (skiff.engine.volumes.VolumeStore)."""

import asyncio

from aiohttp import web

from skiff import errors
from skiff.api.routes import filters, json_body, json_response, qbool
from skiff.api.server import add_route


def volume_users(engine, name: str) -> list[str]:
    """Containers (not being removed) whose mounts name volume ``name``."""
    out = []
    for c in list(getattr(engine, "containers", {}).values()):
        if getattr(c, "removing", False):
            continue
        for m in (c.rec.get("Mounts") or []) if hasattr(c, "rec") else []:
            if m.get("Type") == "volume" and m.get("Name") == name:
                out.append(c.id)
                break
    return out


def _go_type(v) -> str:
    """encoding/json's name for a JSON value's type."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {list: "array", dict: "object", str: "string"}.get(type(v), "value")


def _store(engine):
    vs = getattr(engine, "volumes", None)
    if vs is None:
        raise errors.NotImplementedYet("volumes are not available")
    return vs


def _emit(engine, action, name, attrs=None):
    ev = getattr(engine, "events", None)
    if ev is not None:
        try:
            ev.emit("volume", action, name, dict(attrs or {}, driver="local"))
        except Exception:
            pass


def register(app, engine):
    vs = getattr(engine, "volumes", None)
    if vs is not None and getattr(vs, "in_use", None) is None:
        vs.in_use = lambda name: volume_users(engine, name)

    async def list_(request):
        return json_response(await asyncio.to_thread(_store(engine).list_json, filters(request)))

    async def create(request):
        body = await json_body(request, {}) or {}
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid JSON: expected an object")
        for key in ("DriverOpts", "Labels"):
            v = body.get(key)
            if v is None:
                continue
            bad, want = (v, "map[string]string") if not isinstance(v, dict) else \
                (next((x for x in v.values() if not isinstance(x, str)), None), "string")
            if bad is not None:
                raise errors.InvalidArgument(
                    f"json: cannot unmarshal {_go_type(bad)} into Go struct field "
                    f"CreateOptions.{key} of type {want}")
        vol = await asyncio.to_thread(
            _store(engine).create, body.get("Name") or None, body.get("Driver") or "local",
            body.get("Labels") or {}, body.get("DriverOpts") or {})
        _emit(engine, "create", vol["Name"])
        return json_response(vol, status=201)

    async def inspect(request):
        return json_response(await asyncio.to_thread(_store(engine).inspect,
                                                     request.match_info["name"]))

    async def remove(request):
        name = request.match_info["name"]
        await asyncio.to_thread(_store(engine).remove, name, qbool(request, "force"))
        _emit(engine, "destroy", name)
        return web.Response(status=204)

    async def prune(request):
        out = await asyncio.to_thread(_store(engine).prune, filters(request))
        for n in out["VolumesDeleted"]:
            _emit(engine, "destroy", n)
        _emit(engine, "prune", "", {"reclaimed": str(out["SpaceReclaimed"])})
        return json_response(out)

    add_route(app, "GET", "/volumes", list_)
    add_route(app, "POST", "/volumes/create", create)
    add_route(app, "POST", "/volumes/prune", prune)
    add_route(app, "GET", "/volumes/{name}", inspect)
    add_route(app, "DELETE", "/volumes/{name}", remove)
