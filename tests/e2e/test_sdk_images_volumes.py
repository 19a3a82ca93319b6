"""The docker Python SDK (7.1) against skiffd: images, volumes, archives,
networks. docker-py picks its exception classes from status and wording."""

import io
import tarfile

import docker
import pytest

from tests.e2e.h5b_helpers import NetnsRegistry, rootfs_tar, tar_bytes


def _fresh_image(skiffd, tmp_path, repo):
    """An image of its own (docker import), so push/pull state of other
    tests' images cannot matter."""
    path = rootfs_tar(str(tmp_path / "img.tar"), {"/who": repo + "\n"})
    return _import(skiffd, path, repo)


def _import(skiffd, path, repo):
    with open(path, "rb") as f:
        r = skiffd.docker("import", "-", f"{repo}:src", input=f.read(), text=False)
    assert r.returncode == 0, r.stderr
    return skiffd.client.images.get(f"{repo}:src")


def test_sdk_images(skiffd):
    c = skiffd.client
    tags = [t for im in c.images.list() for t in im.tags]
    assert "busybox:latest" in tags
    im = c.images.get("busybox")
    assert im.id.startswith("sha256:") and "busybox:latest" in im.tags
    assert im.history() and im.history()[0]["Id"] == im.id
    assert im.tag("h5b-sdk/tagged", "v2") is True
    try:
        assert "h5b-sdk/tagged:v2" in c.images.get("h5b-sdk/tagged:v2").tags
        c.images.remove("h5b-sdk/tagged:v2")
        with pytest.raises(docker.errors.ImageNotFound):
            c.images.get("h5b-sdk/tagged:v2")
    finally:
        try:
            c.images.remove("h5b-sdk/tagged:v2")
        except docker.errors.NotFound:
            pass
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get("no-such-image-sdk")
    data = b"".join(im.save(named=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert "manifest.json" in tf.getnames()


def test_sdk_volumes(skiffd):
    c = skiffd.client
    v = c.volumes.create("h5b-sdk-vol", labels={"k": "v"})
    try:
        assert v.name == "h5b-sdk-vol" and v.attrs["Driver"] == "local"
        assert [x.name for x in c.volumes.list(filters={"label": "k=v"})] == ["h5b-sdk-vol"]
        assert c.volumes.get("h5b-sdk-vol").attrs["Labels"] == {"k": "v"}
        out = c.containers.run("busybox", ["sh", "-c", "echo sdk > /data/f; cat /data/f"],
                               volumes={"h5b-sdk-vol": {"bind": "/data", "mode": "rw"}},
                               network_mode="none", remove=True)
        assert out == b"sdk\n"
        ctr = c.containers.create("busybox", "true", volumes=["h5b-sdk-vol:/data"])
        try:
            with pytest.raises(docker.errors.APIError) as ei:
                v.remove()
            assert ei.value.status_code == 409
        finally:
            ctr.remove()
        v.remove()
        with pytest.raises(docker.errors.NotFound):
            c.volumes.get("h5b-sdk-vol")
    finally:
        try:
            c.volumes.get("h5b-sdk-vol").remove(force=True)
        except docker.errors.NotFound:
            pass
    res = c.volumes.prune()
    assert "VolumesDeleted" in res and "SpaceReclaimed" in res


def test_sdk_archive(skiffd):
    c = skiffd.client
    ctr = c.containers.run("busybox", ["sleep", "300"], detach=True, network_mode="none")
    try:
        assert ctr.put_archive("/tmp", tar_bytes({"sdk.txt": b"put by sdk"}))
        assert ctr.exec_run(["cat", "/tmp/sdk.txt"]).output == b"put by sdk"
        bits, stat = ctr.get_archive("/tmp/sdk.txt")
        assert stat["name"] == "sdk.txt" and stat["size"] == 10
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
            assert tf.extractfile("sdk.txt").read() == b"put by sdk"
        with pytest.raises(docker.errors.NotFound):
            ctr.get_archive("/nope")
    finally:
        ctr.remove(force=True)


def test_sdk_networks(skiffd):
    c = skiffd.client
    net = c.networks.create("h5b-sdk-net", driver="bridge", labels={"a": "b"})
    try:
        assert c.networks.get(net.id).name == "h5b-sdk-net"
        assert [n.name for n in c.networks.list(names=["h5b-sdk-net"])] == ["h5b-sdk-net"]
        ctr = c.containers.run("busybox", ["sleep", "300"], detach=True)
        try:
            net.connect(ctr)
            net.reload()
            assert ctr.id in net.attrs["Containers"]
            net.disconnect(ctr)
            net.reload()
            assert not net.attrs["Containers"]
        finally:
            ctr.remove(force=True)
    finally:
        net.remove()
    with pytest.raises(docker.errors.NotFound):
        c.networks.get("h5b-sdk-net")


def test_sdk_pull_from_local_registry(skiffd, tmp_path):
    reg = NetnsRegistry(skiffd, str(tmp_path / "reg")).start()
    c = skiffd.client
    ref = f"{reg.host}/h5b/sdk"
    src = _fresh_image(skiffd, tmp_path, "h5b-sdk/pullsrc")
    try:
        src.tag(ref, "1")
        for line in c.images.push(ref, "1", stream=True, decode=True):
            assert "error" not in line, line
        c.images.remove(f"{ref}:1")
        im = c.images.pull(ref, tag="1")
        assert f"{ref}:1" in im.tags
        assert im.id == src.id
        with pytest.raises(docker.errors.NotFound):
            c.images.pull(f"{reg.host}/h5b/absent", tag="1")
    finally:
        reg.stop()
        for r in (f"{ref}:1", "h5b-sdk/pullsrc:src"):
            try:
                c.images.remove(r, force=True)
            except docker.errors.NotFound:
                pass


def test_sdk_registry_data(skiffd, tmp_path):
    """GET /distribution/{name}/json through docker-py's get_registry_data."""
    reg = NetnsRegistry(skiffd, str(tmp_path / "reg")).start()
    c = skiffd.client
    ref = f"{reg.host}/h5b/dist:1"
    src = _fresh_image(skiffd, tmp_path, "h5b-sdk/distsrc")
    try:
        src.tag(ref)
        for line in c.images.push(ref, stream=True, decode=True):
            assert "error" not in line, line
        rd = c.images.get_registry_data(ref)
        assert rd.id.startswith("sha256:")
        assert rd.has_platform("linux/amd64") or rd.has_platform("linux/arm64")
        with pytest.raises(docker.errors.NotFound):
            c.images.get_registry_data(f"{reg.host}/h5b/nothing:1")
    finally:
        reg.stop()
        for r in (ref, "h5b-sdk/distsrc:src"):
            try:
                c.images.remove(r, force=True)
            except docker.errors.NotFound:
                pass
