import json
import os
import stat

import pytest

from skiff.errors import NotFound
from skiff.registry.auth import (DOCKER_HUB_AUTH_KEY, CredentialStore, Credentials,
                                 TokenCache, parse_challenges)
from skiff.registry.progress import human_size, render_bar
from skiff.registry.puller import parse_platform, select_manifest


def test_bearer_challenge():
    [c] = parse_challenges('Bearer realm="https://auth.docker.io/token",'
                           'service="registry.docker.io",scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.scope == "repository:library/busybox:pull"


def test_insufficient_scope_and_escapes():
    [c] = parse_challenges('Bearer realm="http://127.0.0.1:1/token",service="s",'
                           'scope="repository:a:pull,push repository:b:pull",'
                           'error="insufficient_scope",x="q\\"uote"')
    assert c.scope == "repository:a:pull,push repository:b:pull"
    assert c.params["error"] == "insufficient_scope"
    assert c.params["x"] == 'q"uote'


def test_basic_and_several_challenges():
    cs = parse_challenges(['Basic realm="basic-realm"', 'Bearer realm="r", service=s'])
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].realm == "basic-realm" and cs[1].service == "s"
    cs = parse_challenges('Basic realm="x", Bearer realm="y"')
    assert [(c.scheme, c.realm) for c in cs] == [("basic", "x"), ("bearer", "y")]


def test_config_json_store_get_erase(tmp_path):
    path = str(tmp_path / "cfg" / "config.json")
    st = CredentialStore(path)
    assert st.get("127.0.0.1:5000").empty
    st.store("127.0.0.1:5000", Credentials("alice", "s3cret"))
    st.store("docker.io", Credentials("bob", "pw"))
    data = json.load(open(path))
    assert set(data["auths"]) == {"127.0.0.1:5000", DOCKER_HUB_AUTH_KEY}
    assert data["auths"]["127.0.0.1:5000"]["auth"] == "YWxpY2U6czNjcmV0"  # base64 alice:s3cret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert st.get("127.0.0.1:5000") == Credentials("alice", "s3cret")
    assert st.get("https://index.docker.io/v1/").username == "bob"
    assert st.get("http://127.0.0.1:5000/").username == "alice"
    assert st.erase("127.0.0.1:5000") is True
    assert st.get("127.0.0.1:5000").empty
    assert st.erase("127.0.0.1:5000") is False
    assert st.get("docker.io").username == "bob"


def test_credential_helper(tmp_path, monkeypatch):
    """credHelpers runs docker-credential-<name> get/store/erase."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    db = tmp_path / "helperdb.json"
    helper = bindir / "docker-credential-testhelper"
    helper.write_text(f"""#!/usr/bin/python3
import json, sys
db = {str(db)!r}
try: data = json.load(open(db))
except Exception: data = {{}}
inp = sys.stdin.read()
act = sys.argv[1]
if act == "get":
    k = inp.strip()
    if k not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": k, "Username": data[k][0], "Secret": data[k][1]}}))
elif act == "store":
    d = json.loads(inp); data[d["ServerURL"]] = [d["Username"], d["Secret"]]
    json.dump(data, open(db, "w"))
elif act == "erase":
    data.pop(inp.strip(), None); json.dump(data, open(db, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"127.0.0.1:5000": "testhelper"}}))
    st = CredentialStore(str(path))
    assert st.get("127.0.0.1:5000").empty
    st.store("127.0.0.1:5000", Credentials("carol", "pw1"))
    assert json.load(open(db)) == {"127.0.0.1:5000": ["carol", "pw1"]}
    cfg = json.load(open(path))
    assert cfg["auths"]["127.0.0.1:5000"] == {}        # no secret in the file
    assert st.get("127.0.0.1:5000") == Credentials("carol", "pw1")
    assert st.erase("127.0.0.1:5000")
    assert json.load(open(db)) == {}
    # credsStore: the helper for every registry without a credHelpers entry
    path.write_text(json.dumps({"credsStore": "testhelper"}))
    st.store("docker.io", Credentials("dave", "pw2"))
    assert json.load(open(db)) == {DOCKER_HUB_AUTH_KEY: ["dave", "pw2"]}
    assert CredentialStore(str(path)).get("index.docker.io") == Credentials("dave", "pw2")


def test_token_cache_expiry():
    c = TokenCache()
    c.put(("r", "s", ("a",), ""), "tok", 3600)
    assert c.get(("r", "s", ("a",), "")) == "tok"
    assert c.get(("r", "s", ("b",), "")) is None
    c.put(("r", "s", ("b",), ""), "old", -100)        # floors at 60 s, minus a margin
    assert c.get(("r", "s", ("b",), "")) == "old"


def test_human_size_matches_go_units():
    assert human_size(0) == "0B"
    assert human_size(512) == "512B"
    assert human_size(32768) == "32.77kB"
    assert human_size(1048576) == "1.049MB"
    assert human_size(2_000_000_000) == "2GB"


def test_progress_bar_is_dockers():
    bar = render_bar(1048576, 4194304)
    assert bar.startswith("[============>" + " " * 38 + "] ")
    assert bar.endswith(" 1.049MB/4.194MB")
    full = render_bar(100, 100)
    assert full == "[" + "=" * 50 + ">] " + "    100B/100B"
    # time left appears once a start time is known
    assert render_bar(50, 100, start=100.0, now=110.0).endswith(" 10s")


def test_platform_selection():
    idx = {"manifests": [
        {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "sha256:v6", "platform": {"os": "linux", "architecture": "arm",
                                             "variant": "v6"}},
        {"digest": "sha256:v7", "platform": {"os": "linux", "architecture": "arm",
                                             "variant": "v7"}},
        {"digest": "sha256:a64", "platform": {"os": "linux", "architecture": "arm64",
                                              "variant": "v8"}},
    ]}
    assert select_manifest(idx, parse_platform("linux/amd64"))["digest"] == "sha256:amd"
    assert select_manifest(idx, parse_platform("linux/arm/v6"))["digest"] == "sha256:v6"
    assert select_manifest(idx, parse_platform("linux/arm"))["digest"] == "sha256:v7"
    assert select_manifest(idx, parse_platform("linux/arm64"))["digest"] == "sha256:a64"
    assert select_manifest(idx, parse_platform("linux/aarch64"))["digest"] == "sha256:a64"
    with pytest.raises(NotFound) as e:
        select_manifest(idx, parse_platform("linux/s390x"))
    assert str(e.value) == "no matching manifest for linux/s390x in the manifest list entries"
