"""Fixtures shared by every test: offline busybox material and root gating."""

import os
import shutil
import subprocess

import pytest

from skiff.testing import busybox


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords or "/integration/" in str(item.fspath) \
                or "/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A read-only-by-convention busybox root filesystem (do not modify:
    copy it, or use ``busybox_bundle``)."""
    return busybox.make_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture
def make_bundle(tmp_path, busybox_rootfs):
    """``make_bundle(args, **kw)`` → path of a fresh OCI bundle (own copy of
    the busybox rootfs, runc's default config.json running ``args``)."""
    counter = [0]

    def make(args=None, **kw):
        counter[0] += 1
        return busybox.make_bundle(str(tmp_path / f"bundle{counter[0]}"), args,
                                   rootfs_src=busybox_rootfs, **kw)
    return make


@pytest.fixture
def busybox_bundle(make_bundle):
    return make_bundle(["sh"])


def have(tool):
    return shutil.which(tool) is not None


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)
