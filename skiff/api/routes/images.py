"""/images/*: list, inspect, history, tag, remove, prune, pull and import
(/images/create), push, save (/images/get), load. Thin: the work is
ImageService's (skiff.image) and the registry client's (skiff.registry)."""

import asyncio
import base64
import json
import tempfile
import threading
import time

from aiohttp import web

from skiff import errors
from skiff.api.routes import filters, json_response, qbool
from skiff.api.server import add_route
from skiff.api.streams import json_stream, write_json



def decode_auth(header: str | None):
    """X-Registry-Auth: base64url(JSON AuthConfig); empty or "{}" → None."""
    if not header:
        return None
    raw = header.strip()
    raw += "=" * (-len(raw) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        try:
            data = json.loads(base64.b64decode(raw.encode()))
        except (ValueError, TypeError):
            return None
    return data if isinstance(data, dict) and data else None


def registry_config(engine):
    cfg = getattr(engine, "registry_config", None)
    if cfg is not None:
        return cfg
    from skiff.registry import RegistryConfig

    raw = dict(getattr(engine.config, "raw", {}) or {})
    if getattr(engine.config, "default_registry", None) and "default-registry" not in raw:
        raw["default-registry"] = engine.config.default_registry
    cfg = RegistryConfig.from_daemon_json(raw)
    try:
        engine.registry_config = cfg
    except AttributeError:
        pass
    return cfg


def _images(engine):
    imgs = getattr(engine, "images", None)
    if imgs is None:
        raise errors.NotImplementedYet("image service is not available")
    return imgs


def image_users(engine) -> dict:
    """{image ID: [container IDs]} for every container the engine knows."""
    out: dict = {}
    for c in list(getattr(engine, "containers", {}).values()):
        iid = c.rec.get("Image") if hasattr(c, "rec") else None
        if iid:
            out.setdefault(iid, []).append(c.id)
    return out


async def stream_job(request, fn, *, hold_first=False, headers=None, on_done=None):
    """Run ``fn(progress)`` in a thread, streaming each progress dict as a
    JSON line. Docker's rule: an error before anything was written is an
    HTTP error; after that it is an ``errorDetail`` message. With
    ``hold_first`` the first message waits for a second one (a pull's
    "Pulling from" is only sent once the manifest was found)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def progress(msg):
        if cancel.is_set():
            raise errors.Unavailable("client went away")
        loop.call_soon_threadsafe(q.put_nowait, ("msg", msg))

    def run():
        try:
            res = fn(progress, cancel)
            loop.call_soon_threadsafe(q.put_nowait, ("done", res))
        except BaseException as e:  # reported to the client
            loop.call_soon_threadsafe(q.put_nowait, ("error", e))

    task = loop.run_in_executor(None, run)
    resp = None
    held = []
    try:
        while True:
            kind, val = await q.get()
            if kind == "msg":
                if resp is None and hold_first and not held:
                    held.append(val)
                    continue
                if resp is None:
                    resp = await json_stream(request, headers)
                    for h in held:
                        await write_json(resp, h)
                    held = []
                await write_json(resp, val)
                continue
            if kind == "error":
                if resp is None:
                    if isinstance(val, errors.SkiffError):
                        raise val
                    raise errors.Internal(str(val))
                msg = getattr(val, "message", None) or str(val)
                await write_json(resp, {"errorDetail": {"message": msg}, "error": msg})
                break
            # done
            if on_done is not None:
                try:
                    on_done(val)
                except Exception:
                    pass
            if resp is None:
                resp = await json_stream(request, headers)
                for h in held:
                    await write_json(resp, h)
            if isinstance(val, list):
                for m in val:
                    await write_json(resp, m)
            break
        await resp.write_eof()
        return resp
    except (ConnectionError, asyncio.CancelledError):
        cancel.set()
        raise
    finally:
        cancel.set()
        await asyncio.shield(task)


def register(app, engine):
    r = lambda m, p, h: add_route(app, m, p, h)  # noqa: E731

    async def list_images(request):
        imgs = _images(engine)
        counts = {k: len(v) for k, v in image_users(engine).items()}
        out = await asyncio.to_thread(imgs.list_json, filters(request),
                                      qbool(request, "all"), counts)
        return json_response(out)

    async def inspect(request):
        imgs = _images(engine)
        return json_response(await asyncio.to_thread(imgs.inspect_json,
                                                     request.match_info["name"]))

    async def history(request):
        imgs = _images(engine)
        return json_response(await asyncio.to_thread(imgs.history_json,
                                                     request.match_info["name"]))

    async def tag(request):
        imgs = _images(engine)
        repo = request.query.get("repo", "")
        t = request.query.get("tag", "")
        if not repo:
            raise errors.InvalidArgument("repository name must have at least one component")
        await asyncio.to_thread(imgs.tag, request.match_info["name"], repo, t or None)
        _emit(engine, "tag", request.match_info["name"], f"{repo}:{t or 'latest'}")
        return web.Response(status=201)

    async def remove(request):
        imgs = _images(engine)
        name = request.match_info["name"]
        out = await asyncio.to_thread(imgs.remove, name, qbool(request, "force"),
                                      qbool(request, "noprune"), image_users(engine))
        for item in out:
            if "Untagged" in item:
                _emit(engine, "untag", item["Untagged"])
            elif "Deleted" in item and str(item["Deleted"]).startswith("sha256:"):
                _emit(engine, "delete", item["Deleted"])
        return json_response(out)

    async def prune(request):
        imgs = _images(engine)
        f = filters(request)
        all_ = False
        if "dangling" in f:
            all_ = str(f.pop("dangling")[0]).lower() in ("false", "0")
        out = await asyncio.to_thread(imgs.prune, all_, f or None, image_users(engine))
        engine_events(engine, "image", "prune", "",
                      {"reclaimed": str(out.get("SpaceReclaimed", 0))})
        return json_response(out)

    async def create(request):
        imgs = _images(engine)
        q = request.query
        if q.get("fromSrc"):
            return await _import(request, imgs)
        src = q.get("fromImage", "")
        if not src:
            raise errors.InvalidArgument("fromImage or fromSrc is required")
        t = q.get("tag", "")
        ref = src
        if t:
            ref = f"{src}@{t}" if ":" in t and t.split(":", 1)[0] in ("sha256", "sha512") \
                else f"{src}:{t}"
        from skiff import registry

        from skiff.registry.reference import parse as _parse

        try:
            bare = _parse(ref, default_tag=False)
            parsed = registry.parse(ref)
        except errors.SkiffError:
            raise errors.InvalidArgument("invalid reference format")
        # fromImage without a tag means every tag (docker pull -a)
        all_tags = not t and not bare.tag and not bare.digest
        auth = decode_auth(request.headers.get("X-Registry-Auth"))
        platform = q.get("platform") or None
        cfg = registry_config(engine)

        def job(progress, cancel):
            if all_tags:
                return registry.pull(imgs, bare, platform=platform, auth=auth, config=cfg,
                                     progress=progress, cancel=cancel, all_tags=True)
            return registry.pull(imgs, parsed, platform=platform, auth=auth, config=cfg,
                                 progress=progress, cancel=cancel)

        name = str(getattr(parsed, "familiar", ref))
        return await stream_job(request, job, hold_first=True, on_done=lambda img: engine_events(
            engine, "image", "pull", name, {"name": name}))

    async def _import(request, imgs):
        q = request.query
        repo = q.get("repo") or None
        t = q.get("tag") or None
        changes = q.getall("changes", [])
        message = q.get("message", "")
        if q.get("fromSrc") != "-":
            return await _import_url(request, imgs, q.get("fromSrc"), repo, t, changes, message)
        spool = await _spool_body(request)

        def job(progress, cancel):
            try:
                img = imgs.import_tar(spool, repo, t, changes=changes, message=message)
            finally:
                spool.close()
            return [{"status": img.id}]

        return await stream_job(request, job, on_done=lambda out: engine_events(
            engine, "image", "import", out[0]["status"], {}))

    async def _import_url(request, imgs, src, repo, t, changes, message):
        """`docker import URL`: the daemon fetches the tar (http or https; a
        bare host gets http://, as dockerd), "Downloading from", "Importing"
        progress, then the image id. A failed GET is an HTTP error."""
        if "://" not in src:
            src = "http://" + src
        resp = await asyncio.to_thread(_http_get, src)

        def job(progress, cancel):
            spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
            try:
                progress({"status": f"Downloading from {src}"})
                total = int(resp.headers.get("Content-Length") or -1)
                done = 0
                last = 0.0
                while chunk := resp.read(1 << 20):
                    if cancel.is_set():
                        raise errors.Unavailable("client went away")
                    spool.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last > 0.1:
                        last = now
                        detail = {"current": done}
                        if total > 0:
                            detail["total"] = total
                        progress({"status": "Importing", "progressDetail": detail})
                spool.seek(0)
                img = imgs.import_tar(spool, repo, t, changes=changes, message=message)
            finally:
                resp.close()
                spool.close()
            return [{"status": img.id}]

        return await stream_job(request, job, on_done=lambda out: engine_events(
            engine, "image", "import", out[0]["status"], {}))

    async def push(request):
        imgs = _images(engine)
        name = request.match_info["name"]
        t = request.query.get("tag", "")
        ref = f"{name}:{t}" if t else name
        from skiff import registry

        try:
            parsed = registry.parse(ref)
        except errors.SkiffError:
            raise errors.InvalidArgument("invalid reference format")
        auth = decode_auth(request.headers.get("X-Registry-Auth"))
        cfg = registry_config(engine)

        def job(progress, cancel):
            return registry.push(imgs, parsed, auth=auth, config=cfg, progress=progress,
                                 cancel=cancel)

        return await stream_job(request, job, on_done=lambda d: engine_events(
            engine, "image", "push", str(parsed), {}))

    async def save(request):
        imgs = _images(engine)
        if "name" in request.match_info:
            refs = [request.match_info["name"]]
        else:
            refs = request.query.getall("names", [])
        if not refs:
            raise errors.InvalidArgument("no images specified")
        for ref in refs:  # a missing image is a 404 before any byte is sent
            await asyncio.to_thread(imgs.get, ref)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        await _stream_writer(resp, lambda w: imgs.save(refs, w))
        for ref in refs:
            engine_events(engine, "image", "save", ref, {})
        return resp

    async def load(request):
        imgs = _images(engine)
        quiet = qbool(request, "quiet")
        spool = await _spool_body(request)

        def job(progress, cancel):
            try:
                lines = imgs.load(spool, quiet) if _takes_quiet(imgs.load) else imgs.load(spool)
            finally:
                spool.close()
            return [{"stream": line.rstrip("\n") + "\n"} for line in lines]

        def loaded(out):
            for m in out:
                engine_events(engine, "image", "load",
                              m["stream"].strip().split(": ", 1)[-1], {})

        return await stream_job(request, job, on_done=loaded)

    r("GET", "/images/json", list_images)
    r("POST", "/images/create", create)
    r("POST", "/images/load", load)
    r("POST", "/images/prune", prune)
    r("GET", "/images/get", save)
    r("GET", "/images/{name:.+}/json", inspect)
    r("GET", "/images/{name:.+}/history", history)
    r("POST", "/images/{name:.+}/tag", tag)
    r("POST", "/images/{name:.+}/push", push)
    r("GET", "/images/{name:.+}/get", save)
    r("DELETE", "/images/{name:.+}", remove)


def _takes_quiet(fn) -> bool:
    import inspect

    try:
        return "quiet" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _http_get(url):
    """GET ``url`` (an open response), or the error dockerd gives."""
    import urllib.error
    import urllib.request
    if not url.startswith(("http://", "https://")):
        raise errors.InvalidArgument(f"unsupported protocol scheme in {url!r}: "
                                     "only http and https can be imported")
    try:
        return urllib.request.urlopen(url, timeout=30)
    except urllib.error.HTTPError as e:
        body = e.read(512).decode("utf-8", "replace").strip()
        raise errors.Internal(f"failed to GET {url} with status {e.code} {e.reason}: {body}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise errors.Internal(f'Get "{url}": {reason}')


async def _spool_body(request):
    """The request body in a temporary file (memory first, disk above 32 MB)."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def _stream_writer(resp, fn):
    """Run ``fn(writer)`` in a thread; what it writes is streamed out."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue(maxsize=16)
    gone = threading.Event()

    class W:
        def write(self, b):
            if gone.is_set():
                raise BrokenPipeError("client went away")
            asyncio.run_coroutine_threadsafe(q.put(bytes(b)), loop).result()
            return len(b)

        def flush(self):
            pass

    def run():
        try:
            fn(W())
        finally:
            asyncio.run_coroutine_threadsafe(q.put(None), loop).result()

    task = loop.run_in_executor(None, run)
    try:
        while True:
            b = await q.get()
            if b is None:
                break
            await resp.write(b)
        await resp.write_eof()
    except BaseException:
        gone.set()
        while not task.done():
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        raise
    finally:
        try:
            await task
        except Exception:
            pass


def engine_events(engine, type_, action, actor, attrs):
    ev = getattr(engine, "events", None)
    if ev is None:
        return
    try:
        ev.emit(type_, action, actor, attrs)
    except Exception:
        pass


def _emit(engine, action, ref, name=None):
    engine_events(engine, "image", action, ref, {"name": name or ref})
