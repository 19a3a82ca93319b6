"""docker save / docker load formats, including older layouts and hostile
archives."""

import hashlib
import io
import json
import os
import tarfile

import pytest

from skiff import errors
from tests.unit.image.tarbuild import build, entry as E


def _tar(members: dict) -> bytes:
    """members: name → bytes | ("symlink", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, v in members.items():
            ti = tarfile.TarInfo(name)
            if isinstance(v, tuple):
                ti.type, ti.linkname = tarfile.SYMTYPE, v[1]
                tf.addfile(ti)
            else:
                ti.size = len(v)
                tf.addfile(ti, io.BytesIO(v))
    return buf.getvalue()


def _config(diff_ids, cmd=("sh",)):
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": list(cmd)},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids},
                       "history": [{"created_by": "x"} for _ in diff_ids]}).encode()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_legacy_archive_with_symlinked_layer_files(images):
    base = build([E("file", "base.txt", b"base", uid=0, gid=0)])
    top = build([E("file", "top.txt", b"top", uid=0, gid=0)])
    c1 = _config([sha(base)])
    c2 = _config([sha(base), sha(top)], cmd=("cat", "/top.txt"))
    l1, l2 = sha(base)[7:], sha(top)[7:]
    archive = _tar({
        f"{l1}/layer.tar": base, f"{l1}/VERSION": b"1.0",
        "dup/layer.tar": ("symlink", f"../{l1}/layer.tar"),
        f"{l2}/layer.tar": top,
        f"{sha(c1)[7:]}.json": c1, f"{sha(c2)[7:]}.json": c2,
        "manifest.json": json.dumps([
            {"Config": f"{sha(c1)[7:]}.json", "RepoTags": ["old/base:1"],
             "Layers": [f"{l1}/layer.tar"]},
            {"Config": f"{sha(c2)[7:]}.json", "RepoTags": ["old/top:1", "old/top:latest"],
             "Layers": ["dup/layer.tar", f"{l2}/layer.tar"]}]).encode(),
        "repositories": b"{}",
    })
    lines = images.load(io.BytesIO(archive))
    assert lines == ["Loaded image: old/base:1", "Loaded image: old/top:1",
                     "Loaded image: old/top:latest"]
    top_img = images.get("old/top")
    assert top_img.id == sha(c2) and top_img.chain_ids[0] == images.get("old/base:1").chain_ids[0]
    assert len(images.storage.list()) == 2  # base layer unpacked once
    # save both and load them into a fresh store: same IDs
    out = io.BytesIO()
    images.save(["old/base:1", "old/top:1"], out)
    images.remove("old/base:1")
    images.remove("old/top:1")
    images.remove("old/top:latest")
    assert images.list_json() == [] and images.storage.list() == []
    lines = images.load(io.BytesIO(out.getvalue()))
    assert sorted(lines) == ["Loaded image: old/base:1", "Loaded image: old/top:1"]
    assert images.get("old/top:1").id == sha(c2)
    assert images.history_json("old/top:1")[0]["Id"] == sha(c2)


def test_save_by_id_has_no_tags(images):
    layer = build([E("file", "a", b"a", uid=0, gid=0)])
    c = _config([sha(layer)])
    archive = _tar({"l.tar": layer, "c.json": c, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}]).encode()})
    assert images.load(io.BytesIO(archive)) == [f"Loaded image ID: {sha(c)}"]
    out = io.BytesIO()
    images.save([sha(c)[7:19]], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        m = json.load(tf.extractfile("manifest.json"))
        idx = json.load(tf.extractfile("index.json"))
    assert m[0]["RepoTags"] is None and m[0]["Config"] == f"blobs/sha256/{sha(c)[7:]}"
    assert "annotations" not in idx["manifests"][0]


@pytest.mark.parametrize("case", ["symlink_to_host_file", "missing_layer", "diff_id_mismatch",
                                  "escaping_member", "config_layer_count", "not_an_archive"])
def test_bad_archives_rejected_without_leftovers(images, case, tmp_path):
    layer = build([E("file", "a", b"a", uid=0, gid=0)])
    c = _config([sha(layer)])
    secret = tmp_path / "secret.tar"
    secret.write_bytes(layer)
    members = {"c.json": c, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]).encode()}
    if case == "symlink_to_host_file":
        members["l.tar"] = ("symlink", str(secret))   # resolves inside the archive
    elif case == "missing_layer":
        pass
    elif case == "diff_id_mismatch":
        members["l.tar"] = build([E("file", "other", b"b", uid=0, gid=0)])
    elif case == "escaping_member":
        members["l.tar"] = layer
        members["../../escape"] = b"x"
    elif case == "config_layer_count":
        members["l.tar"] = layer
        members["c.json"] = _config([])
    data = _tar(members) if case != "not_an_archive" else b"garbage" * 100
    with pytest.raises(errors.InvalidArgument):
        images.load(io.BytesIO(data))
    assert images.list_json() == []
    assert images.storage.list() == []
    assert os.listdir(images.tmpdir) == [] and os.listdir(images.storage.tmpdir) == []
    assert not (tmp_path.parent / "escape").exists()


def test_load_over_an_existing_tag_says_so(images):
    def archive(content):
        layer = build([E("file", "a", content, uid=0, gid=0)])
        c = _config([sha(layer)])
        return c, _tar({"l.tar": layer, "c.json": c, "manifest.json": json.dumps(
            [{"Config": "c.json", "RepoTags": ["app:1"], "Layers": ["l.tar"]}]).encode()})
    c1, a1 = archive(b"one")
    c2, a2 = archive(b"two")
    assert images.load(io.BytesIO(a1)) == ["Loaded image: app:1"]
    assert images.load(io.BytesIO(a2)) == [
        f"The image app:1 already exists, renaming the old one with ID {sha(c1)} to empty "
        f"string", "Loaded image: app:1"]
    assert images.get("app:1").id == sha(c2)
    assert images.list_json({"dangling": "true"})[0]["Id"] == sha(c1)
    with pytest.raises(errors.ImageNotFound, match="No such image: app:2"):
        images.get("app:2")
