import os

import pytest

from skiff import errors
from skiff.engine.volumes import VolumeStore


@pytest.fixture
def store(tmp_path):
    return VolumeStore(str(tmp_path / "volumes"))


def test_create_inspect_list(store, tmp_path):
    v = store.create("data", labels={"team": "a"})
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"] == str(tmp_path / "volumes/data/_data")
    assert os.path.isdir(v["Mountpoint"])
    assert v["Labels"] == {"team": "a"} and v["CreatedAt"]
    assert store.create("data") == store.inspect("data")  # idempotent, as Docker
    anon = store.create()
    assert len(anon["Name"]) == 64
    names = [x["Name"] for x in store.list_json()["Volumes"]]
    assert sorted(names) == sorted(["data", anon["Name"]])
    assert [x["Name"] for x in store.list_json({"label": ["team=a"]})["Volumes"]] == ["data"]
    assert [x["Name"] for x in store.list_json('{"name": ["dat"]}')["Volumes"]] == ["data"]
    with pytest.raises(errors.NotFound, match="get nope: no such volume"):
        store.inspect("nope")
    with pytest.raises(errors.InvalidArgument, match="includes invalid characters"):
        store.create("../etc")
    with pytest.raises(errors.NotFound, match='plugin "nfs" not found'):
        store.create("x", driver="nfs")
    with pytest.raises(errors.InvalidArgument, match='invalid option: "bogus"'):
        store.create("xx", options={"bogus": "1"})
    with pytest.raises(errors.InvalidArgument, match='create xx: missing required option: "device"'):
        store.create("xx", options={"type": "tmpfs"})
    with pytest.raises(errors.InvalidArgument, match="quota size requested but no quota support"):
        store.create("xx", options={"size": "1m"})
    assert "xx" not in store.names()
    # driver options are kept and shown; the mount happens at container start
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert store.create("withopts", options=opts)["Options"] == opts
    assert store.needs_mount("withopts") and not store.needs_mount("data")


def test_in_use_rm_prune(store):
    store.create("keep")
    store.create("busy")
    anon = store.create()["Name"]
    store.add_user("busy", "c1")
    dangling = [x["Name"] for x in store.list_json({"dangling": ["true"]})["Volumes"]]
    assert "busy" not in dangling and "keep" in dangling
    with pytest.raises(errors.Conflict, match=r"remove busy: volume is in use - \[c1\]"):
        store.remove("busy")
    with pytest.raises(errors.Conflict):
        store.remove("busy", force=True)
    # prune: only anonymous ones unless all=true
    assert store.prune()["VolumesDeleted"] == [anon]
    assert store.prune({"all": ["true"]})["VolumesDeleted"] == ["keep"]
    assert store.release("c1") == []
    store.remove("busy")
    assert store.names() == []
    store.remove("busy", force=True)  # missing + force: no error
    with pytest.raises(errors.NotFound):
        store.remove("busy")


def test_in_use_callback_and_release_anonymous(store):
    store.create("v1")
    store.in_use = lambda name: ["c9"] if name == "v1" else []
    with pytest.raises(errors.Conflict):
        store.remove("v1")
    store.in_use = None
    a = store.create()["Name"]
    store.add_user(a, "c2")
    assert store.release("c2", remove_anonymous=True) == [a]


def test_release_ignores_the_leaving_container_in_callback(store):
    a = store.create()["Name"]
    store.add_user(a, "c3")
    store.in_use = lambda name: ["c3"]  # an engine still listing the container
    assert store.release("c3", remove_anonymous=True) == [a]
