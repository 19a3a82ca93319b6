"""skiff pulls from a real docker-registry on 127.0.0.1."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from skiff import errors
from skiff.registry import pull
from skiff.testing import registry as R


def _rootfs_file(images, img, path):
    """Read ``path`` from the image's top-most snapshot that has it."""
    for chain in reversed(img.chain_ids):
        p = os.path.join(images.storage.path(chain), path.lstrip("/"))
        if os.path.lexists(p):
            return p
    return None


def two_layer_image(busybox_layer, kind="docker", extra=b"hello from layer 2\n", **kw):
    return R.build_image([busybox_layer, R.layer_tar({"etc/motd": extra})], kind=kind, **kw)


def test_pull_plain_http_with_docker_progress(plain_registry, images, config, messages,
                                              busybox_layer):
    img = two_layer_image(busybox_layer)
    R.push_raw(plain_registry, "library/busybox", img)
    config.default_registry = plain_registry.host       # busybox → this registry
    got = pull(images, "busybox", config=config, progress=messages)

    assert got.id == img["config"]
    assert "busybox:latest" in got.repo_tags
    assert f"busybox@{img['digest']}" in got.repo_digests
    assert images.get("busybox").id == img["config"]
    bb = _rootfs_file(images, got, "bin/busybox")
    assert bb and os.path.getsize(bb) > 100_000
    with open(_rootfs_file(images, got, "etc/motd"), "rb") as f:
        assert f.read() == b"hello from layer 2\n"

    assert messages[0] == {"status": "Pulling from library/busybox", "id": "latest"}
    for digest in img["layers"]:
        sid = digest[7:19]
        st = messages.statuses(sid)
        assert st[0] == "Pulling fs layer"
        assert "Downloading" in st
        for phase in ("Verifying Checksum", "Download complete", "Extracting"):
            assert phase in st
        assert st[-1] == "Pull complete"
        assert st.index("Download complete") < st.index("Extracting")
        dl = [m for m in messages if m.get("id") == sid and m["status"] == "Downloading"]
        size = len(img["blobs"][digest])
        assert dl[-1]["progressDetail"] == {"current": size, "total": size}
        assert dl[-1]["progress"].startswith("[")
        assert messages[1 if digest == img["layers"][0] else 2]["progressDetail"] == {}
    assert messages[-2] == {"status": f"Digest: {img['digest']}"}
    assert messages[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}

    # pulling again: nothing downloaded, "Image is up to date"
    messages.clear()
    pull(images, "busybox", config=config, progress=messages)
    assert [m["status"] for m in messages] == [
        "Pulling from library/busybox", f"Digest: {img['digest']}",
        "Status: Image is up to date for busybox:latest"]


def test_shared_layer_already_exists_and_digest_pull(plain_registry, images, config,
                                                     messages, busybox_layer):
    a = two_layer_image(busybox_layer, extra=b"a\n")
    b = two_layer_image(busybox_layer, extra=b"b\n")
    R.push_raw(plain_registry, "apps/a", a, tag="1")
    R.push_raw(plain_registry, "apps/b", b, tag=None)
    pull(images, f"{plain_registry.host}/apps/a:1", config=config)
    ref = f"{plain_registry.host}/apps/b@{b['digest']}"
    got = pull(images, ref, config=config, progress=messages)
    assert got.id == b["config"]
    assert messages[0]["id"] == b["digest"]
    base = b["layers"][0][7:19]
    assert messages.statuses(base) == ["Already exists"]
    assert messages.statuses(b["layers"][1][7:19])[-1] == "Pull complete"
    assert images.get(ref).id == b["config"]
    assert not any(t.startswith(f"{plain_registry.host}/apps/b:") for t in got.repo_tags)


def test_index_platform_selection(plain_registry, images, config, messages, busybox_layer):
    amd = R.build_image([R.layer_tar({"arch": "amd64\n"})], kind="oci", arch="amd64")
    arm = R.build_image([R.layer_tar({"arch": "arm64\n"})], kind="oci", arch="arm64",
                        variant="v8")
    for im in (amd, arm):
        R.push_raw(plain_registry, "multi", im, tag=None)
    idx = R.index_of([(amd, {"os": "linux", "architecture": "amd64"}),
                      (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})])
    R.push_raw(plain_registry, "multi", idx, tag="latest")
    name = f"{plain_registry.host}/multi"
    got = pull(images, name, config=config, platform="linux/arm64", progress=messages)
    assert got.id == arm["config"] and got.config["architecture"] == "arm64"
    assert messages[-2] == {"status": f"Digest: {idx['digest']}"}   # the index's digest
    assert images.get(f"{name}@{idx['digest']}").id == arm["config"]
    got = pull(images, name, config=config, platform="linux/amd64")
    assert got.id == amd["config"]
    assert images.get(f"{name}:latest").id == amd["config"]
    with pytest.raises(errors.NotFound) as e:
        pull(images, name, config=config, platform="linux/s390x")
    assert str(e.value) == "no matching manifest for linux/s390x in the manifest list entries"


def test_zstd_and_foreign_layers(plain_registry, images, config, tmp_path, busybox_layer):
    raw_foreign = R.layer_tar({"foreign.txt": "from a URL\n"})
    blob = R.gz(raw_foreign)
    fdigest = R.sha256(blob)
    www = tmp_path / "www"
    www.mkdir()
    (www / "layer.tar.gz").write_bytes(blob)
    with R.FileServer(str(www)) as fs:
        img = R.build_image([busybox_layer, R.layer_tar({"z.txt": "zstd layer\n"})],
                            kind="oci", compress="zstd")
        man = json.loads(img["manifest"])
        man["layers"].append({"mediaType": R.MT_LAYER["foreign"], "size": len(blob),
                              "digest": fdigest, "urls": [fs.url("layer.tar.gz")]})
        cfg = json.loads(img["blobs"][img["config"]])
        cfg["rootfs"]["diff_ids"].append(R.sha256(raw_foreign))
        cfgb = json.dumps(cfg).encode()
        del img["blobs"][img["config"]]
        img["blobs"][R.sha256(cfgb)] = cfgb
        man["config"].update(digest=R.sha256(cfgb), size=len(cfgb))
        img["manifest"] = json.dumps(man).encode()
        img["digest"] = R.sha256(img["manifest"])
        R.push_raw(plain_registry, "fz", img)          # the foreign blob is not in the registry
        got = pull(images, f"{plain_registry.host}/fz", config=config)
        assert fs.hits.get("/layer.tar.gz") == 1
        # the URL answers with a redirect to where the file is (a CDN would): followed
        images.remove(f"{plain_registry.host}/fz:latest")
        for chain in reversed(got.chain_ids):
            if images.storage.has(chain):
                images.storage.remove(chain)
        if images.content.has(fdigest):
            images.content.delete(fdigest)
        man["layers"][-1]["urls"] = [fs.url("redirect?to=/layer.tar.gz")]
        img["manifest"] = json.dumps(man).encode()
        img["digest"] = R.sha256(img["manifest"])
        R.push_raw(plain_registry, "fz", img, tag="2")
        got = pull(images, f"{plain_registry.host}/fz:2", config=config)
        assert fs.hits.get("/layer.tar.gz") == 2
    assert open(_rootfs_file(images, got, "z.txt")).read() == "zstd layer\n"
    assert open(_rootfs_file(images, got, "foreign.txt")).read() == "from a URL\n"


def test_missing_tag_and_repository(plain_registry, images, config):
    R.push_raw(plain_registry, "there", R.build_image([R.layer_tar({"a": "a"})]))
    with pytest.raises(errors.NotFound) as e:
        pull(images, f"{plain_registry.host}/there:nope", config=config)
    assert str(e.value) == (f"manifest for {plain_registry.host}/there:nope not found: "
                            "manifest unknown: manifest unknown")
    with pytest.raises(errors.NotFound) as e:
        pull(images, f"{plain_registry.host}/nothere", config=config)
    # distribution 2.8 answers MANIFEST_UNKNOWN for an unknown repository too
    assert str(e.value) == (f"manifest for {plain_registry.host}/nothere:latest not found: "
                            "manifest unknown: manifest unknown")
    assert images.list_json() == []


def test_schema1_refused(images, config):
    """distribution 2.8 no longer accepts schema1 uploads, so a tiny server
    plays an old registry that still serves one."""
    body = json.dumps({"schemaVersion": 1, "name": "old", "tag": "latest",
                       "fsLayers": [], "history": []}).encode()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/v2/":
                data, ct = b"{}", "application/json"
            else:
                data, ct = body, "application/vnd.docker.distribution.manifest.v1+prettyjws"
            self.send_response(200)
            self.send_header("Content-Type", ct)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(errors.InvalidArgument) as e:
            pull(images, f"{host}/old", config=config)
        assert "schema 1 support has been removed" in str(e.value)
        assert images.list_json() == []
    finally:
        srv.shutdown()
        srv.server_close()


def test_registry_mirrors(tmp_path, plain_registry, images, config, messages):
    """docker.io names go to the mirror first; a mirror that is down or lacks
    the image falls back to the registry that plays docker.io."""
    on_mirror = R.build_image([R.layer_tar({"from": "mirror\n"})])
    upstream_only = R.build_image([R.layer_tar({"from": "upstream\n"})])
    with R.Registry(str(tmp_path / "mirror")) as mirror:
        R.push_raw(mirror, "library/cached", on_mirror)
        R.push_raw(plain_registry, "library/fresh", upstream_only)
        config.default_registry = plain_registry.host
        config.mirrors = [mirror.url]
        assert pull(images, "cached", config=config, progress=messages).id == on_mirror["config"]
        assert messages.statuses().count("Pulling from library/cached") == 1
        assert pull(images, "fresh", config=config).id == upstream_only["config"]
        images.remove("cached:latest")
        images.remove("fresh:latest")
        config.mirrors = [f"http://127.0.0.1:{R.free_port()}", mirror.url]   # first one is down
        assert pull(images, "docker.io/library/cached", config=config).id == on_mirror["config"]
        # a push never goes to a mirror
        from skiff.registry import push
        images.tag("cached:latest", "pushed", "1")
        push(images, "pushed:1", config=config)
    with urllib_open(f"{plain_registry.url}/v2/library/pushed/manifests/1") as r:
        assert r.status == 200


def urllib_open(url):
    import urllib.request
    return urllib.request.urlopen(urllib.request.Request(url, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"}))


def test_concurrency_limit_shows_waiting(plain_registry, images, config, messages):
    img = R.build_image([R.layer_tar({f"l{i}": f"layer {i}\n"}) for i in range(5)])
    R.push_raw(plain_registry, "five", img)
    config.max_concurrent_downloads = 2
    got = pull(images, f"{plain_registry.host}/five", config=config, progress=messages)
    assert len(got.chain_ids) == 5
    ids = [d[7:19] for d in img["layers"]]
    for i, sid in enumerate(ids):
        st = messages.statuses(sid)
        assert st[0] == "Pulling fs layer"
        assert ("Waiting" in st) == (i >= 2)
        assert st[-1] == "Pull complete"
    # layers complete in order
    done = [m["id"] for m in messages if m.get("status") == "Pull complete"]
    assert done == ids


def test_concurrent_pulls_of_one_image(plain_registry, images, config, busybox_layer):
    """Two pulls of the same image at once (two docker pull clients): both
    succeed, each blob is downloaded once, one image results."""
    img = R.build_image([busybox_layer, R.layer_tar({"big": os.urandom(4 << 20)}),
                         R.layer_tar({"x": "x\n"})])
    R.push_raw(plain_registry, "same", img)
    name = f"{plain_registry.host}/same"
    results, errs = [], []

    def one():
        try:
            results.append(pull(images, name, config=config).id)
        except Exception as e:  # noqa: BLE001
            errs.append(e)

    ts = [threading.Thread(target=one) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errs == []
    assert results == [img["config"]] * 3
    assert [i["Id"] for i in images.list_json()] == [img["config"]]
    assert images.content.ingests_in_progress() == []


def test_seed_helper_for_e2e(basic_registry, images, config):
    """skiff.testing.registry.seed puts busybox into any registry mode."""
    img = R.seed(basic_registry)
    config.default_registry = basic_registry.host
    got = pull(images, "busybox", config=config, auth={"username": "alice",
                                                         "password": "wonderland"})
    assert got.id == img["config"] and got.config["config"]["Cmd"] == ["sh"]


def test_pull_all_tags(plain_registry, images, config, messages):
    one = R.build_image([R.layer_tar({"v": "1\n"})])
    two = R.build_image([R.layer_tar({"v": "2\n"})])
    R.push_raw(plain_registry, "tags/app", one, tag="1")
    R.push_raw(plain_registry, "tags/app", two, tag="2")
    R.push_raw(plain_registry, "tags/app", two, tag="latest")
    name = f"{plain_registry.host}/tags/app"
    pull(images, name, config=config, all_tags=True, progress=messages)
    assert images.get(f"{name}:1").id == one["config"]
    assert images.get(f"{name}:2").id == two["config"]
    assert images.get(f"{name}:latest").id == two["config"]
    pulling = [m["id"] for m in messages if m["status"].startswith("Pulling from")]
    assert pulling == ["1", "2", "latest"]
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {name}"}
    assert sum(1 for m in messages if m["status"].startswith("Status:")) == 1


def test_resume_against_a_server_that_ignores_range(plain_registry, images, config, tmp_path):
    """A partial download is resumed with Range; a server that answers 200
    with the whole body instead is skipped ahead, and the digest still holds."""
    raw = R.layer_tar({"data.bin": os.urandom(300_000)})
    blob = R.gz(raw)
    digest = R.sha256(blob)
    www = tmp_path / "www"
    www.mkdir()
    (www / "l.tgz").write_bytes(blob)
    with R.FileServer(str(www)) as fs:
        cfg = R.image_config([R.sha256(raw)])
        man = {"schemaVersion": 2,
               "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "size": len(cfg), "digest": R.sha256(cfg)},
               "layers": [{"mediaType": R.MT_LAYER["foreign"], "size": len(blob),
                           "digest": digest, "urls": [fs.url("l.tgz")]}]}
        body = json.dumps(man).encode()
        R.push_raw(plain_registry, "resume", {"manifest": body, "digest": R.sha256(body),
                                              "media_type": man["mediaType"],
                                              "blobs": {R.sha256(cfg): cfg}})
        w = images.content.writer(digest, digest, len(blob))      # a pull that died halfway
        w.write(blob[:len(blob) // 2])
        w.close()
        got = pull(images, f"{plain_registry.host}/resume", config=config)
    assert got.diff_ids == [R.sha256(raw)]
    assert images.content.read(digest) == blob


def test_extraction_follows_a_download_in_progress(plain_registry, images, config,
                                                   messages, monkeypatch):
    """On a slow link a layer is unpacked while it is still downloading (its
    parent being ready), yet messages keep Docker's order per layer."""
    from skiff.registry import puller
    from skiff.registry.progress import Progress
    img = R.build_image([R.layer_tar({"a": os.urandom(1 << 20)}),
                         R.layer_tar({"b": os.urandom(6 << 20)}),
                         R.layer_tar({"c": "c\n"})])
    R.push_raw(plain_registry, "slow", img)
    followed = []
    real = puller._extract_following

    def spy(*a, **kw):
        followed.append(a[4])
        return real(*a, **kw)

    monkeypatch.setattr(puller, "_extract_following", spy)
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)
    slow = img["layers"][1][7:19]

    def progress(m):
        messages(m)
        if m.get("id") == slow and m.get("status") == "Downloading":
            time.sleep(0.03)                      # ~1 MB per 30 ms on this layer
    got = pull(images, f"{plain_registry.host}/slow", config=config, progress=progress)
    assert got.id == img["config"]
    assert followed == [got.chain_ids[1]]
    st = messages.statuses(slow)
    assert st.index("Download complete") < st.index("Extracting") < st.index("Pull complete")
    with open(os.path.join(images.storage.path(got.chain_ids[1]), "b"), "rb") as f:
        assert len(f.read()) == 6 << 20
