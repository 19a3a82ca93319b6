"""Interop with real tools, all local: skopeo and umoci read what skiff
writes (docker-archive, OCI archive, OCI layout); skiff loads what they
write."""

import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci")),
                                reason="skopeo and umoci are needed")


def run(*cmd, cwd=None):
    r = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    return r.stdout


def test_skopeo_reads_skiff_docker_archive_and_oci_archive(images, busybox, tmp_path):
    tar = tmp_path / "bb.tar"
    with open(tar, "wb") as f:
        images.save(["busybox:latest"], f)
    info = json.loads(run("skopeo", "inspect", f"docker-archive:{tar}"))
    assert info["Layers"] == busybox.diff_ids and info["Env"] == busybox.config["config"]["Env"]
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{tar}:latest"))
    assert info["Layers"] == [l["digest"] for l in busybox.layers]
    cfg = json.loads(run("skopeo", "inspect", "--config", f"docker-archive:{tar}"))
    assert cfg["config"]["Cmd"] == ["sh"]
    # copy it through skopeo into an OCI layout: every blob verifies
    run("skopeo", "copy", f"docker-archive:{tar}", f"oci:{tmp_path / 'copy'}:bb")
    assert json.load(open(tmp_path / "copy" / "index.json"))["manifests"]


def test_umoci_reads_skiff_oci_layout(images, busybox, mounted, tmp_path):
    a = mounted("ctr-a", "busybox:latest")
    with open(os.path.join(a, "marker"), "w") as f:
        f.write("from skiff\n")
    images.unmount_container("ctr-a")
    images.commit("ctr-a", None, repo="marked", tag="v1")
    layout = tmp_path / "layout"
    images.save_layout(["marked:v1"], str(layout))
    assert "v1" in run("umoci", "ls", "--layout", str(layout)).split()
    rootfs = tmp_path / "rootfs"
    run("umoci", "raw", "unpack", "--image", f"{layout}:v1", str(rootfs))
    assert (rootfs / "marker").read_text() == "from skiff\n"
    assert os.path.islink(rootfs / "bin" / "sh")
    stat = run("umoci", "stat", "--image", f"{layout}:v1", "--json")
    assert len(json.loads(stat)["history"]) == 2
    info = json.loads(run("skopeo", "inspect", f"oci:{layout}:v1"))
    assert len(info["Layers"]) == 2


def test_skiff_loads_umoci_layout(images, tmp_path):
    layout = tmp_path / "umoci"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:base")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:base", str(bundle))
    os.makedirs(bundle / "rootfs" / "etc")
    (bundle / "rootfs" / "etc" / "greeting").write_text("made by umoci\n")
    os.symlink("/etc/greeting", bundle / "rootfs" / "hello")
    run("umoci", "repack", "--image", f"{layout}:base", str(bundle))
    run("umoci", "config", "--image", f"{layout}:base", "--config.cmd", "cat",
        "--config.cmd", "/hello")
    lines = images.load_layout(str(layout), "base")
    assert lines and lines[0].startswith("Loaded image ID: sha256:")
    iid = lines[0].split()[-1]
    im = images.get(iid)
    assert im.config["config"]["Cmd"] == ["cat", "/hello"]
    images.tag(iid, "fromumoci", "base")
    images.prepare_container("ctr-u", "fromumoci:base")
    m = images.mount_container("ctr-u")
    assert open(os.path.join(m, "etc", "greeting")).read() == "made by umoci\n"
    assert os.readlink(os.path.join(m, "hello")) == "/etc/greeting"


def test_skiff_loads_skopeo_docker_archive_and_oci_layout(images, busybox, tmp_path):
    layout = tmp_path / "layout"
    images.save_layout(["busybox:latest"], str(layout))
    # skopeo re-writes it: gzip-compressed OCI layout, then a docker-archive
    run("skopeo", "copy", "--dest-compress", f"oci:{layout}:latest",
        f"oci:{tmp_path / 'gz'}:latest")
    run("skopeo", "copy", f"oci:{tmp_path / 'gz'}:latest",
        f"docker-archive:{tmp_path / 'sk.tar'}:example.com/team/bb:2")
    images.remove("busybox:latest")
    assert images.list_json() == [] and images.storage.list() == []
    # the gzip OCI layout: layers are kept compressed in the content store
    lines = images.load_layout(str(tmp_path / "gz"), "latest")
    im2 = images.get(lines[0].split()[-1])
    assert im2.layers[0]["mediaType"].endswith("gzip")
    assert im2.diff_ids == busybox.diff_ids
    images.remove(im2.id)
    with open(tmp_path / "sk.tar", "rb") as f:
        assert images.load(f) == ["Loaded image: example.com/team/bb:2"]
    im = images.get("example.com/team/bb:2")
    assert im.diff_ids == busybox.diff_ids and im.chain_ids == busybox.chain_ids
    images.prepare_container("ctr-s", im.id)
    m = images.mount_container("ctr-s")
    assert os.path.exists(os.path.join(m, "bin", "busybox"))
