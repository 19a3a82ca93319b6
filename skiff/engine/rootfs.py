"""The engine's seam to images and storage: skiff.image.service.ImageService
(which owns skiff.storage's snapshots and container layers)."""

import os

from skiff import errors


class Rootfs:
    def __init__(self, data_root: str, config=None):
        from skiff.image.service import ImageService
        self.data_root = data_root
        self.images = ImageService(data_root)
        self.default_registry = getattr(config, "default_registry", None)

    def resolve(self, ref: str) -> dict:
        """→ {"id", "config" (the image config's "config" object), "ref"}."""
        img = self.images.get(ref)
        full = img.config if isinstance(img.config, dict) else {}
        return {"id": img.id, "config": full.get("config") or {}, "ref": ref, "image": img}

    def prepare(self, cid: str, image_id: str):
        return self.images.prepare_container(cid, image_id)

    def mount(self, cid: str, target: str):
        os.makedirs(target, exist_ok=True)
        if os.path.ismount(target):
            return
        return self.images.mount_container(cid, target)

    def unmount(self, cid: str, target: str):
        if not os.path.ismount(target):
            return
        return self.images.unmount_container(cid, target)

    def remove(self, cid: str):
        try:
            return self.images.remove_container(cid)
        except errors.NotFound:
            return None

    def graph_driver(self, cid: str, merged: str) -> dict:
        try:
            opts = dict(kv.split("=", 1) for kv in self.images.storage.mount_options(cid).split(","))
        except (errors.SkiffError, OSError, ValueError):
            return {"Data": None, "Name": "overlay2"}
        return {"Data": {"LowerDir": opts.get("lowerdir", ""), "MergedDir": merged,
                         "UpperDir": opts.get("upperdir", ""), "WorkDir": opts.get("workdir", "")},
                "Name": "overlay2"}
