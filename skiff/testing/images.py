"""Offline test images: a busybox image as a Docker archive (what
``docker save`` writes), built from Debian's static busybox, and a helper
that loads it into an ImageService as ``busybox:latest``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile

from skiff.testing import busybox

BUSYBOX_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
CREATED = "2024-01-01T00:00:00Z"


def layer_tar_from_dir(rootfs: str, dest: str) -> str:
    """Write the directory ``rootfs`` as an uncompressed layer tar; return
    its sha256 digest (the diff ID)."""
    from skiff.image.archive.diff import write_tree
    with open(dest, "wb") as f:
        digest, _ = write_tree(rootfs, f)
    return digest


def make_image_archive(dest: str, layer_dirs: list[str], repo_tags=("busybox:latest",),
                       cmd=("sh",), env=BUSYBOX_ENV, extra_config: dict | None = None,
                       history: list[dict] | None = None) -> str:
    """A Docker archive at ``dest`` with one layer per directory in
    ``layer_dirs`` (bottom first). Returns the image ID."""
    with tempfile.TemporaryDirectory(prefix="skiff-img-") as tmp:
        diff_ids, layer_files = [], []
        for i, d in enumerate(layer_dirs):
            p = os.path.join(tmp, f"layer{i}.tar")
            diff_ids.append(layer_tar_from_dir(d, p))
            layer_files.append(p)
        section = {"Env": list(env), "Cmd": list(cmd) if cmd else None}
        section.update(extra_config or {})
        config = {
            "architecture": "amd64", "os": "linux", "created": CREATED,
            "config": section,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history or [{"created": CREATED,
                                    "created_by": f"/bin/sh -c #(nop) ADD layer {i}"}
                                   for i in range(len(layer_dirs))],
        }
        cbytes = json.dumps(config, separators=(",", ":")).encode()
        cid = hashlib.sha256(cbytes).hexdigest()
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
            def add_bytes(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
                tf.addfile(ti, io.BytesIO(data))
            add_bytes(f"{cid}.json", cbytes)
            layer_paths = []
            for diff_id, p in zip(diff_ids, layer_files):
                name = f"{diff_id[7:]}/layer.tar"
                if name not in layer_paths:
                    ti = tf.gettarinfo(p, name)
                    ti.uname = ti.gname = ""
                    ti.uid = ti.gid = 0
                    with open(p, "rb") as f:
                        tf.addfile(ti, f)
                layer_paths.append(name)
            add_bytes("manifest.json", json.dumps([{
                "Config": f"{cid}.json", "RepoTags": list(repo_tags),
                "Layers": layer_paths}]).encode())
        return "sha256:" + cid


def make_busybox_archive(dest: str, repo_tags=("busybox:latest",)) -> str:
    """A one-layer busybox image (Cmd ["sh"], PATH set) as a Docker archive
    at ``dest``; returns the image ID."""
    with tempfile.TemporaryDirectory(prefix="skiff-bb-") as tmp:
        rootfs = busybox.make_rootfs(os.path.join(tmp, "rootfs"))
        return make_image_archive(dest, [rootfs], repo_tags=repo_tags)


def load_busybox(images, tag: str = "busybox:latest"):
    """Load the busybox image into ``images`` (an ImageService) as ``tag``;
    returns the Image."""
    with tempfile.TemporaryDirectory(prefix="skiff-bb-") as tmp:
        path = os.path.join(tmp, "busybox.tar")
        make_busybox_archive(path, repo_tags=(tag,))
        with open(path, "rb") as f:
            images.load(f)
    return images.get(tag)


def copy_tree(src: str, dst: str) -> str:
    shutil.copytree(src, dst, symlinks=True)
    return dst


if __name__ == "__main__":  # python -m skiff.testing.images OUT.tar [TAG]
    import sys
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m skiff.testing.images OUT.tar [REPO:TAG]")
    tags = (sys.argv[2],) if len(sys.argv) == 3 else ("busybox:latest",)
    print(make_busybox_archive(sys.argv[1], repo_tags=tags))
