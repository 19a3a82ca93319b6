"""The aiohttp application: routing with every /vX.Y/ prefix, the unix
socket listener (mode 0660), TCP only with TLS."""

import importlib
import logging
import os
import socket
import ssl

from aiohttp import web
from aiohttp import http_parser, web_protocol

from skiff import errors
from skiff.api import middleware

log = logging.getLogger("skiffd.api")

# Docker clients hijack connections with "Upgrade: tcp". aiohttp's C parser
# only switches protocols for websocket; its pure-Python parser also accepts
# tcp (and reads the request body before switching), so the server uses it.
web_protocol.HttpRequestParser = http_parser.HttpRequestParserPy

ROUTE_MODULES = ("system", "containers", "exec", "images", "networks", "volumes", "build",
                 "archive", "auth", "distribution")


def add_route(app, method: str, path: str, handler):
    """Register ``path`` and ``/v{version}`` + ``path``."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, "/v{_api_version:[0-9]+\\.[0-9]+}" + path, handler)


def make_app(engine) -> web.Application:
    app = web.Application(middlewares=[middleware.docker_middleware],
                          client_max_size=1 << 40, handler_args={"max_field_size": 1 << 16})
    app["engine"] = engine
    app.on_response_prepare.append(middleware.on_prepare)
    for name in ROUTE_MODULES:
        try:
            mod = importlib.import_module(f"skiff.api.routes.{name}")
        except ImportError as e:
            if f"skiff.api.routes.{name}" in str(e) or "No module named" in str(e) and name in str(e):
                continue
            log.warning("route module %s failed to import: %s", name, e)
            continue
        reg = getattr(mod, "register", None)
        if reg is not None:
            try:
                reg(app, engine)
            except Exception as e:  # one broken module must not take the daemon down
                log.warning("route module %s failed to register: %s", name, e)
    return app


def parse_host(h: str):
    if h.startswith("unix://"):
        return "unix", h[len("unix://"):]
    if h.startswith("tcp://"):
        hp = h[len("tcp://"):]
        host, _, port = hp.rpartition(":")
        return "tcp", (host or "127.0.0.1", int(port or 2376))
    if h.startswith("fd://"):
        raise errors.InvalidArgument("fd:// hosts are not supported")
    if h.startswith("/"):
        return "unix", h
    raise errors.InvalidArgument(f"invalid host: {h}")


def check_hosts(hosts, config):
    """Refuse bad listen addresses before the daemon touches anything."""
    for h in hosts:
        kind, addr = parse_host(h)
        if kind == "tcp" and not (config.tls and config.tlscert and config.tlskey):
            raise errors.InvalidArgument(
                f"refusing to listen on {h} without TLS: set tls, tlscert and tlskey")


async def start_sites(runner, hosts, config):
    sites = []
    for h in hosts:
        kind, addr = parse_host(h)
        if kind == "unix":
            os.makedirs(os.path.dirname(addr) or ".", exist_ok=True)
            if os.path.exists(addr):
                # refuse to steal a live daemon's socket
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(addr)
                except OSError:
                    os.unlink(addr)
                else:
                    s.close()
                    raise errors.Conflict(f"another daemon is listening on {addr}")
                finally:
                    s.close()
            site = web.UnixSite(runner, addr)
            await site.start()
            os.chmod(addr, 0o660)
            try:
                import grp
                gid = grp.getgrnam("docker").gr_gid
                os.chown(addr, 0, gid)
            except (KeyError, OSError):
                pass
        else:
            if not (config.tls and config.tlscert and config.tlskey):
                raise errors.InvalidArgument(
                    f"refusing to listen on {h} without TLS: set tls, tlscert and tlskey")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(config.tlscert, config.tlskey)
            if config.tlsverify and config.tlscacert:
                ctx.load_verify_locations(config.tlscacert)
                ctx.verify_mode = ssl.CERT_REQUIRED
            site = web.TCPSite(runner, addr[0], addr[1], ssl_context=ctx)
            await site.start()
        sites.append(site)
    return sites
