import pytest

from skiff import errors
from skiff.image import manifest as mf
from skiff.image import reference
from skiff.storage.snapshots import chain_ids


@pytest.mark.parametrize("ref,name,tag,digest", [
    ("busybox", "busybox", "latest", None),
    ("busybox:1.36", "busybox", "1.36", None),
    ("docker.io/library/busybox:latest", "busybox", "latest", None),
    ("docker.io/someone/app", "someone/app", "latest", None),
    ("localhost:5000/a/b:v1", "localhost:5000/a/b", "v1", None),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app", "latest", None),
    ("busybox@sha256:" + "a" * 64, "busybox", None, "sha256:" + "a" * 64),
])
def test_parse(ref, name, tag, digest):
    r = reference.parse(ref)
    assert (r.name, r.tag, r.digest) == (name, tag, digest)


@pytest.mark.parametrize("bad", ["", "UPPER", "a:b:c", "busybox:", "-x", "a//b", "x@sha256:zz",
                                 "busybox:" + "t" * 200])
def test_parse_invalid(bad):
    with pytest.raises(errors.InvalidArgument, match="invalid reference format"):
        reference.parse(bad)


def test_chain_ids_match_docker():
    # Docker's definition: chain(n) = sha256(chain(n-1) + " " + diff(n))
    import hashlib
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


def test_changes_all_instructions():
    cfg = mf.parse_changes([
        'CMD ["echo", "hi"]', "ENTRYPOINT /entry.sh", "ENV A=1 B=two", "ENV C three",
        "WORKDIR /app", "WORKDIR sub", "USER nobody", "EXPOSE 80 53/udp",
        'LABEL a=b "c d"=e', 'VOLUME ["/data", "/logs"]', "STOPSIGNAL SIGTERM",
    ], {"Env": ["A=0", "PATH=/bin"], "Cmd": ["sh"]})
    assert cfg["Cmd"] == ["echo", "hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/entry.sh"]
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two", "C=three"]
    assert cfg["WorkingDir"] == "/app/sub" and cfg["User"] == "nobody"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}}
    assert cfg["StopSignal"] == "SIGTERM"


def test_changes_refuse_non_change_instructions():
    with pytest.raises(errors.InvalidArgument, match="run is not a valid change command"):
        mf.parse_changes(["RUN rm -rf /"], {})
    with pytest.raises(errors.InvalidArgument, match="unknown instruction: BOGUS"):
        mf.parse_changes(["BOGUS x"], {})


def test_pick_platform():
    ms = [{"digest": "a", "platform": {"os": "linux", "architecture": "arm64"}},
          {"digest": "b", "platform": {"os": "linux", "architecture": "amd64"}}]
    assert mf.pick_platform(ms, {"os": "linux", "architecture": "amd64"})["digest"] == "b"
    assert mf.pick_platform(ms, {"os": "linux", "architecture": "s390x"}) is None
