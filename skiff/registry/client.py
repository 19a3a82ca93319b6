"""The distribution API client: HTTP transport, endpoint choice, the auth
flow, manifests and blobs.

Transport choice: the standard library's ``http.client`` on a small pool of
keep-alive connections, driven from threads. The public API
(``skiff.registry.pull``/``push``) is synchronous and called from the
daemon's worker threads or from tests, so an asyncio client would need its
own loop per call; the hot paths (socket reads, SHA-256, zlib/zstd) all
release the GIL, so threads give real parallel transfers; and importing
http.client costs a few milliseconds against aiohttp's ~100 ms.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse

from ..errors import InvalidArgument, SkiffError, Unauthorized, Unavailable
from .auth import TOKENS, Challenge, Credentials, parse_challenges
from .config import Endpoint, RegistryConfig
from .reference import Reference

MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = ", ".join((MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST,
                             MT_DOCKER_MANIFEST, MT_DOCKER_V1_SIGNED, MT_DOCKER_V1))

READ_CHUNK = 1 << 20
TRANSIENT = (OSError, http.client.HTTPException, ssl.SSLError, socket.timeout)


class RegistryError(SkiffError):
    """An error answered by a registry: ``code`` is the distribution error
    code (MANIFEST_UNKNOWN, DENIED, …) and ``http_status`` its HTTP status."""

    def __init__(self, message: str, code: str = "", http_status: int = 0):
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.status = {401: 401, 403: 403, 404: 404}.get(http_status, 500)


class TransportError(Unavailable):
    """The registry could not be reached or the connection broke."""


def _registry_error(resp_status: int, body: bytes, what: str = "") -> RegistryError:
    code, msg = "", ""
    try:
        data = json.loads(body or b"{}")
        errs = data.get("errors") or []
        if errs:
            code = str(errs[0].get("code", ""))
            msg = f"{code.lower().replace('_', ' ')}: {errs[0].get('message', '')}"
        elif data.get("details"):
            msg = str(data["details"])
    except (ValueError, AttributeError):
        pass
    if not msg:
        msg = f"received unexpected HTTP status: {resp_status} {http.client.responses.get(resp_status, '')}".rstrip()
    return RegistryError(f"{what}{msg}", code, resp_status)


# -- connection pool -----------------------------------------------------------

class Response:
    def __init__(self, pool: "Pool", key: tuple, conn, resp: http.client.HTTPResponse):
        self._pool, self._key, self._conn, self._resp = pool, key, conn, resp
        self.status = resp.status
        self.headers = resp.headers

    def read(self, n: int = -1) -> bytes:
        return self._resp.read() if n < 0 else self._resp.read(n)

    def readinto(self, b) -> int:
        return self._resp.readinto(b)

    def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._resp.isclosed() or self._resp.length == 0:
            self._resp.close()
            if not self._resp.will_close:
                self._pool.put(self._key, conn)
                return
        conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Pool:
    def __init__(self, config: RegistryConfig):
        self.config = config
        self._idle: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def _new(self, scheme: str, host: str, verify: bool):
        t = self.config.connect_timeout
        proxy = self.config.proxy_for(scheme, host)
        if proxy is not None:
            pu = urllib.parse.urlsplit(proxy)
            phost = pu.hostname + (f":{pu.port}" if pu.port else "")
            pauth = {}
            if pu.username:
                import base64
                pauth["Proxy-Authorization"] = "Basic " + base64.b64encode(
                    f"{urllib.parse.unquote(pu.username)}:"
                    f"{urllib.parse.unquote(pu.password or '')}".encode()).decode()
        if scheme == "https":
            ctx = self.config.ssl_context(host, verify)
            if proxy is not None:           # CONNECT tunnel, TLS to the registry inside
                conn = http.client.HTTPSConnection(phost, timeout=t, context=ctx,
                                                   blocksize=READ_CHUNK)
                conn.set_tunnel(host, headers=pauth or None)
            else:
                conn = http.client.HTTPSConnection(host, timeout=t, context=ctx,
                                                   blocksize=READ_CHUNK)
        elif proxy is not None:             # plain HTTP: absolute-form requests to the proxy
            conn = http.client.HTTPConnection(phost, timeout=t, blocksize=READ_CHUNK)
            conn.skiff_proxy_headers = pauth
        else:
            conn = http.client.HTTPConnection(host, timeout=t, blocksize=READ_CHUNK)
        conn.connect()
        conn.sock.settimeout(self.config.read_timeout)
        return conn

    def put(self, key: tuple, conn) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def request(self, method: str, url: str, headers: dict | None = None,
                body=None, verify: bool = True) -> Response:
        """One request; GET and HEAD follow redirects (blob storage often
        answers 307 to a CDN), dropping Authorization when the host changes."""
        hdrs = dict(headers or {})
        for _ in range(10):
            r = self._request_once(method, url, hdrs, body, verify)
            if method not in ("GET", "HEAD") or r.status not in (301, 302, 303, 307, 308) \
                    or not r.headers.get("Location"):
                return r
            loc = urllib.parse.urljoin(url, r.headers["Location"])
            r.read()
            r.close()
            old, new = urllib.parse.urlsplit(url), urllib.parse.urlsplit(loc)
            if new.scheme not in ("http", "https"):
                raise TransportError(f"redirect to unsupported URL {loc!r}")
            if (old.scheme, old.netloc) != (new.scheme, new.netloc):
                hdrs.pop("Authorization", None)
                verify = new.scheme == "https" and not self.config.is_insecure(new.netloc)
            url = loc
        raise TransportError(f"{method} {url}: stopped after 10 redirects")

    def _request_once(self, method: str, url: str, headers: dict, body, verify: bool) -> Response:
        u = urllib.parse.urlsplit(url)
        scheme, host = u.scheme, u.netloc
        path = u.path + (("?" + u.query) if u.query else "")
        key = (scheme, host, verify)
        hdrs = {"User-Agent": self.config.user_agent}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            reused = False
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is not None:
                reused = True
            else:
                conn = self._new(scheme, host, verify)
            try:
                if hasattr(body, "seek") and attempt:
                    body.seek(0)
                pauth = getattr(conn, "skiff_proxy_headers", None)
                if pauth is not None:       # through an HTTP proxy: the full URL
                    conn.request(method, f"{scheme}://{host}{path}", body=body,
                                 headers={**hdrs, **pauth})
                else:
                    conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue          # a stale keep-alive connection: try a fresh one
                raise
            except BaseException:
                conn.close()
                raise
            return Response(self, key, conn, resp)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for c in conns:
                    c.close()
            self._idle.clear()


# -- a repository on a registry ------------------------------------------------

class Repository:
    """One repository on one registry (trying mirrors first for docker.io
    pulls), authenticated for ``actions`` ("pull" or "pull,push")."""

    def __init__(self, ref: Reference, config: RegistryConfig, creds: Credentials | None = None,
                 actions: str = "pull", pool: Pool | None = None,
                 endpoints: list[Endpoint] | None = None):
        self.ref = ref
        self.config = config
        self.creds = creds or Credentials()
        self.actions = actions
        self.pool = pool or Pool(config)
        self._endpoints = endpoints if endpoints is not None else config.endpoints(
            ref.domain, push="push" in actions)
        self.endpoint: Endpoint | None = None
        self._challenges: list[Challenge] = []
        self._extra_scopes: list[str] = []
        self._lock = threading.Lock()

    # -- endpoint and auth -------------------------------------------------

    @property
    def path(self) -> str:
        return self.ref.path

    def scopes(self) -> list[str]:
        if not self.actions:          # login: a token for the account, no repository
            return list(self._extra_scopes)
        return [f"repository:{self.path}:{self.actions}"] + self._extra_scopes

    def open(self) -> "Repository":
        """Ping the endpoints (``GET /v2/``) and keep the first that answers;
        its challenge tells how to authenticate."""
        errors = []
        for ep in self._endpoints:
            for cand in ([ep, Endpoint(ep.host, "http", mirror=ep.mirror,
                                       path_prefix=ep.path_prefix)]
                         if ep.fallback_http else [ep]):
                try:
                    with self.pool.request("GET", cand.base + "/v2/",
                                           verify=cand.verify) as r:
                        r.read()
                        if r.status == 401:
                            self._challenges = parse_challenges(
                                r.headers.get_all("WWW-Authenticate") or [])
                        elif r.status >= 400:
                            raise TransportError(
                                f"Get \"{cand.base}/v2/\": received unexpected HTTP status: "
                                f"{r.status}")
                    self.endpoint = cand
                    return self
                except ssl.SSLError as e:
                    if ep.fallback_http and cand.scheme == "https":
                        continue
                    errors.append(TransportError(
                        f"Get \"{cand.base}/v2/\": tls: {_ssl_reason(e)}"))
                except (OSError, http.client.HTTPException) as e:
                    errors.append(TransportError(
                        f"Get \"{cand.base}/v2/\": {_os_reason(e, cand.host)}"))
                    break
                except TransportError as e:
                    errors.append(e)
                    break
        raise errors[-1] if errors else TransportError("no registry endpoint")

    def add_scope(self, scope: str) -> None:
        if scope not in self._extra_scopes:
            self._extra_scopes.append(scope)

    def _auth_header(self, challenges: list[Challenge] | None = None,
                     fresh: bool = False) -> str | None:
        chs = challenges or self._challenges
        if not chs:
            return None
        bearer = next((c for c in chs if c.scheme == "bearer"), None)
        if bearer is not None:
            scopes = self.scopes()
            if bearer.scope:
                for s in bearer.scope.split(" "):
                    if s and s not in scopes:
                        scopes.append(s)
            return "Bearer " + self._token(bearer, scopes, fresh)
        basic = next((c for c in chs if c.scheme == "basic"), None)
        if basic is not None:
            if not self.creds.username:
                return None
            import base64
            return "Basic " + base64.b64encode(
                f"{self.creds.username}:{self.creds.password}".encode()).decode()
        return None

    def _token(self, ch: Challenge, scopes: list[str], fresh: bool) -> str:
        if self.creds.registry_token:
            return self.creds.registry_token
        realm = ch.realm
        if not realm:
            raise Unauthorized("invalid bearer challenge: no realm")
        who = ""
        if not self.creds.empty:   # tokens are per credential, not per user name
            import hashlib
            who = hashlib.sha256(f"{self.creds.username}\0{self.creds.password}\0"
                                 f"{self.creds.identity_token}".encode()).hexdigest()
        key = (realm, ch.service, tuple(sorted(scopes)), who)
        if not fresh:
            tok = TOKENS.get(key)
            if tok:
                return tok
        tok, expires = fetch_token(self.pool, realm, ch.service, scopes, self.creds,
                                   self.config)
        TOKENS.put(key, tok, expires)
        return tok

    def request(self, method: str, path: str, headers: dict | None = None, body=None,
                ok=(200,), what: str = "") -> Response:
        """Send ``method path`` with credentials; on 401 take the new
        challenge (scope/insufficient_scope), authenticate once more and
        retry. Returns the open response (status in ``ok``)."""
        if self.endpoint is None:
            self.open()
        ep = self.endpoint
        url = ep.base + path if path.startswith("/") else path
        hdrs = dict(headers or {})
        auth = self._auth_header()
        if auth:
            hdrs["Authorization"] = auth
        for attempt in (0, 1):
            resp = self.pool.request(method, url, hdrs, body, verify=ep.verify)
            if resp.status == 401 and attempt == 0:
                chs = parse_challenges(resp.headers.get_all("WWW-Authenticate") or [])
                resp.read()
                resp.close()
                if chs:
                    self._challenges = chs
                new = self._auth_header(chs, fresh=True)
                if new is None:
                    if any(c.scheme == "basic" for c in chs):
                        raise Unauthorized(f"{method.title()} \"{url}\": no basic auth credentials")
                    break
                hdrs["Authorization"] = new
                if hasattr(body, "seek"):
                    body.seek(0)
                continue
            if resp.status in ok:
                return resp
            data = resp.read()
            resp.close()
            raise _registry_error(resp.status, data, what)
        raise RegistryError(f"{what}unauthorized: authentication required", "UNAUTHORIZED", 401)

    # -- manifests ---------------------------------------------------------

    def get_manifest(self, tag_or_digest: str) -> tuple[bytes, str, str]:
        """→ (body, media type, digest). The body's digest is checked against
        a requested digest and against Docker-Content-Digest."""
        import hashlib
        what = ""
        with self.request("GET", f"/v2/{self.path}/manifests/{tag_or_digest}",
                          {"Accept": MANIFEST_ACCEPT}, what=what) as r:
            body = r.read()
            mt = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = r.headers.get("Docker-Content-Digest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if tag_or_digest.startswith("sha256:") and digest != tag_or_digest:
            from ..errors import DigestMismatch
            raise DigestMismatch(f"manifest verification failed for digest {tag_or_digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            from ..errors import DigestMismatch
            raise DigestMismatch(
                f"manifest digest mismatch: registry says {header_digest}, content is {digest}")
        try:
            parsed = json.loads(body)
        except ValueError:
            raise InvalidArgument("invalid manifest: not JSON") from None
        if isinstance(parsed, dict) and parsed.get("mediaType"):
            mt = parsed["mediaType"]
        elif isinstance(parsed, dict) and parsed.get("schemaVersion") == 1:
            mt = MT_DOCKER_V1
        return body, mt, digest

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        with self.request("PUT", f"/v2/{self.path}/manifests/{reference}",
                          {"Content-Type": media_type}, body, ok=(201, 200, 202)) as r:
            r.read()
            return r.headers.get("Docker-Content-Digest", "")

    # -- blobs -------------------------------------------------------------

    def blob_size(self, digest: str) -> int | None:
        """HEAD the blob: its size, or None when the registry lacks it."""
        try:
            with self.request("HEAD", f"/v2/{self.path}/blobs/{digest}", ok=(200,)) as r:
                return int(r.headers.get("Content-Length") or 0)
        except RegistryError as e:
            if e.http_status == 404:
                return None
            raise

    def open_blob(self, digest: str, offset: int = 0, url: str | None = None) -> Response:
        hdrs = {"Range": f"bytes={offset}-"} if offset else {}
        if url is not None:       # a foreign layer: a plain GET, no registry auth
            r = self.pool.request("GET", url, hdrs, verify=True)
            if r.status not in (200, 206):
                r.read()
                r.close()
                raise RegistryError(f"error downloading {url}: status {r.status}", "",
                                    r.status)
            return r
        return self.request("GET", f"/v2/{self.path}/blobs/{digest}", hdrs, ok=(200, 206))

    def mount_blob(self, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when the registry mounted it."""
        self.add_scope(f"repository:{from_repo}:pull")
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        r = self.request("POST", f"/v2/{self.path}/blobs/uploads/?{q}", ok=(201, 202))
        r.read()
        loc = r.headers.get("Location")
        r.close()
        if r.status == 201:
            return True
        if loc:                      # the registry opened an upload instead: cancel it
            try:
                self.request("DELETE", self._abs(loc), ok=(204, 200, 404)).close()
            except SkiffError:
                pass
        return False

    def _abs(self, location: str) -> str:
        if location.startswith(("http://", "https://")):
            return location
        return f"{self.endpoint.scheme}://{self.endpoint.host}{location}"

    def upload_blob(self, digest: str, size: int, fileobj, on_bytes=None,
                    chunk_size: int | None = None) -> None:
        """POST an upload, then either one PUT with the whole body
        (monolithic) or PATCH chunks followed by a closing PUT."""
        r = self.request("POST", f"/v2/{self.path}/blobs/uploads/", ok=(202,))
        r.read()
        loc = self._abs(r.headers["Location"])
        r.close()
        sep = "&" if "?" in loc else "?"
        if not chunk_size:
            body = _CountingReader(fileobj, on_bytes)
            r = self.request("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}",
                             {"Content-Type": "application/octet-stream",
                              "Content-Length": str(size)}, body, ok=(201,))
            r.read()
            r.close()
            return
        sent = 0
        while sent < size:
            chunk = fileobj.read(min(chunk_size, size - sent))
            if not chunk:
                raise InvalidArgument(f"blob {digest} is shorter than its size {size}")
            r = self.request("PATCH", loc, {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(chunk)),
                "Content-Range": f"{sent}-{sent + len(chunk) - 1}"}, chunk, ok=(202,))
            r.read()
            loc = self._abs(r.headers.get("Location") or loc)
            r.close()
            sent += len(chunk)
            if on_bytes:
                on_bytes(sent)
        sep = "&" if "?" in loc else "?"
        r = self.request("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}",
                         {"Content-Length": "0"}, b"", ok=(201,))
        r.read()
        r.close()


class _CountingReader:
    def __init__(self, f, on_bytes):
        self.f, self.on_bytes, self.n = f, on_bytes, 0

    def read(self, n=-1):
        b = self.f.read(min(n, READ_CHUNK) if n and n > 0 else READ_CHUNK)
        self.n += len(b)
        if self.on_bytes and b:
            self.on_bytes(self.n)
        return b

    def seek(self, pos):
        self.f.seek(pos)
        self.n = pos


def fetch_token(pool: Pool, realm: str, service: str | None, scopes: list[str],
                creds: Credentials, config: RegistryConfig) -> tuple[str, float | None]:
    """Docker's token flow: GET realm?service=&scope=… (basic auth when
    credentials are known; anonymous otherwise), or the OAuth2 POST with a
    refresh token for identity tokens."""
    u = urllib.parse.urlsplit(realm)
    if u.scheme not in ("http", "https"):
        raise Unauthorized(f"invalid token realm {realm!r}")
    verify = u.scheme == "https" and not config.is_insecure(u.netloc)
    if creds.identity_token:
        form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                ("client_id", "skiff"), ("access_type", "offline")]
        if service:
            form.append(("service", service))
        form += [("scope", s) for s in scopes]
        body = urllib.parse.urlencode(form).encode()
        r = pool.request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                         body, verify=verify)
    else:
        q = []
        if service:
            q.append(("service", service))
        q += [("scope", s) for s in scopes]
        hdrs = {}
        if creds.username:
            import base64
            q.append(("account", creds.username))
            hdrs["Authorization"] = "Basic " + base64.b64encode(
                f"{creds.username}:{creds.password}".encode()).decode()
        sep = "&" if u.query else "?"
        url = realm + (sep + urllib.parse.urlencode(q) if q else "")
        try:
            r = pool.request("GET", url, hdrs, verify=verify)
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"Get \"{realm}\": {_os_reason(e)}") from None
    with r:
        data = r.read()
        if r.status != 200:
            err = _registry_error(r.status, data)
            msg = str(err)
            if r.status == 401 and "unauthorized" not in msg.lower():
                msg = "unauthorized: incorrect username or password"
            raise Unauthorized(f"Get \"{realm}\": {msg}")
    try:
        d = json.loads(data)
    except ValueError:
        raise Unauthorized(f"Get \"{realm}\": invalid token response") from None
    tok = d.get("token") or d.get("access_token")
    if not tok:
        raise Unauthorized(f"Get \"{realm}\": authorization server did not include a token "
                           "in the response")
    return tok, d.get("expires_in")


def _ssl_reason(e: ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"failed to verify certificate: {e.verify_message}"
    return e.reason or str(e)


def _os_reason(e: BaseException, host: str | None = None) -> str:
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp{' ' + host if host else ''}: connect: connection refused"
    if isinstance(e, socket.timeout):
        return "i/o timeout"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup: {e.strerror}"
    return str(e) or type(e).__name__


def retry_sleep(config: RegistryConfig, attempt: int) -> float:
    d = config.retry_delay * attempt
    time.sleep(d)
    return d
