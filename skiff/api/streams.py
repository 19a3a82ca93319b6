"""Stream helpers: stdcopy framing, hijacked (101 UPGRADED) connections,
newline-delimited JSON streams."""

import asyncio
import json
import struct

from aiohttp import web

RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def wants_upgrade(request) -> bool:
    return "upgrade" in request.headers.get("Connection", "").lower() and \
        request.headers.get("Upgrade", "").lower() in ("tcp", "h2c")


class _Reader:
    """Receives the client's bytes after the upgrade (aiohttp payload parser API)."""

    def __init__(self, queue: asyncio.Queue):
        self.q = queue
        self.eof = False

    def feed_data(self, data):
        if data:
            self.q.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self):
        if not self.eof:
            self.eof = True
            self.q.put_nowait(b"")


class _HalfCloseProxy:
    """Sits between the transport and aiohttp's protocol after the upgrade:
    a client's half-close (EOF) ends its input but keeps our output open."""

    def __init__(self, proto, reader, closed):
        self._p, self._r, self._c = proto, reader, closed

    def __getattr__(self, name):
        return getattr(self._p, name)

    def data_received(self, data):
        self._p.data_received(data)

    def eof_received(self):
        self._r.feed_eof()
        return True

    def connection_lost(self, exc):
        self._r.feed_eof()
        if not self._c.done():
            self._c.set_result(None)
        self._p.connection_lost(exc)

    def pause_writing(self):
        self._p.pause_writing()

    def resume_writing(self):
        self._p.resume_writing()


class Hijacked:
    """A hijacked connection: ``send(stream, data)`` (framed unless raw),
    ``read()`` → bytes or b"" at EOF (half-close), ``closed()``."""

    def __init__(self, request, raw: bool):
        self.request = request
        self.raw = raw
        self.resp = None
        self.q = asyncio.Queue()
        self._closed = asyncio.get_running_loop().create_future()
        self.upgraded = False

    async def start(self):
        req = self.request
        ctype = RAW if self.raw else MUX
        if wants_upgrade(req):
            self.upgraded = True
            resp = web.StreamResponse(status=101, reason="UPGRADED",
                                      headers={"Content-Type": ctype, "Connection": "Upgrade",
                                               "Upgrade": "tcp"})
            proto = req.protocol
            reader = _Reader(self.q)
            req.transport.set_protocol(_HalfCloseProxy(proto, reader, self._closed))
            await resp.prepare(req)
            proto.set_parser(reader)
        else:
            resp = web.StreamResponse(status=200, headers={"Content-Type": ctype})
            resp.enable_chunked_encoding()
            await resp.prepare(req)
            self.q.put_nowait(b"")
        self.resp = resp
        return self

    async def send(self, stream: int, data: bytes):
        if not data:
            return
        if self.request.transport is None or self.request.transport.is_closing():
            raise ConnectionResetError("client went away")
        await self.resp.write(data if self.raw else frame(stream, data))

    async def read(self) -> bytes:
        return await self.q.get()

    async def closed(self):
        if not self.upgraded:
            await asyncio.Event().wait()
        await asyncio.shield(self._closed)

    async def finish(self):
        try:
            if self.upgraded:
                t = self.request.transport
                if t is not None and not t.is_closing():
                    if t.can_write_eof():
                        t.write_eof()
                    t.close()
            else:
                await self.resp.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass
        return self.resp


async def json_stream(request, headers=None) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", **(headers or {})})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def write_json(resp, obj):
    await resp.write((json.dumps(obj) + "\n").encode())
