import hashlib
import os

import pytest

from skiff import errors
from skiff.image.content import ContentStore, validate_digest


def dg(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def store(tmp_path):
    return ContentStore(str(tmp_path / "content"))


def test_write_verify_commit(store):
    data = b"hello world" * 1000
    w = store.writer("ref1", dg(data), len(data))
    assert w.offset == 0
    w.write(data)
    d = w.commit()
    assert d == dg(data)
    assert store.has(d)
    assert store.read(d) == data
    assert store.size(d) == len(data)
    assert store.path(d).endswith("blobs/sha256/" + d[7:])
    assert store.ingests_in_progress() == []


def test_digest_mismatch_leaves_nothing(store):
    w = store.writer("ref1", dg(b"other"), 5)
    w.write(b"hello")
    with pytest.raises(errors.DigestMismatch):
        w.commit()
    assert list(store.list()) == []
    assert store.ingests_in_progress() == []


def test_size_overflow_rejected(store):
    w = store.writer("r", None, 3)
    with pytest.raises(errors.DigestMismatch):
        w.write(b"abcd")
    w.abort()


def test_resume_after_interrupted_write(store):
    data = os.urandom(3 << 20)
    w = store.writer("layer-x", dg(data), len(data))
    w.write(data[:1000000])
    w.close()  # connection dropped
    assert store.ingests_in_progress()[0]["offset"] == 1000000
    w2 = store.writer("layer-x", dg(data), len(data))
    assert w2.offset == 1000000
    w2.write(data[w2.offset:])
    assert w2.commit() == dg(data)
    assert store.read(dg(data)) == data


def test_concurrent_writer_on_same_ref_refused(store):
    w = store.writer("same")
    with pytest.raises(errors.Unavailable):
        store.writer("same")
    w.abort()


def test_invalid_digest_never_reaches_a_path(store):
    for bad in ("sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64, ""):
        with pytest.raises(errors.InvalidArgument):
            store.path(bad)
    with pytest.raises(errors.InvalidArgument):
        validate_digest("sha256:" + "0" * 63)


def test_gc_keeps_roots_and_leased_blobs(store):
    a = store.add_bytes(b"a")
    b = store.add_bytes(b"b")
    with store.lease() as lease:
        c = store.add_bytes(b"c", lease=lease.name)
        w = store.writer("in-progress", lease=lease)  # a Lease object works too
        w.write(b"partial")
        removed = store.gc({a})
        assert removed == [b]
        assert store.has(a) and store.has(c)
        w.write(b" more")
        d = w.commit()
        assert store.gc({a}) == []
        assert store.has(d)
    assert sorted(store.gc({a})) == sorted([c, d])
    assert list(store.list()) == [a]


def test_missing_blob_is_not_found(store):
    with pytest.raises(errors.NotFound):
        store.read(dg(b"nope"))
