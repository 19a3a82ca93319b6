import pytest

from skiff.errors import InvalidArgument
from skiff.registry.config import RegistryConfig
from skiff.registry.reference import parse


@pytest.mark.parametrize("s,full,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:2", "localhost:5000/a/b:2", "localhost:5000/a/b:2"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    ("ghcr.io/o/r:t", "ghcr.io/o/r:t", "ghcr.io/o/r:t"),
    ("Registry.Example.com/app", "Registry.Example.com/app:latest",
     "Registry.Example.com/app:latest"),
])
def test_normalized_like_docker(s, full, familiar):
    r = parse(s)
    assert str(r) == full
    assert r.familiar == familiar


def test_digest_reference_has_no_default_tag():
    d = "sha256:" + "a" * 64
    r = parse(f"busybox@{d}")
    assert r.tag is None and r.digest == d
    assert r.tag_or_digest == d
    assert str(r) == f"docker.io/library/busybox@{d}"
    r2 = parse(f"host:5000/x:1@{d}")
    assert (r2.domain, r2.path, r2.tag, r2.digest) == ("host:5000", "x", "1", d)


@pytest.mark.parametrize("bad", ["", "a b", "Busybox", "busybox:", ":tag", "a//b",
                                 "busybox@sha256:1234", "-x", "x/", "busybox:-bad",
                                 "a" * 64, "busybox@md5:" + "a" * 10])
def test_invalid_references(bad):
    with pytest.raises(InvalidArgument) as e:
        parse(bad)
    assert "invalid" in str(e.value)


def test_uppercase_message_is_dockers():
    with pytest.raises(InvalidArgument) as e:
        parse("Busybox")
    assert str(e.value) == ("invalid reference format: repository name (library/Busybox) "
                            "must be lowercase")


def test_endpoints_default_registry_and_mirrors():
    cfg = RegistryConfig(default_registry="127.0.0.1:5000",
                         mirrors=["http://127.0.0.1:6000"])
    eps = cfg.endpoints("docker.io")
    assert [e.base for e in eps] == ["http://127.0.0.1:6000", "https://127.0.0.1:5000"]
    assert eps[0].mirror and not eps[1].mirror
    # loopback is insecure by default: HTTPS without verification, then HTTP
    assert eps[1].verify is False and eps[1].fallback_http
    # pushes never go to a mirror
    assert [e.base for e in cfg.endpoints("docker.io", push=True)] == ["https://127.0.0.1:5000"]
    # other registries are not mirrored
    assert [e.base for e in cfg.endpoints("example.com")] == ["https://example.com"]
    assert cfg.endpoints("example.com")[0].verify


def test_without_default_registry_docker_io_is_registry_1():
    assert RegistryConfig().endpoints("docker.io")[0].host == "registry-1.docker.io"
    cfg = RegistryConfig.from_daemon_json({"default-registry": "docker.io"})
    assert cfg.endpoints("docker.io")[0].host == "registry-1.docker.io"


def test_insecure_registries():
    cfg = RegistryConfig.from_daemon_json({"insecure-registries": ["myreg:5000", "10.0.0.0/8"]})
    assert cfg.is_insecure("127.0.0.1:5000")          # Docker's default
    assert cfg.is_insecure("myreg:5000")
    assert not cfg.is_insecure("myreg:5001")
    assert cfg.is_insecure("10.1.2.3:443")
    assert not cfg.is_insecure("11.1.2.3")
    assert not cfg.is_insecure("example.com")
    strict = RegistryConfig(insecure_registries=[])
    assert not strict.is_insecure("127.0.0.1:5000")


def test_daemon_json_keys():
    cfg = RegistryConfig.from_daemon_json({"default-registry": "127.0.0.1:1234",
                                           "registry-mirrors": ["https://m.example"],
                                           "max-concurrent-downloads": 5,
                                           "max-concurrent-uploads": 2})
    assert cfg.default_registry == "127.0.0.1:1234"
    assert cfg.mirrors == ["https://m.example"]
    assert (cfg.max_concurrent_downloads, cfg.max_concurrent_uploads) == (5, 2)
    with pytest.raises(InvalidArgument):
        RegistryConfig.from_daemon_json({"max-concurrent-downloads": 0})


def test_proxy_choice(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example,10.0.0.0/8")
    cfg = RegistryConfig()
    assert cfg.proxy_for("https", "ghcr.io") == "http://proxy.example:3128"
    assert cfg.proxy_for("http", "ghcr.io") is None
    assert cfg.proxy_for("https", "internal.example:5000") is None
    assert cfg.proxy_for("https", "reg.corp.example") is None
    assert cfg.proxy_for("https", "10.1.2.3:5000") is None
    assert cfg.proxy_for("https", "127.0.0.1:5000") is None          # loopback: never
    assert cfg.proxy_for("https", "localhost:5000") is None
    d = RegistryConfig.from_daemon_json({"proxies": {"https-proxy": "http://p:1",
                                                     "no-proxy": "*"}})
    assert d.proxy_for("https", "ghcr.io") is None
    d = RegistryConfig.from_daemon_json({"proxies": {"https-proxy": "http://p:1"}})
    assert d.proxy_for("https", "ghcr.io") == "http://p:1"
