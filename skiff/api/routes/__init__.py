"""Route modules: each has ``register(app, engine)`` and only translates HTTP ⇄ engine calls.

Helpers shared by the route modules live here."""

import json

from skiff import errors


def qbool(request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    return v.lower() not in ("", "0", "false", "no")


def qint(request, name: str, default=None):
    v = request.query.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise errors.InvalidArgument(f"invalid value for {name}: {v}")


def filters(request) -> dict:
    """Docker's filters JSON: {"key": ["v"]} or the legacy {"key": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        obj = json.loads(raw)
    except ValueError:
        raise errors.InvalidArgument(f"invalid filter: {raw}")
    out = {}
    for k, v in (obj or {}).items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            out[k] = [str(v)]
    return out


async def json_body(request, default=None):
    raw = await request.read()
    if not raw or not raw.strip():
        return default
    try:
        return json.loads(raw)
    except ValueError as e:
        raise errors.InvalidArgument(f"invalid JSON: {e}")


def json_response(obj, status=200):
    from aiohttp import web
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        headers={"Content-Type": "application/json"})
