"""skiff pushes to a real docker-registry; the result is read back by an
independent client (urllib) and pulled again."""

import json
import urllib.request

import pytest

from skiff import errors
from skiff.registry import pull, push
from skiff.testing import registry as R


def _manifest(reg, repo, ref):
    req = urllib.request.Request(f"{reg.url}/v2/{repo}/manifests/{ref}", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers["Docker-Content-Digest"]


def test_push_mount_exists_and_digest(plain_registry, images, config, messages, busybox_layer):
    img = R.build_image([busybox_layer, R.layer_tar({"etc/motd": "pushed\n"})])
    R.push_raw(plain_registry, "src/app", img)
    host = plain_registry.host
    pull(images, f"{host}/src/app", config=config)
    images.tag(f"{host}/src/app", f"{host}/dst/app", "v1")

    digest = push(images, f"{host}/dst/app:v1", config=config, progress=messages)
    assert digest == img["digest"]                 # the pulled manifest is pushed as-is
    assert messages[0] == {"status": f"The push refers to repository [{host}/dst/app]"}
    ids = [d[7:19] for d in img["diff_ids"]]
    for sid in ids:
        st = messages.statuses(sid)
        assert st[0] == "Preparing"
        assert st[-1] == "Mounted from src/app"
    # docker lists the top layer first
    assert [m["id"] for m in messages[1:3]] == ids[::-1]
    size = len(img["manifest"])
    assert messages[-2] == {"status": f"v1: digest: {digest} size: {size}"}
    assert messages[-1] == {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": digest,
                                                          "Size": size}}
    body, d = _manifest(plain_registry, "dst/app", "v1")
    assert d == digest and body == img["manifest"]

    messages.clear()
    push(images, f"{host}/dst/app:v1", config=config, progress=messages)
    for sid in ids:
        assert messages.statuses(sid)[-1] == "Layer already exists"


def test_push_uploads_monolithic_and_chunked(tmp_path, plain_registry, images, config,
                                             messages, busybox_layer):
    img = R.build_image([busybox_layer, R.layer_tar({"etc/motd": "chunky\n"})], kind="oci")
    R.push_raw(plain_registry, "base", img)
    pull(images, f"{plain_registry.host}/base", config=config)
    for chunk in (None, 256 << 10):
        with R.Registry(str(tmp_path / f"other{chunk}")) as other:
            config.chunk_size = chunk
            images.tag(f"{plain_registry.host}/base", f"{other.host}/copy", "1")
            messages.clear()
            digest = push(images, f"{other.host}/copy:1", config=config, progress=messages)
            for d in img["diff_ids"]:
                st = messages.statuses(d[7:19])
                assert "Pushing" in st and st[-1] == "Pushed"
            body, got = _manifest(other, "copy", "1")
            assert got == digest
            man = json.loads(body)
            # every blob the manifest names is in the registry, byte for byte
            for desc in man["layers"] + [man["config"]]:
                with urllib.request.urlopen(f"{other.url}/v2/copy/blobs/{desc['digest']}") as r:
                    assert R.sha256(r.read()) == desc["digest"]
            # and skiff can pull it back into a fresh store
            from skiff.image.service import ImageService
            fresh = ImageService(str(tmp_path / f"fresh{chunk}"))
            assert pull(fresh, f"{other.host}/copy:1", config=config).id == img["config"]


def test_push_unknown_image(plain_registry, images, config):
    with pytest.raises(errors.NotFound) as e:
        push(images, f"{plain_registry.host}/nothing:here", config=config)
    assert str(e.value) == ("An image does not exist locally with the tag: "
                            f"{plain_registry.host}/nothing")


def test_push_all_tags(plain_registry, images, config, messages):
    img = R.build_image([R.layer_tar({"t": "tags\n"})])
    R.push_raw(plain_registry, "src", img)
    pull(images, f"{plain_registry.host}/src", config=config)
    for t in ("a", "b"):
        images.tag(f"{plain_registry.host}/src", f"{plain_registry.host}/all", t)
    push(images, f"{plain_registry.host}/all", config=config, progress=messages, all_tags=True)
    assert messages.statuses().count(f"The push refers to repository [{plain_registry.host}/all]") == 1
    assert [m["aux"]["Tag"] for m in messages if "aux" in m] == ["a", "b"]
    for t in ("a", "b"):
        assert _manifest(plain_registry, "all", t)[1] == img["digest"]
