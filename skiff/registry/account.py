"""``login`` / ``logout``: check credentials against a registry (the
engine's ``POST /auth``) and keep them in Docker's config.json format (the
CLI's ``skiff login``/``logout``)."""

from __future__ import annotations

from ..errors import Unauthorized
from .auth import CredentialStore, Credentials, hostname_of, server_key, DOCKER_HUB_AUTH_KEY
from .client import Pool, RegistryError, Repository
from .config import RegistryConfig
from .reference import DOCKER_IO, Reference


def _domain(server: str) -> str:
    return DOCKER_IO if not server or server_key(server) == DOCKER_HUB_AUTH_KEY \
        else hostname_of(server)


def check_login(server: str, creds: Credentials | dict,
                config: RegistryConfig | None = None) -> dict:
    """Authenticate against ``server`` as Docker's daemon does for
    ``POST /auth``: ping ``/v2/``, then prove the credentials (a token for
    the account with no scope from a bearer realm, or ``GET /v2/`` with basic
    auth). Returns ``{"Status": "Login Succeeded", "IdentityToken": ""}``;
    raises Unauthorized with Docker's wording."""
    config = config or RegistryConfig()
    if isinstance(creds, dict):
        creds = Credentials.from_auth_config(creds)
    domain = _domain(server)
    pool = Pool(config)
    try:
        repo = Repository(Reference(domain, "library/login"), config, creds, actions="",
                          pool=pool, endpoints=config.endpoints(domain, push=True))
        repo.open()
        if any(c.scheme == "basic" for c in repo._challenges) and not creds.username:
            raise Unauthorized(f"Get \"{repo.endpoint.base}/v2/\": no basic auth credentials")
        try:
            with repo.request("GET", "/v2/") as r:
                r.read()
        except RegistryError as e:
            if e.http_status == 401:
                raise Unauthorized(f"login attempt to {repo.endpoint.base}/v2/ failed with "
                                   "status: 401 Unauthorized") from None
            raise
        return {"Status": "Login Succeeded", "IdentityToken": ""}
    finally:
        pool.close()


def login(server: str, username: str, password: str, *, config: RegistryConfig | None = None,
          config_path: str | None = None) -> dict:
    """Check the credentials, then store them (config.json, or the
    credential helper it names). Returns the daemon's /auth answer."""
    creds = Credentials(username, password)
    out = check_login(server, creds, config)
    CredentialStore(config_path or (config.auth_config_path if config else None)).store(
        server or DOCKER_HUB_AUTH_KEY, creds)
    return out


def logout(server: str, *, config_path: str | None = None) -> bool:
    """Remove stored credentials; False if there were none."""
    return CredentialStore(config_path).erase(server or DOCKER_HUB_AUTH_KEY)
