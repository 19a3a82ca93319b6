"""Container routes: create, inspect, list, start/stop/kill/restart, pause,
wait, attach (hijacked), logs, top, stats, resize, rename, rm, prune,
export, commit, changes, update."""

import asyncio
import json
import os

from aiohttp import web

from skiff import errors
from skiff.api import middleware
from skiff.api.routes import filters, json_body, json_response, qbool, qint
from skiff.api.server import add_route
from skiff.api.streams import Hijacked, MUX, RAW, frame, json_stream, write_json
from skiff.engine import logs as _logs


def register(app, engine):
    async def list_h(request):
        return json_response(engine.list(
            all_=qbool(request, "all"), limit=qint(request, "limit", -1) or -1,
            size=qbool(request, "size"), filters=filters(request),
            latest=qbool(request, "latest")))

    async def create(request):
        body = await json_body(request, {}) or {}
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid JSON: expected an object")
        cid, warnings = await engine.create(body, request.query.get("name") or None,
                                            request.query.get("platform") or None)
        return json_response({"Id": cid, "Warnings": warnings}, status=201)

    async def inspect(request):
        c = engine.get(request.match_info["id"])
        if qbool(request, "size"):
            await asyncio.to_thread(engine.compute_size, c)
        out = c.inspect()
        if qbool(request, "size"):
            out["SizeRw"] = c.private.get("SizeRw", 0)
            out["SizeRootFs"] = c.private.get("SizeRootFs", 0)
        return json_response(out)

    async def start(request):
        await engine.start(request.match_info["id"])
        return web.Response(status=204)

    async def stop(request):
        t = qint(request, "t")
        await engine.stop(request.match_info["id"], t, request.query.get("signal") or None)
        return web.Response(status=204)

    async def restart(request):
        await engine.restart(request.match_info["id"], qint(request, "t"),
                             request.query.get("signal") or None)
        return web.Response(status=204)

    async def kill(request):
        await engine.kill(request.match_info["id"], request.query.get("signal") or "SIGKILL")
        return web.Response(status=204)

    async def pause(request):
        await engine.pause(request.match_info["id"])
        return web.Response(status=204)

    async def unpause(request):
        await engine.unpause(request.match_info["id"])
        return web.Response(status=204)

    async def wait(request):
        fut = engine.wait_future(request.match_info["id"], request.query.get("condition") or "not-running")
        resp = await json_stream(request)
        try:
            code, err = await fut
        except asyncio.CancelledError:
            raise
        body = {"StatusCode": code, "Error": {"Message": err} if err else None}
        try:
            await resp.write((json.dumps(body) + "\n").encode())
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def remove(request):
        await engine.remove(request.match_info["id"], force=qbool(request, "force"),
                            volumes=qbool(request, "v"), link=qbool(request, "link"))
        return web.Response(status=204)

    async def prune(request):
        return json_response(await engine.prune(filters(request)))

    async def rename(request):
        await engine.rename(request.match_info["id"], request.query.get("name", ""))
        return web.Response(status=204)

    async def resize(request):
        await engine.resize(request.match_info["id"], qint(request, "h", 0), qint(request, "w", 0))
        return web.Response(status=200)

    async def top(request):
        return json_response(await engine.top(request.match_info["id"],
                                              request.query.get("ps_args") or None))

    async def attach(request):
        c = engine.get(request.match_info["id"])
        if not qbool(request, "stream") and not qbool(request, "logs"):
            raise errors.InvalidArgument("at least one of stream or logs must be set")
        stdin, stdout, stderr = qbool(request, "stdin"), qbool(request, "stdout"), qbool(request, "stderr")
        if c.paused:
            raise errors.Conflict("You cannot attach to a paused container, unpause it first")
        conn = await Hijacked(request, raw=c.tty).start()
        try:
            if qbool(request, "logs"):
                async for e in _logs.stream_logs(c.rec["LogPath"], follow=False):
                    if (e.stream == "stdout" and stdout) or (e.stream == "stderr" and stderr):
                        await conn.send(1 if e.stream == "stdout" else 2, e.data)
            if qbool(request, "stream"):
                await engine.attach(c.id, conn, stdin=stdin, stdout=stdout, stderr=stderr,
                                    detach_keys=request.query.get("detachKeys") or None)
        except (ConnectionError, OSError):
            pass
        return await conn.finish()

    async def logs(request):
        c = engine.get(request.match_info["id"])
        stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
        if not (stdout or stderr):
            raise errors.InvalidArgument("You must choose at least one stream")
        follow = qbool(request, "follow")
        ts = qbool(request, "timestamps")
        tail_s = request.query.get("tail", "all")
        tail = None if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else None
        if tail is not None and tail < 0:
            tail = None
        since = _logs.parse_since(request.query.get("since"))
        until = _logs.parse_since(request.query.get("until"))
        resp = web.StreamResponse(status=200, headers={"Content-Type": RAW if c.tty else MUX})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for e in _logs.stream_logs(c.rec["LogPath"], follow=follow, since=since, until=until,
                                             tail=tail, is_running=lambda: c.running or c.state.get("Restarting")):
                if e.stream == "stdout" and not stdout or e.stream == "stderr" and not stderr:
                    continue
                data = e.data
                if ts:
                    data = _logs.format_ts(e.ns).encode() + b" " + data
                if c.tty:
                    await resp.write(data)
                else:
                    await resp.write(frame(1 if e.stream == "stdout" else 2, data))
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def stats(request):
        c = engine.get(request.match_info["id"])
        stream = qbool(request, "stream", True)
        one_shot = qbool(request, "one-shot")
        if not stream:
            s = await engine.stats_sample(c)
            if not one_shot and c.running:
                await asyncio.sleep(1)
                s2 = await engine.stats_sample(c)
                s2["preread"], s2["precpu_stats"] = s["read"], s["cpu_stats"]
                s = s2
            else:
                s["preread"], s["precpu_stats"] = "0001-01-01T00:00:00Z", _zero_cpu()
            return json_response(s)
        resp = await json_stream(request)
        prev = None
        try:
            while True:
                s = await engine.stats_sample(c)
                if prev:
                    s["preread"], s["precpu_stats"] = prev["read"], prev["cpu_stats"]
                else:
                    s["preread"], s["precpu_stats"] = "0001-01-01T00:00:00Z", _zero_cpu()
                await write_json(resp, s)
                prev = s
                if not c.running and c.id not in engine.containers:
                    break
                await asyncio.sleep(1)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def export(request):
        c = engine.get(request.match_info["id"])
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await engine_export(engine, c, request, resp)
        return resp

    async def changes(request):
        c = engine.get(request.match_info["id"])
        imgs = engine.images
        if imgs is None or not hasattr(imgs, "container_changes"):
            raise errors.NotImplementedYet("changes are not available")
        ch = await asyncio.to_thread(imgs.container_changes, c.id)
        # the engine's bind-mount targets live in Docker's init layer, never in a diff
        hidden = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv"}
        ch = [x for x in ch or [] if x.get("Path") not in hidden]
        if not any(x["Path"].startswith("/etc/") for x in ch):
            ch = [x for x in ch if not (x["Path"] == "/etc" and x.get("Kind") == 0)]
        return json_response(ch)

    async def update(request):
        c = engine.get(request.match_info["id"])
        body = await json_body(request, {}) or {}
        rp = body.get("RestartPolicy")
        hc = c.host_config
        if rp and rp.get("Name") is not None:
            if hc.get("AutoRemove") and rp.get("Name") not in ("", "no"):
                raise errors.InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
            hc["RestartPolicy"] = {"Name": rp.get("Name") or "no",
                                   "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}
        for k in ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
                  "CpuQuota", "CpusetCpus", "CpusetMems", "BlkioWeight", "PidsLimit"):
            if k in body and body[k] not in (None,):
                hc[k] = body[k]
        engine.save(c)
        engine.emit(c, "update")
        return json_response({"Warnings": []})

    async def commit(request):
        ref = request.query.get("container", "")
        c = engine.get(ref)
        imgs = engine.images
        if imgs is None or not hasattr(imgs, "commit"):
            raise errors.NotImplementedYet("commit is not available")
        body = await json_body(request, None)
        changes = request.query.getall("changes", [])
        pause = qbool(request, "pause", True)
        paused_here = False
        if pause and c.running and not c.paused:
            await engine.pause(c.id)
            paused_here = True
        try:
            img = await asyncio.to_thread(
                imgs.commit, container_id=c.id, image_id=c.rec["Image"],
                config_changes=_commit_config(c, body), author=request.query.get("author", ""),
                comment=request.query.get("comment", ""), repo=request.query.get("repo") or None,
                tag=request.query.get("tag") or None, changes=changes)
        finally:
            if paused_here:
                await engine.unpause(c.id)
        iid = getattr(img, "id", img)
        engine.emit(c, "commit", comment=request.query.get("comment", ""))
        return json_response({"Id": iid}, status=201)

    r = lambda m, p, h: add_route(app, m, p, h)  # noqa: E731
    r("GET", "/containers/json", list_h)
    r("POST", "/containers/create", create)
    r("POST", "/containers/prune", prune)
    r("GET", "/containers/{id}/json", inspect)
    r("GET", "/containers/{id}/top", top)
    r("GET", "/containers/{id}/logs", logs)
    r("GET", "/containers/{id}/changes", changes)
    r("GET", "/containers/{id}/export", export)
    r("GET", "/containers/{id}/stats", stats)
    r("POST", "/containers/{id}/resize", resize)
    r("POST", "/containers/{id}/start", start)
    r("POST", "/containers/{id}/stop", stop)
    r("POST", "/containers/{id}/restart", restart)
    r("POST", "/containers/{id}/kill", kill)
    r("POST", "/containers/{id}/update", update)
    r("POST", "/containers/{id}/rename", rename)
    r("POST", "/containers/{id}/pause", pause)
    r("POST", "/containers/{id}/unpause", unpause)
    r("POST", "/containers/{id}/attach", attach)
    r("POST", "/containers/{id}/wait", wait)
    r("DELETE", "/containers/{id}", remove)
    r("POST", "/commit", commit)


def _zero_cpu():
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _commit_config(c, body):
    cfg = dict(c.config)
    if isinstance(body, dict):
        cfg.update({k: v for k, v in body.items() if v is not None})
    return cfg


async def engine_export(engine, c, request, resp):
    """Tar of the container's filesystem (the merged overlay), streamed."""
    imgs = engine.images
    if imgs is not None and hasattr(imgs, "export_container"):
        await resp.prepare(request)
        q = asyncio.Queue(maxsize=8)
        loop = asyncio.get_running_loop()

        class W:
            def write(self, b):
                asyncio.run_coroutine_threadsafe(q.put(bytes(b)), loop).result()
                return len(b)

        async def produce():
            try:
                await asyncio.to_thread(imgs.export_container, c.id, W())
            finally:
                await q.put(None)
        t = asyncio.ensure_future(produce())
        while True:
            b = await q.get()
            if b is None:
                break
            await resp.write(b)
        await t
        await resp.write_eof()
        return
    rootfs = os.path.join(engine.container_dir(c.id), "rootfs")
    mounted_here = False
    if not os.path.ismount(rootfs):
        await asyncio.to_thread(engine.rootfs.mount, c.id, rootfs)
        mounted_here = True
    try:
        proc = await asyncio.create_subprocess_exec(
            "tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", "-", ".",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await resp.prepare(request)
        while True:
            b = await proc.stdout.read(65536)
            if not b:
                break
            await resp.write(b)
        await proc.wait()
        await resp.write_eof()
    finally:
        if mounted_here and not c.running:
            await asyncio.to_thread(engine.rootfs.unmount, c.id, rootfs)
