"""Fixtures for image/storage tests: a private ImageService per test whose
container layers, mounts and files are all removed afterwards, even when
the test failed."""

import os
import shutil

import pytest

from skiff import sys as ksys
from skiff.image.service import ImageService
from skiff.testing.images import make_busybox_archive


def _detach_mounts_under(path: str) -> None:
    root = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        mps = [l.split()[4] for l in f if l.split()[4].startswith(root + "/")]
    for mp in sorted(mps, key=len, reverse=True):
        try:
            ksys.umount(mp, ksys.MNT_DETACH)
        except OSError:
            pass


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("bbarchive")
    p = str(d / "busybox.tar")
    make_busybox_archive(p)
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def images(tmp_path):
    svc = ImageService(str(tmp_path / "root"))
    yield svc
    for cid in svc.storage.container_ids():
        try:
            svc.remove_container(cid)
        except Exception:
            pass
    _detach_mounts_under(str(tmp_path))
    for name in os.listdir(tmp_path):
        p = os.path.join(tmp_path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)


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
