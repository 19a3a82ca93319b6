"""POST /auth: check credentials against a registry (docker login)."""

import asyncio

from skiff import errors
from skiff.api.routes import json_body, json_response
from skiff.api.server import add_route


def register(app, engine):
    async def auth(request):
        body = await json_body(request, {}) or {}
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid JSON: expected an object")
        from skiff import registry
        from skiff.api.routes.images import registry_config

        server = body.get("serveraddress") or body.get("ServerAddress") or ""
        out = await asyncio.to_thread(registry.check_login, server, body,
                                      registry_config(engine))
        return json_response(out)

    add_route(app, "POST", "/auth", auth)
