"""A registry that dies mid-pull, and a registry that serves a corrupted blob."""

import os
import time

import pytest

from skiff import errors
from skiff.registry import pull
from skiff.registry.progress import Progress
from skiff.testing import registry as R


def test_registry_stopped_mid_pull_then_resume(plain_registry, images, config, messages,
                                               monkeypatch):
    big = os.urandom(24 << 20)                      # incompressible: 24 MB on the wire
    img = R.build_image([R.layer_tar({"small.txt": "small\n"}),
                         R.layer_tar({"big.bin": big})])
    big_digest = img["layers"][1]
    big_size = len(img["blobs"][big_digest])
    R.push_raw(plain_registry, "faulty/app", img)
    name = f"{plain_registry.host}/faulty/app"
    config.max_download_attempts = 3
    killed = []

    monkeypatch.setattr(Progress, "INTERVAL", 0.0)     # a message per chunk read

    def progress(m):
        messages(m)
        if m.get("status") == "Downloading" and not killed:
            time.sleep(0.02)                       # a slow link: the registry dies mid-blob
        cur = (m.get("progressDetail") or {}).get("current", 0)
        if not killed and m.get("id") == big_digest[7:19] and m["status"] == "Downloading" \
                and cur > (2 << 20):
            plain_registry.kill()                  # SIGKILL: connections drop mid-blob
            killed.append(cur)

    with pytest.raises(errors.Unavailable) as e:
        pull(images, name, config=config, progress=progress)
    assert killed
    assert f"error pulling layer {big_digest}" in str(e.value)
    assert "connection refused" in str(e.value)
    # Docker-style retries were announced before giving up
    assert any(m["status"].startswith("Retrying in") for m in messages)
    # no partial image
    assert not images.exists(name)
    assert images.list_json() == []
    partial = [i for i in images.content.ingests_in_progress() if i["ref"] == big_digest]
    assert partial and 0 < partial[0]["offset"] < big_size
    offset = partial[0]["offset"]

    plain_registry.start()                         # same port, same storage
    messages.clear()
    got = pull(images, name, config=config, progress=messages)
    assert got.id == img["config"]
    first = next(m for m in messages
                 if m.get("id") == big_digest[7:19] and m["status"] == "Downloading")
    assert first["progressDetail"]["current"] >= offset      # resumed, not restarted
    assert images.content.has(big_digest)
    assert not [i for i in images.content.ingests_in_progress() if i["ref"] == big_digest]


def test_corrupted_blob_is_refused(plain_registry, images, config):
    img = R.build_image([R.layer_tar({"a.txt": "a" * 5000}), R.layer_tar({"b.txt": "b\n"})])
    R.push_raw(plain_registry, "corrupt/app", img)
    bad = img["layers"][0]
    path = plain_registry.blob_path(bad)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF                   # same size, different bytes
    with open(path, "wb") as f:
        f.write(data)
    name = f"{plain_registry.host}/corrupt/app"
    with pytest.raises(errors.DigestMismatch) as e:
        pull(images, name, config=config)
    assert str(e.value) == f"filesystem layer verification failed for digest {bad}"
    assert images.list_json() == []
    assert not images.content.has(bad)
    assert not [i for i in images.content.ingests_in_progress() if i["ref"] == bad]
    assert images.storage.list() == [] or img["diff_ids"][0] not in images.storage.list()


def test_cancelled_pull_leaves_no_image(plain_registry, images, config, monkeypatch):
    """The API client going away sets the cancel event: the pull stops with
    Docker's "context canceled", stores no image and keeps the partial blob."""
    import threading
    from skiff.registry.puller import Cancelled
    img = R.build_image([R.layer_tar({"big.bin": os.urandom(16 << 20)})])
    R.push_raw(plain_registry, "cancel/app", img)
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)
    cancel = threading.Event()

    def progress(m):
        if m.get("status") == "Downloading":
            time.sleep(0.01)
            if m["progressDetail"]["current"] > (1 << 20):
                cancel.set()

    with pytest.raises(Cancelled) as e:
        pull(images, f"{plain_registry.host}/cancel/app", config=config, progress=progress,
             cancel=cancel)
    assert str(e.value) == "context canceled"
    assert images.list_json() == []
    assert images.storage.list() == []
    assert [i for i in images.content.ingests_in_progress() if i["ref"] == img["layers"][0]]


def test_push_survives_a_registry_restart(tmp_path, plain_registry, images, config,
                                          monkeypatch):
    """The registry dies during an upload and comes back: the layer is
    uploaded again in a new session ("Retrying in …"), the push completes."""
    import threading
    from skiff.registry import push
    img = R.build_image([R.layer_tar({"big.bin": os.urandom(24 << 20)})])
    R.push_raw(plain_registry, "src/app", img)
    pull(images, f"{plain_registry.host}/src/app", config=config)
    with R.Registry(str(tmp_path / "target")) as target:
        images.tag(f"{plain_registry.host}/src/app", f"{target.host}/dst/app", "1")
        config.retry_delay = 0.3
        monkeypatch.setattr(Progress, "INTERVAL", 0.0)
        killed, msgs = [], []

        def progress(m):
            msgs.append(m)
            if m.get("status") == "Pushing" and not killed:
                time.sleep(0.01)
                if m["progressDetail"]["current"] > (4 << 20):
                    target.kill()
                    killed.append(1)
                    threading.Timer(0.2, target.start).start()

        digest = push(images, f"{target.host}/dst/app:1", config=config, progress=progress)
        assert killed and digest == img["digest"]
        assert any(m.get("status", "").startswith("Retrying in") for m in msgs)
        assert msgs[-2]["status"] == f"1: digest: {digest} size: {len(img['manifest'])}"
