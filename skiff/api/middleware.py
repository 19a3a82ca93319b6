"""Middlewares: API version prefix checks, Docker's headers on every
answer, skiff.errors → {"message"} with Docker's status codes."""

import json
import logging
import re

from aiohttp import web

from skiff import errors, __version__ as _skiff_version

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
VERSION = _skiff_version

log = logging.getLogger("skiffd.api")
_VER = re.compile(r"^/v(\d+)\.(\d+)/")


def _v(s):
    a, b = s.split(".")
    return int(a), int(b)


def request_version(request) -> str:
    m = _VER.match(request.path)
    return f"{m.group(1)}.{m.group(2)}" if m else API_VERSION


def version_at_least(request, v: str) -> bool:
    return _v(request_version(request)) >= _v(v)


def common_headers(resp):
    resp.headers["Api-Version"] = API_VERSION
    resp.headers["Ostype"] = "linux"
    resp.headers["Server"] = f"Docker/{VERSION} (linux)"
    resp.headers.setdefault("Docker-Experimental", "false")


def error_response(status: int, message: str):
    if status == 304:
        resp = web.Response(status=304)
    else:
        resp = web.Response(status=status, body=(json.dumps({"message": message}) + "\n").encode(),
                            headers={"Content-Type": "application/json"})
    common_headers(resp)
    return resp


@web.middleware
async def docker_middleware(request, handler):
    m = _VER.match(request.path)
    if m:
        v = (int(m.group(1)), int(m.group(2)))
        if v < _v(MIN_API_VERSION):
            return error_response(400, f"client version {m.group(1)}.{m.group(2)} is too old. "
                                       f"Minimum supported API version is {MIN_API_VERSION}, "
                                       "please upgrade your client to a newer version")
        if v > _v(API_VERSION):
            return error_response(400, f"client version {m.group(1)}.{m.group(2)} is too new. "
                                       f"Maximum supported API version is {API_VERSION}")
    try:
        resp = await handler(request)
    except errors.SkiffError as e:
        if e.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, e.message)
        return error_response(e.status, e.message)
    except web.HTTPNotFound:
        return error_response(404, "page not found")
    except web.HTTPMethodNotAllowed:
        return error_response(405, "method not allowed")
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(e.status, e.text or e.reason)
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return error_response(400, f"invalid JSON: {e}")
    except ConnectionError:
        raise
    if not resp.prepared:
        common_headers(resp)
    return resp


async def on_prepare(request, resp):
    common_headers(resp)
