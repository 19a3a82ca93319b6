"""Registry authentication: WWW-Authenticate challenges, Docker's
config.json credential store (``auths``, ``credsStore``, ``credHelpers``
running ``docker-credential-<name>``), and a cache of bearer tokens.

The token flow itself (GET realm?service=&scope=, optionally with basic
credentials; POST for identity tokens) runs in :mod:`skiff.registry.client`,
which owns the HTTP transport.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass

from ..errors import InvalidArgument, Unauthorized

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


# -- challenges ----------------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    scheme: str                 # "bearer" or "basic" (lower case)
    params: dict

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*,?')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(headers: list[str] | str) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235, as registries send
    them: ``Bearer realm="…",service="…",scope="…"`` or ``Basic realm="…"``).
    Several headers, or several challenges in one header, are all returned."""
    if isinstance(headers, str):
        headers = [headers]
    out: list[Challenge] = []
    for h in headers:
        pos = 0
        while pos < len(h):
            m = _SCHEME_RE.match(h, pos)
            if not m:
                break
            scheme = m.group(1).lower()
            pos = m.end()
            params: dict[str, str] = {}
            while pos < len(h):
                pm = _PARAM_RE.match(h, pos)
                if not pm:
                    break
                # A token followed by a space and another token is the next scheme.
                key, val = pm.group(1).lower(), pm.group(2)
                if val.startswith('"'):
                    val = re.sub(r"\\(.)", r"\1", val[1:-1])
                params[key] = val
                pos = pm.end()
            while pos < len(h) and h[pos] in ", ":
                pos += 1
            out.append(Challenge(scheme, params))
    return out


# -- credentials ---------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""     # refresh token (OAuth2)
    registry_token: str = ""     # a bearer token to send as-is

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    @classmethod
    def from_auth_config(cls, d: dict | None) -> "Credentials":
        """From Docker's AuthConfig (the X-Registry-Auth JSON)."""
        if not d:
            return cls()
        g = {k.lower(): v for k, v in d.items()}
        user, pw = g.get("username") or "", g.get("password") or ""
        if not user and g.get("auth"):
            user, pw = decode_auth(g["auth"])
        return cls(user, pw, g.get("identitytoken") or "", g.get("registrytoken") or "")


def decode_auth(s: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(s + "=" * (-len(s) % 4)).decode()
    except Exception:  # noqa: BLE001
        raise InvalidArgument("invalid auth configuration file") from None
    user, sep, pw = raw.partition(":")
    if not sep:
        raise InvalidArgument("invalid auth configuration file")
    return user, pw.strip("\x00")


def encode_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def server_key(server: str) -> str:
    """The key Docker's CLI uses in config.json for ``server``."""
    h = hostname_of(server)
    if h in _HUB_HOSTS or not server:
        return DOCKER_HUB_AUTH_KEY
    return h


def hostname_of(server: str) -> str:
    s = server
    for p in ("http://", "https://"):
        if s.startswith(p):
            s = s[len(p):]
    return s.split("/", 1)[0]


def default_config_path() -> str:
    d = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


class CredentialStore:
    """Docker's config.json: read and write credentials the way the docker
    CLI does, including credential helpers."""

    def __init__(self, path: str | None = None):
        self.path = path or default_config_path()

    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise InvalidArgument(f"{self.path}: invalid JSON: {e}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict) -> None:
        import tempfile
        d = os.path.dirname(self.path) or "."
        os.makedirs(d, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".config.json.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def _helper_for(self, data: dict, key: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        h = helpers.get(key) or helpers.get(hostname_of(key))
        return h or data.get("credsStore") or None

    def get(self, server: str) -> Credentials:
        data = self._load()
        key = server_key(server)
        helper = self._helper_for(data, key)
        if helper:
            c = _helper_get(helper, key)
            if not c.empty:
                return c
        auths = data.get("auths") or {}
        entry = auths.get(key)
        if entry is None:
            for k, v in auths.items():
                if server_key(k) == key:
                    entry = v
                    break
        if not entry:
            return Credentials()
        user, pw = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            user, pw = decode_auth(entry["auth"])
        return Credentials(user, pw, entry.get("identitytoken", ""), entry.get("registrytoken", ""))

    def store(self, server: str, creds: Credentials) -> None:
        data = self._load()
        key = server_key(server)
        helper = self._helper_for(data, key)
        if helper:
            secret = creds.identity_token or creds.password
            user = "<token>" if creds.identity_token else creds.username
            _helper_run(helper, "store", json.dumps(
                {"ServerURL": key, "Username": user, "Secret": secret}))
            auths = data.setdefault("auths", {})
            auths[key] = {}
        else:
            entry = {"auth": encode_auth(creds.username, creds.password)}
            if creds.identity_token:
                entry = {"auth": encode_auth(creds.username, ""),
                         "identitytoken": creds.identity_token}
            data.setdefault("auths", {})[key] = entry
        self._save(data)

    def erase(self, server: str) -> bool:
        """Remove stored credentials; False when there were none."""
        data = self._load()
        key = server_key(server)
        found = False
        helper = self._helper_for(data, key)
        if helper:
            try:
                _helper_run(helper, "erase", key)
                found = True
            except Unauthorized:
                pass
        auths = data.get("auths") or {}
        for k in list(auths):
            if server_key(k) == key:
                del auths[k]
                found = True
        if found:
            self._save(data)
        return found


def _helper_run(helper: str, action: str, stdin: str) -> str:
    import subprocess
    prog = f"docker-credential-{helper}"
    try:
        p = subprocess.run([prog, action], input=stdin, capture_output=True, text=True,
                           timeout=60)
    except FileNotFoundError:
        raise Unauthorized(
            f'error getting credentials - err: exec: "{prog}": executable file not found '
            f"in $PATH, out: ``") from None
    if p.returncode != 0:
        out = (p.stdout or p.stderr).strip()
        if "credentials not found" in out.lower():
            return ""
        raise Unauthorized(f"error {action} credentials - err: exit status "
                           f"{p.returncode}, out: `{out}`")
    return p.stdout


def _helper_get(helper: str, key: str) -> Credentials:
    out = _helper_run(helper, "get", key)
    if not out.strip():
        return Credentials()
    try:
        d = json.loads(out)
    except ValueError:
        raise Unauthorized(f"error getting credentials - invalid output from "
                           f"docker-credential-{helper}") from None
    user, secret = d.get("Username", ""), d.get("Secret", "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


# -- token cache ---------------------------------------------------------------

class TokenCache:
    """Bearer tokens by (realm, service, scopes, user). A token is reused
    until shortly before it expires; registries that give no lifetime get
    60 s (the distribution spec's minimum)."""

    MIN_LIFETIME = 60

    def __init__(self):
        self._tokens: dict[tuple, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            hit = self._tokens.get(key)
            if hit and hit[1] > time.monotonic():
                return hit[0]
            self._tokens.pop(key, None)
            return None

    def put(self, key: tuple, token: str, expires_in: float | None) -> None:
        life = max(float(expires_in or 0), self.MIN_LIFETIME)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + life - 10)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKENS = TokenCache()
