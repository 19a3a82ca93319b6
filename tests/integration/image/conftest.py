import os
import shutil
import tempfile

import pytest

from skiff.image.service import ImageService
from skiff.testing.images import make_busybox_archive


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("bbarchive") / "busybox.tar")
    make_busybox_archive(p)
    return p


@pytest.fixture
def images(tmp_path):
    """A fresh ImageService; every container layer it made is unmounted and
    removed afterwards, even when the test failed."""
    svc = ImageService(str(tmp_path / "root"))
    yield svc
    for cid in svc.storage.container_ids():
        try:
            svc.remove_container(cid)
        except Exception:
            pass
    # any mount left under the root (a test's own targets)
    root = os.path.realpath(str(tmp_path))
    with open("/proc/self/mountinfo") as f:
        mps = [l.split()[4] for l in f if l.split()[4].startswith(root + "/")]
    from skiff import sys as ksys
    for mp in sorted(mps, key=len, reverse=True):
        try:
            ksys.umount(mp, ksys.MNT_DETACH)
        except OSError:
            pass


@pytest.fixture
def busybox(images, busybox_archive):
    with open(busybox_archive, "rb") as f:
        images.load(f)
    return images.get("busybox:latest")


@pytest.fixture
def mounted(images):
    """mounted(cid, image) → merged dir of a new container layer."""
    def make(cid, image):
        images.prepare_container(cid, image)
        return images.mount_container(cid)
    return make
