"""Exec routes: create, start (hijacked or detached), resize, inspect."""

from aiohttp import web

from skiff import errors
from skiff.api.routes import json_body, json_response, qint
from skiff.api.server import add_route
from skiff.api.streams import Hijacked
from skiff.engine import exec as _exec


_FIELDS = {k.lower(): k for k in (
    "User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout",
    "Detach", "DetachKeys", "Env", "WorkingDir", "Cmd")}


def register(app, engine):
    async def create(request):
        body = await json_body(request, {}) or {}
        # Go's JSON decoding matches field names case-insensitively (docker-py
        # sends "detachKeys")
        body = {_FIELDS.get(k.lower(), k): v for k, v in body.items()}
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            body["Cmd"] = [cmd]
        ex = _exec.create(engine, request.match_info["id"], body)
        return json_response({"Id": ex.id}, status=201)

    async def start(request):
        ex = _exec.get(engine, request.match_info["id"])
        body = await json_body(request, {}) or {}
        detach = bool(body.get("Detach"))
        tty = body.get("Tty")
        tty = bool(ex.cfg.get("Tty")) if tty is None else bool(tty)
        if detach:
            await _exec.start(engine, ex, None, detach=True, tty=tty,
                              console_size=body.get("ConsoleSize"))
            return web.Response(status=200, content_type="application/json", text="")
        if ex.started:
            raise errors.Conflict(f"Error: Exec command {ex.id} has already run")
        if not ex.container.running:
            raise errors.Conflict(f"container {ex.container.id} is not running")
        conn = await Hijacked(request, raw=tty).start()
        try:
            await _exec.start(engine, ex, conn, detach=False, tty=tty,
                              console_size=body.get("ConsoleSize"))
        except errors.SkiffError as e:
            # dockerd writes a start error on the stdout stream, "\r\n"-ended
            try:
                await conn.send(1, (e.message + "\r\n").encode())
            except (ConnectionError, OSError):
                pass
        except (ConnectionError, OSError):
            pass
        return await conn.finish()

    async def resize(request):
        ex = _exec.get(engine, request.match_info["id"])
        _exec.resize(engine, ex, qint(request, "h", 0), qint(request, "w", 0))
        return web.Response(status=200)

    async def inspect(request):
        return json_response(_exec.get(engine, request.match_info["id"]).inspect())

    add_route(app, "POST", "/containers/{id}/exec", create)
    add_route(app, "POST", "/exec/{id}/start", start)
    add_route(app, "POST", "/exec/{id}/resize", resize)
    add_route(app, "GET", "/exec/{id}/json", inspect)
