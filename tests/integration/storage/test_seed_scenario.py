"""The seed's first chapter, driven through the storage API with real
overlayfs mounts: read-only image layers under one writable layer per
container; commit turns the writable layer into a new image layer."""

import json
import os
import subprocess

import pytest

from skiff import errors


def test_file_created_in_one_container_is_not_seen_in_another(images, busybox, mounted):
    a = mounted("ctr-a", "busybox:latest")
    b = mounted("ctr-b", "busybox:latest")
    with open(os.path.join(a, "root", "note.txt"), "w") as f:
        f.write("written in a\n")
    assert os.path.exists(os.path.join(a, "root", "note.txt"))
    assert not os.path.exists(os.path.join(b, "root", "note.txt"))
    # and the image's own layer is untouched
    base = images.storage.path(busybox.chain_ids[-1])
    assert not os.path.exists(os.path.join(base, "root", "note.txt"))
    # both containers see the image's files through their overlay
    assert os.path.exists(os.path.join(b, "bin", "busybox"))
    assert [c["Path"] for c in images.container_changes("ctr-a")] == ["/root", "/root/note.txt"]


def test_commit_adds_one_layer_sharing_the_base(images, busybox, mounted):
    a = mounted("ctr-a", "busybox:latest")
    with open(os.path.join(a, "root", "note.txt"), "w") as f:
        f.write("hello from the container\n")
    os.unlink(os.path.join(a, "etc", "hostname"))
    images.unmount_container("ctr-a")

    child = images.commit("ctr-a", busybox.id, author="seed <s@example.com>",
                          comment="add note", repo="seed", tag="v1",
                          changes=["CMD [\"cat\", \"/root/note.txt\"]", "ENV NOTE=1",
                                   "WORKDIR /root", "USER 1000", "EXPOSE 8080",
                                   "LABEL stage=seed", "VOLUME /data",
                                   "ENTRYPOINT [\"/bin/sh\", \"-c\"]"])
    assert child.id != busybox.id
    assert len(child.diff_ids) == len(busybox.diff_ids) + 1
    assert child.diff_ids[:-1] == busybox.diff_ids          # base layers shared
    assert [l["digest"] for l in child.layers[:-1]] == [l["digest"] for l in busybox.layers]
    assert child.chain_ids[:-1] == busybox.chain_ids        # same snapshots on disk
    assert child.repo_tags == ["seed:v1"]
    cfg = child.config["config"]
    assert cfg["Cmd"] == ["cat", "/root/note.txt"] and "NOTE=1" in cfg["Env"]
    assert cfg["WorkingDir"] == "/root" and cfg["User"] == "1000"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}} and cfg["Labels"] == {"stage": "seed"}
    assert cfg["Volumes"] == {"/data": {}} and cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert child.config["author"] == "seed <s@example.com>"
    ins = images.inspect_json("seed:v1")
    assert ins["Parent"] == busybox.id and ins["Comment"] == "add note"
    assert ins["RootFS"]["Layers"] == child.diff_ids
    hist = images.history_json("seed:v1")
    assert len(hist) == 2 and hist[0]["Id"] == child.id and hist[0]["Comment"] == "add note"
    assert hist[1]["Id"] == busybox.id and hist[1]["Tags"] == ["busybox:latest"]

    # a container of the child sees the file; the deleted file is gone
    c = mounted("ctr-child", "seed:v1")
    assert open(os.path.join(c, "root", "note.txt")).read() == "hello from the container\n"
    assert not os.path.exists(os.path.join(c, "etc", "hostname"))
    # a container of the parent still has the parent's view
    p = mounted("ctr-parent", busybox.id)
    assert os.path.exists(os.path.join(p, "etc", "hostname"))
    assert not os.path.exists(os.path.join(p, "root", "note.txt"))

    # the new layer is a real OCI layer: the deletion is a .wh. entry
    import tarfile
    with images.content.open(child.layers[-1]["digest"]) as f:
        names = tarfile.open(fileobj=f).getnames()
    assert "etc/.wh.hostname" in names and "root/note.txt" in names


def test_opaque_directory_survives_commit(images, busybox, mounted):
    a = mounted("ctr-a", "busybox:latest")
    import shutil
    shutil.rmtree(os.path.join(a, "etc"))
    os.mkdir(os.path.join(a, "etc"))
    with open(os.path.join(a, "etc", "only"), "w") as f:
        f.write("1")
    images.unmount_container("ctr-a")
    child = images.commit("ctr-a", None, repo="opaque")
    c = mounted("ctr-c", child.id)
    assert os.listdir(os.path.join(c, "etc")) == ["only"]


def test_remove_refused_while_in_use(images, busybox, mounted):
    mounted("ctr-a", "busybox:latest")
    with pytest.raises(errors.Conflict, match="must force"):
        images.remove("busybox:latest", in_use={busybox.id: ["ctr-a" + "0" * 59]})
    with pytest.raises(errors.Conflict, match="must be forced"):
        images.remove(busybox.id, in_use={busybox.id})
    out = images.remove("busybox:latest", force=True, in_use={busybox.id: ["ctr-a"]})
    assert {"Untagged": "busybox:latest"} in out
    # the container's lower layer stays on disk while the container exists
    assert os.path.isdir(images.storage.path(busybox.chain_ids[0]))
    images.remove_container("ctr-a")
    res = images.prune()
    assert {"Deleted": busybox.id} in res["ImagesDeleted"]
    assert images.storage.list() == []


def test_export_is_the_merged_filesystem(images, busybox, mounted, tmp_path):
    a = mounted("ctr-a", "busybox:latest")
    with open(os.path.join(a, "added"), "w") as f:
        f.write("x")
    os.unlink(os.path.join(a, "etc", "hostname"))
    images.unmount_container("ctr-a")
    out = tmp_path / "export.tar"
    with open(out, "wb") as f:
        images.export_container("ctr-a", f)
    names = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "added" in names and "bin/busybox" in names
    assert "etc/hostname" not in names and not any(".wh." in n for n in names)
    # import it back as a one-layer image
    with open(out, "rb") as f:
        im = images.import_tar(f, "imported", "1", changes=["CMD [\"sh\"]"])
    assert len(im.diff_ids) == 1 and im.config["config"]["Cmd"] == ["sh"]
    assert im.config["history"][-1]["comment"] == "Imported from -"


def test_many_layers_mount(images, tmp_path):
    """More layers than absolute paths fit in one mount option page."""
    import io
    from tests.unit.image.tarbuild import build, entry as E
    parent, chain = None, []
    for i in range(90):
        parent, _ = images.storage.apply(parent, io.BytesIO(build([E("file", f"f{i}", b"x")])))
        chain.append(parent)
    assert len(":".join(images.storage.lower_dirs(chain))) > 4000
    images.storage.prepare("ctr-deep", chain)
    m = images.storage.mount("ctr-deep")
    assert len([n for n in os.listdir(m) if n.startswith("f")]) == 90
    images.storage.unmount("ctr-deep")
    assert not os.path.ismount(m)


def test_gc_removes_orphan_snapshots_but_not_leased_ones(images, busybox):
    import io
    from tests.unit.image.tarbuild import build, entry as E
    raw = build([E("file", "orphan", b"x")])
    chain, res = images.storage.apply(busybox.chain_ids[-1], io.BytesIO(raw))
    # too young: kept (a pull may be about to register it)
    assert images.gc()["snapshots"] == []
    with images.content.lease() as lease:
        lease.add(res.digest)
        assert images.gc(min_age=0)["snapshots"] == []
    assert images.gc(min_age=0)["snapshots"] == [chain]
    assert images.storage.list() == busybox.chain_ids  # the image's own layer stays


def test_remove_container_detaches_mounts_made_elsewhere(images, busybox, tmp_path):
    images.prepare_container("ctr-x", busybox.id)
    target = tmp_path / "bundle" / "rootfs"
    images.mount_container("ctr-x", str(target))
    assert os.path.ismount(target)
    images.remove_container("ctr-x")
    assert not os.path.ismount(target)
    assert "ctr-x" not in images.storage.container_ids()


@pytest.mark.skipif(not __import__("shutil").which("runc"), reason="runc needed")
def test_seed_scenario_with_processes_in_runc(images, busybox, tmp_path):
    """The same scenario with real container processes (runc) writing and
    reading through each container's overlay root."""
    import shutil
    from skiff.testing.busybox import runc_default_spec
    state = tmp_path / "runc-state"

    def run_in(cid, script):
        bundle = tmp_path / f"bundle-{cid}"
        rootfs = bundle / "rootfs"
        bundle.mkdir(exist_ok=True)
        if not os.path.ismount(rootfs):
            if cid not in images.storage.container_ids():
                images.prepare_container(cid, busybox.id)
            images.mount_container(cid, str(rootfs))
        spec = runc_default_spec(["sh", "-c", script])
        spec["root"]["readonly"] = False
        spec["process"]["env"] = busybox.config["config"]["Env"]
        with open(bundle / "config.json", "w") as f:
            json.dump(spec, f)
        r = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle),
                            f"skiff-h2-{cid}-{os.getpid()}"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        subprocess.run(["runc", "--root", str(state), "delete", "-f",
                        f"skiff-h2-{cid}-{os.getpid()}"], capture_output=True)
        return r

    try:
        r = run_in("run-a", "echo made-in-a > /root/seed.txt && rm /etc/hostname && echo ok")
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
        r = run_in("run-b", "cat /root/seed.txt 2>&1; ls /etc/hostname")
        assert "No such file" in r.stdout and "/etc/hostname" in r.stdout
        images.unmount_container("run-a", str(tmp_path / "bundle-run-a" / "rootfs"))
        child = images.commit("run-a", busybox.id, repo="seed-run", tag="1")
        assert child.diff_ids[:-1] == busybox.diff_ids
        images.prepare_container("run-c", child.id)
        r = run_in("run-c", "cat /root/seed.txt; ls /etc/hostname 2>&1")
        assert r.stdout.splitlines()[0] == "made-in-a" and "No such file" in r.stdout
    finally:
        for cid in ("run-a", "run-b", "run-c"):
            mp = tmp_path / f"bundle-{cid}" / "rootfs"
            if os.path.ismount(mp):
                images.unmount_container(cid, str(mp))
        shutil.rmtree(state, ignore_errors=True)


def test_prune_keeps_tagged_used_and_parent_images(images, busybox, mounted):
    mounted("ctr-p", busybox.id)
    images.unmount_container("ctr-p")
    child = images.commit("ctr-p", None, changes=["LABEL keep=yes"])   # dangling
    images.remove_container("ctr-p")
    assert images.list_json({"dangling": ["true"]})[0]["Id"] == child.id
    # label filter that does not match: nothing pruned
    assert images.prune(filters={"label": ["keep=no"]})["ImagesDeleted"] is None
    out = images.prune(filters={"label": ["keep=yes"]})
    assert {"Deleted": child.id} in out["ImagesDeleted"]
    assert images.exists("busybox:latest")
    # prune -a with busybox in use by a container: kept
    images.prepare_container("ctr-q", busybox.id)
    assert images.prune(all=True, in_use={busybox.id: ["ctr-q"]})["ImagesDeleted"] is None
    images.remove_container("ctr-q")
    out = images.prune(all=True)
    assert {"Untagged": "busybox:latest"} in out["ImagesDeleted"]
    assert images.list_json() == [] and out["SpaceReclaimed"] > 0


def test_export_of_a_container_mounted_elsewhere_skips_submounts(images, busybox, tmp_path):
    """A running container: the engine has the root mounted in its bundle,
    with a volume mounted inside; export uses that mount and leaves the
    volume out, as Docker does."""
    from skiff import sys as ksys
    images.prepare_container("ctr-run", busybox.id)
    rootfs = tmp_path / "bundle" / "rootfs"
    images.mount_container("ctr-run", str(rootfs))
    (rootfs / "in-container").write_text("1")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "volume-file").write_text("v")
    os.makedirs(rootfs / "data")
    ksys.mount(str(vol), str(rootfs / "data"), None, ksys.MS_BIND)
    try:
        out = tmp_path / "e.tar"
        with open(out, "wb") as f:
            images.export_container("ctr-run", f)
        names = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True,
                               check=True).stdout.split()
        assert "in-container" in names and "data/" in names
        assert "data/volume-file" not in names
    finally:
        ksys.umount(str(rootfs / "data"))
        images.unmount_container("ctr-run", str(rootfs))
