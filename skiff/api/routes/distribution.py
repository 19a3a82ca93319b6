"""GET /distribution/{name}/json: a registry's manifest descriptor and the
platforms it serves (docker buildx imagetools, docker service, compose)."""

import asyncio
import json

from skiff import errors
from skiff.api.routes import json_response
from skiff.api.server import add_route


def inspect_remote(ref_s: str, auth, config) -> dict:
    from skiff.registry import client, puller
    from skiff.registry.reference import parse

    try:
        ref = parse(ref_s)
    except errors.SkiffError:
        raise errors.InvalidArgument("invalid reference format")
    creds = puller._credentials(auth, ref, config)
    pool = client.Pool(config)
    try:
        repo = client.Repository(ref, config, creds, "pull", pool=pool).open()
        body, mt, digest = repo.get_manifest(ref.tag_or_digest)
        man = json.loads(body)
        platforms = []
        if mt in (client.MT_DOCKER_LIST, client.MT_OCI_INDEX) or "manifests" in man:
            for m in man.get("manifests") or []:
                p = m.get("platform")
                if p and p.get("os") != "unknown":
                    platforms.append(p)
        elif (man.get("config") or {}).get("digest"):
            r = repo.open_blob(man["config"]["digest"])
            try:
                cfg = json.loads(r.read(1 << 20))
            finally:
                r.close()
            p = {"architecture": cfg.get("architecture", ""), "os": cfg.get("os", "")}
            if cfg.get("variant"):
                p["variant"] = cfg["variant"]
            platforms.append(p)
        return {"Descriptor": {"mediaType": mt, "digest": digest, "size": len(body)},
                "Platforms": platforms}
    except (client.RegistryError, client.TransportError) as e:
        raise puller._translate(e, ref) from None
    finally:
        pool.close()


def register(app, engine):
    async def distribution(request):
        from skiff.api.routes.images import decode_auth, registry_config

        auth = decode_auth(request.headers.get("X-Registry-Auth"))
        out = await asyncio.to_thread(inspect_remote, request.match_info["name"], auth,
                                      registry_config(engine))
        return json_response(out)

    add_route(app, "GET", "/distribution/{name:.+}/json", distribution)
