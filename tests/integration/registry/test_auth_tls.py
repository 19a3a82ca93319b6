"""TLS with a test CA, htpasswd basic auth and Docker Hub's bearer-token
flow (local registry + token service), login/logout."""

import json
import ssl

import pytest

from skiff import errors
from skiff.registry import check_login, login, logout, pull, push
from skiff.registry.auth import CredentialStore
from skiff.testing import registry as R

from .conftest import USERS


def small_image(text="hi\n"):
    return R.build_image([R.layer_tar({"hello.txt": text})])


def test_tls_needs_the_ca_unless_insecure(tls_registry, ca, images, config):
    ctx = ssl.create_default_context(cafile=ca.ca_crt)
    img = small_image()
    R.push_raw(tls_registry, "secure/app", img, context=ctx)
    name = f"{tls_registry.host}/secure/app"
    config.insecure_registries = []          # verify certificates even on loopback
    with pytest.raises(errors.SkiffError) as e:
        pull(images, name, config=config)
    assert "certificate" in str(e.value)
    assert images.list_json() == []
    # the CA in certs.d/<host:port>/ca.crt (Docker's layout) makes it trusted
    ca.install(config.certs_dir, tls_registry.host)
    got = pull(images, name, config=config)
    assert got.id == img["config"]


def test_tls_loopback_is_insecure_by_default(tls_registry, ca, images, tmp_path):
    from skiff.registry.config import RegistryConfig
    ctx = ssl.create_default_context(cafile=ca.ca_crt)
    img = small_image("insecure\n")
    R.push_raw(tls_registry, "app", img, context=ctx)
    cfg = RegistryConfig(certs_dir=str(tmp_path / "none"))
    assert pull(images, f"{tls_registry.host}/app", config=cfg).id == img["config"]


def test_basic_auth_pull_login_logout(basic_registry, images, config):
    img = small_image("basic\n")
    R.push_raw(basic_registry, "private/app", img, auth=("alice", USERS["alice"]))
    name = f"{basic_registry.host}/private/app"
    with pytest.raises(errors.Unauthorized) as e:
        pull(images, name, config=config, auth={})
    assert "no basic auth credentials" in str(e.value)
    with pytest.raises(errors.Unauthorized):
        pull(images, name, config=config, auth={"username": "alice", "password": "wrong"})
    assert images.list_json() == []
    got = pull(images, name, config=config,
               auth={"username": "alice", "password": USERS["alice"]})
    assert got.id == img["config"]

    # login checks and stores; a pull without explicit auth then uses the store
    with pytest.raises(errors.Unauthorized) as e:
        login(basic_registry.host, "alice", "nope", config=config)
    assert "401 Unauthorized" in str(e.value)
    assert CredentialStore(config.auth_config_path).get(basic_registry.host).empty
    out = login(basic_registry.host, "bob", USERS["bob"], config=config)
    assert out == {"Status": "Login Succeeded", "IdentityToken": ""}
    stored = json.load(open(config.auth_config_path))["auths"][basic_registry.host]
    assert stored == {"auth": "Ym9iOmJ1aWxkZXI="}           # base64("bob:builder")
    images.remove(name, force=True)
    assert pull(images, name, config=config).id == img["config"]
    assert logout(basic_registry.host, config_path=config.auth_config_path)
    with pytest.raises(errors.Unauthorized):
        pull(images, name + ":latest", config=config)


def test_bearer_token_flow(token_registry, token_service, images, config, messages):
    from skiff.registry.auth import Credentials
    name = f"{token_registry.host}/alice/app"
    # Docker Hub behaviour: anonymous users may pull, not push
    base = pull_target = small_image("token\n")  # noqa: F841
    with pytest.raises(errors.NotFound):
        pull(images, name, config=config)
    assert token_service.requests[-1]["user"] == ""
    assert token_service.requests[-1]["scopes"] == ["repository:alice/app:pull"]

    creds = {"username": "alice", "password": USERS["alice"]}
    R.seed(token_registry, "alice/app", base)
    anon = [r for r in token_service.requests if r["user"] == ""]
    assert anon[0]["granted"][0]["actions"] == ["pull"]
    token_service.requests.clear()
    got = pull(images, name, config=config, progress=messages)
    assert got.id == pull_target["config"]
    # the anonymous token of the first attempt is still valid: reused from the cache
    assert token_service.requests == []

    images.tag(name, f"{token_registry.host}/alice/copy", "v1")
    with pytest.raises(errors.Unauthorized) as e:
        push(images, f"{token_registry.host}/alice/copy:v1", config=config, auth={})
    assert "denied" in str(e.value) or "unauthorized" in str(e.value)
    token_service.requests.clear()
    digest = push(images, f"{token_registry.host}/alice/copy:v1", config=config, auth=creds)
    assert digest == pull_target["digest"]
    users = {r["user"] for r in token_service.requests}
    assert users == {"alice"}
    assert any("repository:alice/copy:pull,push" in r["scopes"] for r in token_service.requests)
    # login against the token service: good and bad passwords
    assert check_login(token_registry.host, Credentials("bob", USERS["bob"]),
                       config)["Status"] == "Login Succeeded"
    with pytest.raises(errors.Unauthorized) as e:
        check_login(token_registry.host, Credentials("bob", "bad"), config)
    assert "incorrect username or password" in str(e.value)


def test_client_certificate_from_certs_d(tmp_path, ca, images, config):
    """certs.d/<host:port>/ holds ca.crt plus client.cert/client.key (Docker's
    layout); a registry that demands client certificates lets skiff in."""
    import shutil as sh
    with R.Registry(str(tmp_path / "mtls"), tls=ca, client_ca=ca) as reg:
        crt, key = ca.client_cert("skiff")
        ctx = ssl.create_default_context(cafile=ca.ca_crt)
        ctx.load_cert_chain(crt, key)
        img = small_image("mtls\n")
        R.push_raw(reg, "m/app", img, context=ctx)
        config.insecure_registries = []
        d = ca.install(config.certs_dir, reg.host)
        with pytest.raises(errors.SkiffError):
            pull(images, f"{reg.host}/m/app", config=config)      # no client certificate
        assert images.list_json() == []
        sh.copy(crt, f"{d}/client.cert")
        sh.copy(key, f"{d}/client.key")
        assert pull(images, f"{reg.host}/m/app", config=config).id == img["config"]
        # a key without its certificate is a configuration error, said clearly
        import os
        os.unlink(f"{d}/client.cert")
        images.remove(f"{reg.host}/m/app:latest")
        with pytest.raises(errors.InvalidArgument) as e:
            pull(images, f"{reg.host}/m/app", config=config)
        assert "missing client certificate client.cert for key client.key" in str(e.value)


def test_identity_token_oauth_flow(token_registry, token_service, images, config):
    """Credentials holding an identity (refresh) token: the client uses
    Docker's OAuth2 POST (grant_type=refresh_token) to get access tokens."""
    import urllib.parse
    import urllib.request
    img = small_image("oauth\n")
    R.seed(token_registry, "bob/app", img)
    form = urllib.parse.urlencode({"grant_type": "password", "username": "bob",
                                   "password": USERS["bob"], "service": token_service.service,
                                   "access_type": "offline", "client_id": "test"}).encode()
    with urllib.request.urlopen(urllib.request.Request(token_service.realm, data=form)) as r:
        refresh = json.loads(r.read())["refresh_token"]
    token_service.requests.clear()
    name = f"{token_registry.host}/bob/app"
    got = pull(images, name, config=config, auth={"identitytoken": refresh})
    assert got.id == img["config"]
    assert [r.get("grant") for r in token_service.requests] == ["refresh_token"]
    assert token_service.requests[0]["user"] == "bob"
    images.tag(name, f"{token_registry.host}/bob/copy", "1")
    push(images, f"{token_registry.host}/bob/copy:1", config=config,
         auth={"identitytoken": refresh})
    with pytest.raises(errors.Unauthorized):
        pull(images, f"{token_registry.host}/bob/other", config=config,
             auth={"identitytoken": "not-a-valid-refresh-token"})


def test_through_a_proxy(plain_registry, tls_registry, ca, images, config):
    """HTTPS goes through a CONNECT tunnel (TLS to the registry inside it),
    plain HTTP as absolute-form requests; proxy credentials come from the
    proxy URL. (Go and Docker never proxy loopback: the "loopback" knob lets
    this test do it.)"""
    plain = small_image("via proxy\n")
    R.push_raw(plain_registry, "px/plain", plain)
    secure = small_image("via tunnel\n")
    R.push_raw(tls_registry, "px/tls", secure, context=ssl.create_default_context(
        cafile=ca.ca_crt))
    ca.install(config.certs_dir, tls_registry.host)
    config.insecure_registries = [plain_registry.host]     # the TLS one is verified
    with R.Proxy(auth=("px", "secret")) as proxy:
        config.proxies = {"http": proxy.url, "https": proxy.url, "loopback": True}
        assert pull(images, f"{tls_registry.host}/px/tls", config=config).id == secure["config"]
        assert f"CONNECT {tls_registry.host}" in proxy.seen
        assert pull(images, f"{plain_registry.host}/px/plain", config=config).id == \
            plain["config"]
        assert any(s.startswith(f"GET http://{plain_registry.host}/v2/px/plain/blobs/")
                   for s in proxy.seen)
        config.proxies = {"https": f"http://127.0.0.1:{proxy.port}", "loopback": True}
        images.remove(f"{tls_registry.host}/px/tls:latest")
        with pytest.raises(errors.SkiffError) as e:      # no proxy credentials: 407
            pull(images, f"{tls_registry.host}/px/tls", config=config)
        assert "407" in str(e.value)
