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


@pytest.fixture
def containerd(tmp_path):
    """A private containerd (the image store under Docker 28's `docker
    load`): own socket, root and state; CRI off; stopped and removed after."""
    import signal
    import time
    if not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("containerd needed")
    d = tmp_path / "ctd"
    d.mkdir()
    sock = d / "ctd.sock"
    (d / "config.toml").write_text(f'''version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
''')
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists() and subprocess.run(["ctr", "-a", str(sock), "version"],
                                                capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("containerd did not start")
        yield lambda *args: run("ctr", "-a", str(sock), "-n", "skifftest", *args)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        root = os.path.realpath(str(d))
        with open("/proc/self/mountinfo") as f:
            mps = [l.split()[4] for l in f if l.split()[4].startswith(root + "/")]
        for mp in sorted(mps, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def test_containerd_imports_skiff_save(images, busybox, containerd, tmp_path):
    """`docker load` on Docker 28 is containerd's importer: it takes skiff's
    archive both as an OCI layout (index.json) and, with index.json removed,
    as a plain Docker archive (manifest.json)."""
    import tarfile
    tar = tmp_path / "bb.tar"
    with open(tar, "wb") as f:
        images.save(["busybox:latest"], f)
    out = containerd("images", "import", str(tar))
    assert "docker.io/library/busybox:latest" in out
    ls = containerd("images", "ls")
    assert "docker.io/library/busybox:latest" in ls and "linux/amd64" in ls
    containerd("images", "rm", "docker.io/library/busybox:latest")
    # the Docker-archive-only view of the same file
    legacy = tmp_path / "legacy.tar"
    with tarfile.open(tar) as src, tarfile.open(legacy, "w") as dst:
        for m in src.getmembers():
            if m.name not in ("index.json", "oci-layout"):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    out = containerd("images", "import", str(legacy))
    assert "busybox:latest" in out
    assert "busybox:latest" in containerd("images", "ls")


def test_skiff_loads_skopeo_oci_archive(images, busybox, tmp_path):
    layout = tmp_path / "layout"
    images.save_layout(["busybox:latest"], str(layout))
    arch = tmp_path / "oci.tar"
    run("skopeo", "copy", "--dest-compress", f"oci:{layout}:latest",
        f"oci-archive:{arch}:latest")
    images.remove("busybox:latest")
    lines = images.load(open(arch, "rb"))
    assert len(lines) == 1 and lines[0].startswith("Loaded image ID: sha256:")
    im = images.get(lines[0].split()[-1])
    assert im.diff_ids == busybox.diff_ids and im.layers[0]["mediaType"].endswith("gzip")
