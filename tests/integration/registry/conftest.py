"""Real docker-registry instances on 127.0.0.1 (plain, TLS, htpasswd,
token), an image service rooted in tmp, and helpers to build test images."""

import shutil

import pytest

from skiff.testing import registry as R



@pytest.fixture(autouse=True)
def _need_tools():
    for tool in (R.REGISTRY_BIN, "openssl", "htpasswd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (install.sh --dev)")


@pytest.fixture
def plain_registry(tmp_path):
    reg = R.Registry(str(tmp_path / "registry")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return R.CA(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture
def tls_registry(tmp_path, ca):
    reg = R.Registry(str(tmp_path / "registry-tls"), tls=ca).start()
    yield reg
    reg.stop()


USERS = {"alice": "wonderland", "bob": "builder"}


@pytest.fixture
def basic_registry(tmp_path):
    reg = R.Registry(str(tmp_path / "registry-basic"), htpasswd=USERS).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def _token_keys(tmp_path_factory):
    return str(tmp_path_factory.mktemp("token"))


@pytest.fixture
def token_service(tmp_path):
    svc = R.TokenService(str(tmp_path / "token"), users=USERS).start()
    yield svc
    svc.stop()


@pytest.fixture
def token_registry(tmp_path, token_service):
    reg = R.Registry(str(tmp_path / "registry-token"), token=token_service).start()
    yield reg
    reg.stop()


@pytest.fixture
def images(tmp_path):
    from skiff.image.service import ImageService
    svc = ImageService(str(tmp_path / "data"))
    yield svc
    close = getattr(svc, "close", None)
    if close:
        close()


@pytest.fixture
def config(tmp_path):
    from skiff.registry.config import RegistryConfig
    from skiff.registry.auth import TOKENS
    TOKENS.clear()
    return RegistryConfig(certs_dir=str(tmp_path / "certs.d"), retry_delay=0.05,
                          auth_config_path=str(tmp_path / "docker-config.json"))


@pytest.fixture(scope="session")
def busybox_layer(busybox_rootfs):
    """The busybox rootfs as one uncompressed layer tar."""
    return R.layer_tar(rootfs=busybox_rootfs)


class Messages(list):
    def __call__(self, msg):
        self.append(dict(msg))

    def statuses(self, id=None):
        return [m.get("status") for m in self if id is None or m.get("id") == id]


@pytest.fixture
def messages():
    return Messages()
