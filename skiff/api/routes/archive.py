"""/containers/{id}/archive (docker cp): HEAD (stat), GET (tar out), PUT
(tar in). Paths resolve inside the container (skiff.engine.archive)."""

import asyncio
import contextlib
import os
import tempfile

from aiohttp import web

from skiff import errors
from skiff.api.routes import qbool
from skiff.api.server import add_route
from skiff.engine import archive

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _mount_pairs(c):
    out = []
    for m in c.rec.get("Mounts") or []:
        if m.get("Type") in ("bind", "volume") and m.get("Source"):
            out.append((m["Destination"], m["Source"]))
    return out


@contextlib.asynccontextmanager
async def container_fs(engine, c):
    """A ContainerFS for ``c``: a running container through
    /proc/<pid>/root (sees its mounts); a stopped one through its rootfs,
    mounted for the duration under the container's lock."""
    cdir = engine.container_dir(c.id)
    target = os.path.join(cdir, "rootfs")
    pid = c.state.get("Pid") if c.running else None
    if pid:
        yield archive.ContainerFS(target, pid=int(pid))
        return
    async with c.lock:
        if c.running and c.state.get("Pid"):
            yield archive.ContainerFS(target, pid=int(c.state["Pid"]))
            return
        mounted_here = False
        if not os.path.ismount(target):
            await asyncio.to_thread(engine.rootfs.mount, c.id, target)
            mounted_here = True
        try:
            yield archive.ContainerFS(target, mounts=_mount_pairs(c))
        finally:
            if mounted_here:
                await asyncio.to_thread(engine.rootfs.unmount, c.id, target)


def _path(request) -> str:
    p = request.query.get("path")
    if p is None or p == "":
        raise errors.InvalidArgument("path parameter is required")
    return p


def _under_volume(c, path: str) -> bool:
    path = os.path.normpath("/" + path.lstrip("/"))
    for dest, _ in _mount_pairs(c):
        if path == dest or path.startswith(dest.rstrip("/") + "/"):
            return True
    return False


def register(app, engine):
    async def head(request):
        c = engine.get(request.match_info["id"])
        path = _path(request)
        async with container_fs(engine, c) as fs:
            st = await asyncio.to_thread(archive.stat_path, fs, path, c.id)
        resp = web.Response(status=200, headers={STAT_HEADER: archive.encode_stat(st),
                                                  "Content-Type": "application/json"})
        return resp

    async def get(request):
        c = engine.get(request.match_info["id"])
        path = _path(request)
        async with container_fs(engine, c) as fs:
            st, gen = await asyncio.to_thread(archive.iter_archive, fs, path, c.id)
            resp = web.StreamResponse(status=200, headers={
                STAT_HEADER: archive.encode_stat(st), "Content-Type": "application/x-tar"})
            await resp.prepare(request)
            it = iter(gen)
            try:
                while True:
                    chunk = await asyncio.to_thread(next, it, None)
                    if chunk is None:
                        break
                    if chunk:
                        await resp.write(chunk)
            finally:
                await asyncio.to_thread(gen.close)
            await resp.write_eof()
        _emit(engine, c, "archive-path", path)
        return resp

    async def put(request):
        c = engine.get(request.match_info["id"])
        path = _path(request)
        if c.host_config.get("ReadonlyRootfs") and not _under_volume(c, path):
            raise errors.PermissionDenied("container rootfs is marked read-only")
        no_overwrite = qbool(request, "noOverwriteDirNonDir")
        copy_ids = qbool(request, "copyUIDGID")
        spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
        try:
            async for chunk in request.content.iter_chunked(1 << 20):
                spool.write(chunk)
            spool.seek(0)
            async with container_fs(engine, c) as fs:
                await asyncio.to_thread(archive.extract_archive, fs, path, spool, c.id,
                                        no_overwrite, copy_ids)
        finally:
            spool.close()
        _emit(engine, c, "extract-to-dir", path)
        return web.Response(status=200)

    add_route(app, "HEAD", "/containers/{id}/archive", head)
    add_route(app, "GET", "/containers/{id}/archive", get)
    add_route(app, "PUT", "/containers/{id}/archive", put)


def _emit(engine, c, action, path):
    try:
        engine.emit(c, action, path=path)
    except Exception:
        pass
