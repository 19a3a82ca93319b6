"""Interop: skopeo pushes → skiff pulls; skiff pushes → skopeo and podman
pull, and podman runs the image. podman gets a private --root/--runroot
under tmp (removed afterwards) and runs with runc, no network."""

import json
import os
import shutil
import subprocess

import pytest

from skiff.registry import pull, push
from skiff.testing import registry as R
from skiff.testing.images import load_busybox

need_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
need_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, **kw)
    assert p.returncode == 0, f"{cmd}: {p.stdout}\n{p.stderr}"
    return p.stdout


@need_skopeo
def test_skopeo_push_skiff_pull(tmp_path, plain_registry, images, config, busybox_layer):
    img = R.build_image([busybox_layer, R.layer_tar({"etc/motd": "via skopeo\n"})], kind="oci")
    layout = R.oci_layout(str(tmp_path / "layout"), img, tag="v1")
    dest = f"{plain_registry.host}/skopeo/bb:v1"
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:v1",
         f"docker://{dest}"])
    got = pull(images, dest, config=config)
    assert got.id == img["config"]
    top = images.storage.path(got.chain_ids[-1])
    assert open(os.path.join(top, "etc/motd")).read() == "via skopeo\n"
    assert os.path.isfile(os.path.join(images.storage.path(got.chain_ids[0]), "bin/busybox"))


@pytest.fixture
def podman(tmp_path):
    import tempfile
    root = tmp_path / "podman-root"
    runroot = tempfile.mkdtemp(prefix="skp-", dir="/tmp")   # podman: runroot < 50 chars
    base = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver",
            "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            "--runtime", "runc"]
    import glob
    cgroups_before = set(glob.glob("/sys/fs/cgroup/*/libpod_parent"))
    yield base
    subprocess.run(base + ["rm", "-af"], capture_output=True, timeout=120)
    subprocess.run(base + ["rmi", "-af"], capture_output=True, timeout=120)
    subprocess.run(["umount", "-R", str(runroot)], capture_output=True)
    subprocess.run(["umount", "-R", str(root)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(runroot, ignore_errors=True)
    # podman's cgroupfs manager leaves libpod_parent/conmon behind: remove what it made
    for cg in set(glob.glob("/sys/fs/cgroup/*/libpod_parent")) - cgroups_before:
        for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


@need_skopeo
@need_podman
def test_skiff_push_skopeo_and_podman_pull_and_run(tmp_path, plain_registry, images, config,
                                                   messages, podman):
    load_busybox(images, "busybox:latest")            # built offline, as `docker load` would
    name = f"{plain_registry.host}/skiff/busybox:1"
    images.tag("busybox:latest", f"{plain_registry.host}/skiff/busybox", "1")
    digest = push(images, name, config=config, progress=messages)
    assert [m for m in messages if m.get("status") == "Pushed"]
    # like docker push: the image gains the RepoDigest, and a second push sends
    # the very same manifest (layers already there)
    assert f"{plain_registry.host}/skiff/busybox@{digest}" in images.get(name).repo_digests
    messages.clear()
    assert push(images, name, config=config, progress=messages) == digest
    assert "Layer already exists" in messages.statuses()

    # skopeo reads the manifest and copies every blob (it verifies digests)
    raw = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{name}"]))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert raw["layers"][0]["mediaType"].endswith("tar.gzip")   # compressed like docker push
    out = tmp_path / "copy"
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{name}",
         f"oci:{out}:1"])
    assert json.load(open(out / "index.json"))["manifests"]

    # podman pulls and runs it
    run(podman + ["pull", "--quiet", "--tls-verify=false", name])
    got = run(podman + ["image", "inspect", "--format", "{{.Digest}}", name]).strip()
    assert got == digest
    text = run(podman + ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
                         "--ulimit", "nproc=4096:4096", name, "sh", "-c",
                         "echo hello from $(busybox | head -1 | cut -d' ' -f1)"])
    assert text.strip() == "hello from BusyBox"
