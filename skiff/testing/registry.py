"""Real registries on 127.0.0.1 for tests and benches.

``Registry`` runs Debian's ``docker-registry`` (distribution 2.8) on a free
port of 127.0.0.1 with its own storage folder, in one of four modes:
plain HTTP, TLS with a CA made here (``CA``), htpasswd basic auth, or bearer
tokens issued by ``TokenService`` — a small token server that plays Docker
Hub's auth.docker.io (anonymous pull tokens, basic-auth'd push tokens, JWTs
signed RS256 with a key the registry trusts through ``rootcertbundle``).

``FileServer`` serves a folder over HTTP on 127.0.0.1 (foreign-layer URLs).
``oci_layout`` / ``layer_tar`` / ``push_raw`` build images offline and put
them in a registry without going through skiff (an independent oracle).

Nothing here ever talks to anything but 127.0.0.1. Every server is stopped by
``stop()`` (or the context manager); fixtures call it in finalizers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

REGISTRY_BIN = "docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args, cwd=None, input=None):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, input=input)


class CA:
    """A throw-away certificate authority and a server certificate for
    127.0.0.1 / localhost signed by it."""

    def __init__(self, d: str):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.ca_key = os.path.join(d, "ca.key")
        self.ca_crt = os.path.join(d, "ca.crt")
        self.key = os.path.join(d, "server.key")
        self.crt = os.path.join(d, "server.crt")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "2",
                 "-subj", "/CN=skiff test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(d, "server.csr")
        _openssl("req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-out", self.crt, "-days", "2", "-extfile", ext)

    def client_cert(self, name: str = "client") -> tuple[str, str]:
        """A client certificate signed by this CA: (cert path, key path)."""
        key = os.path.join(self.dir, f"{name}.key")
        crt = os.path.join(self.dir, f"{name}.cert")
        csr = os.path.join(self.dir, f"{name}.csr")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        return crt, key

    def install(self, certs_dir: str, host: str) -> str:
        """Put ca.crt where skiff (and Docker) look: <certs_dir>/<host>/ca.crt."""
        d = os.path.join(certs_dir, host)
        os.makedirs(d, exist_ok=True)
        shutil.copy(self.ca_crt, os.path.join(d, "ca.crt"))
        return d


# -- bearer token service --------------------------------------------------------

def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class _LocalHTTPService:
    """An in-process HTTP server on 127.0.0.1:<free port>, served by a daemon
    thread; a context manager. Subclasses build their handler class and call
    ``_serve(Handler, name)`` from ``start()``."""

    _server = None
    port = 0

    def _serve(self, handler, name: str):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name=name).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class TokenService(_LocalHTTPService):
    """Docker Hub's token flow on 127.0.0.1: ``GET /token?service=&scope=``.

    Anonymous callers get ``pull`` on every repository; callers with valid
    basic credentials (``users``) get what they ask for; wrong credentials
    get 401 like auth.docker.io. ``POST /token`` is the OAuth2 flow Docker
    uses with identity tokens (password and refresh_token grants;
    ``refresh_tokens`` maps identity tokens to users). ``requests`` records
    (user, scopes, granted)."""

    def __init__(self, d: str, users: dict[str, str] | None = None,
                 service: str = "skiff-test-registry", issuer: str = "skiff-test-issuer",
                 anonymous_pull: bool = True, expires_in: int = 300):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.users = dict(users or {})
        self.service, self.issuer = service, issuer
        self.anonymous_pull = anonymous_pull
        self.expires_in = expires_in
        self.key = os.path.join(d, "token.key")
        self.crt = os.path.join(d, "token.crt")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                 "-out", self.crt, "-days", "2", "-subj", "/CN=skiff test token issuer")
        der = subprocess.run(["openssl", "x509", "-in", self.crt, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        self.refresh_tokens: dict[str, str] = {}     # identity token -> user
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _sign(self, data: bytes) -> bytes:
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=data,
                              check=True, capture_output=True).stdout

    def issue(self, user: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                   _b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        return signing.decode() + "." + _b64url(self._sign(signing))

    def grant(self, user: str, scopes: list[str]) -> list[dict]:
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            if user:
                allowed = [a for a in actions if a in ("pull", "push", "delete", "*")]
            else:
                allowed = [a for a in actions if a == "pull"] if self.anonymous_pull else []
            access.append({"type": "repository", "name": name, "actions": allowed})
        return access

    def start(self) -> "TokenService":
        svc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path != "/token":
                    return self._reply(404, {"details": "not found"})
                q = urllib.parse.parse_qs(u.query)
                user = ""
                h = self.headers.get("Authorization", "")
                if h.startswith("Basic "):
                    try:
                        user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
                    except Exception:  # noqa: BLE001
                        user, pw = "", None
                    if svc.users.get(user) != pw or not user:
                        svc.requests.append({"user": user, "scopes": q.get("scope", []),
                                             "granted": None})
                        return self._reply(401, {"details": "incorrect username or password"})
                if q.get("service", [svc.service])[0] != svc.service:
                    return self._reply(400, {"details": "invalid service"})
                scopes = [s for v in q.get("scope", []) for s in v.split(" ")]
                access = svc.grant(user, scopes)
                svc.requests.append({"user": user, "scopes": scopes, "granted": access})
                tok = svc.issue(user, access)
                self._reply(200, {"token": tok, "access_token": tok,
                                  "expires_in": svc.expires_in,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime())})

            def do_POST(self):
                """OAuth2 (what Docker does with identity tokens): grant_type
                password (answers a refresh_token with access_type=offline)
                or refresh_token."""
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                one = {k: v[0] for k, v in form.items()}
                scopes = [s for v in form.get("scope", []) for s in v.split(" ")]
                if one.get("grant_type") == "password":
                    user = one.get("username", "")
                    if not user or svc.users.get(user) != one.get("password"):
                        return self._reply(401, {"details": "incorrect username or password"})
                elif one.get("grant_type") == "refresh_token":
                    user = svc.refresh_tokens.get(one.get("refresh_token", ""), "")
                    if not user:
                        return self._reply(401, {"details": "invalid refresh token"})
                else:
                    return self._reply(400, {"details": "unsupported grant_type"})
                access = svc.grant(user, scopes)
                svc.requests.append({"user": user, "scopes": scopes, "granted": access,
                                     "grant": one.get("grant_type")})
                out = {"access_token": svc.issue(user, access), "expires_in": svc.expires_in}
                if one.get("access_type") == "offline":
                    rt = secrets.token_hex(16)
                    svc.refresh_tokens[rt] = user
                    out["refresh_token"] = rt
                self._reply(200, out)

        return self._serve(Handler, "token-service")



# -- the registry --------------------------------------------------------------

class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>.

    ``tls``: a CA (the registry serves a cert it signed); ``client_ca``:
    with ``tls``, only clients with a certificate from that CA get in; ``htpasswd``:
    {user: password} for basic auth; ``token``: a TokenService for bearer
    auth. ``storage``: the registry's filesystem root (tests tamper with it)."""

    def __init__(self, d: str, *, tls: CA | None = None, htpasswd: dict | None = None,
                 token: TokenService | None = None, port: int | None = None,
                 client_ca: CA | None = None):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.storage = os.path.join(d, "storage")
        self.tls, self.htpasswd, self.token = tls, htpasswd, token
        self.client_ca = client_ca          # with tls: require client certificates (mTLS)
        self.port = port or 0
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(d, "registry.log")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self) -> dict:
        cfg = {
            "version": "0.1",
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": "skiff-test-secret"},
            # foreign / non-distributable layers may name URLs (tests point them at 127.0.0.1)
            "validation": {"manifests": {"urls": {"allow": ["^https?://127\\.0\\.0\\.1[:/]"]}}},
        }
        if self.tls:
            cfg["http"]["tls"] = {"certificate": self.tls.crt, "key": self.tls.key}
            if self.client_ca:
                cfg["http"]["tls"]["clientcas"] = [self.client_ca.ca_crt]
        if self.htpasswd:
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                for user, pw in self.htpasswd.items():
                    line = subprocess.run(["htpasswd", "-Bbn", user, pw], check=True,
                                          capture_output=True, text=True).stdout.strip()
                    f.write(line + "\n")
            cfg["auth"] = {"htpasswd": {"realm": "basic-realm", "path": path}}
        elif self.token:
            cfg["auth"] = {"token": {"realm": self.token.realm, "service": self.token.service,
                                     "issuer": self.token.issuer,
                                     "rootcertbundle": self.token.crt}}
        return cfg

    def start(self, timeout: float = 20.0) -> "Registry":
        for _ in range(5):
            if not self.port:
                self.port = free_port()
            cfgpath = os.path.join(self.dir, "config.yml")
            with open(cfgpath, "w") as f:
                json.dump(self._config(), f)   # YAML is a superset of JSON
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", cfgpath], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            self.port = 0      # port taken or slow start: try another one
        with open(self.log_path, errors="replace") as f:
            raise RuntimeError("docker-registry did not start:\n" + f.read()[-2000:])

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), keeping port and storage for a restart."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def restart(self) -> "Registry":
        self.stop()
        return self.start()

    def blob_path(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class FileServer(_LocalHTTPService):
    """Serves ``root`` over plain HTTP on 127.0.0.1 (foreign-layer URLs).
    ``hits`` counts GETs per path."""

    def __init__(self, root: str):
        self.root = root
        self.hits: dict[str, int] = {}
        self._server = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> "FileServer":
        fs = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=fs.root, **kw)

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/redirect?to="):     # plays a CDN's 307
                    self.send_response(307)
                    self.send_header("Location", urllib.parse.unquote(self.path[13:]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                fs.hits[self.path] = fs.hits.get(self.path, 0) + 1
                return super().do_GET()

        return self._serve(Handler, "file-server")



class Proxy(_LocalHTTPService):
    """A small forward proxy on 127.0.0.1: ``CONNECT host:port`` tunnels
    (HTTPS) and absolute-form requests (plain HTTP, forwarded as-is).
    ``seen`` lists what went through ("CONNECT host:port" / "GET http://…");
    with ``auth`` (user, password) it demands Proxy-Authorization."""

    def __init__(self, auth: tuple[str, str] | None = None):
        self.auth = auth
        self.seen: list[str] = []
        self._server = None
        self.port = 0

    @property
    def url(self) -> str:
        if self.auth:
            return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        px = self

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s_ in (a, b):
                    try:
                        s_.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _authorized(self) -> bool:
                if not px.auth:
                    return True
                want = "Basic " + base64.b64encode(f"{px.auth[0]}:{px.auth[1]}".encode()).decode()
                if self.headers.get("Proxy-Authorization") == want:
                    return True
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_CONNECT(self):
                if not self._authorized():
                    return
                px.seen.append(f"CONNECT {self.path}")
                host, _, port = self.path.rpartition(":")
                if host not in ("127.0.0.1", "localhost"):
                    self.send_error(403)
                    return
                up = socket.create_connection(("127.0.0.1", int(port)))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                t = threading.Thread(target=pipe, args=(up, self.connection), daemon=True)
                t.start()
                pipe(self.connection, up)
                t.join(5)
                self.close_connection = True

            def _forward(self):
                if not self._authorized():
                    return
                u = urllib.parse.urlsplit(self.path)
                if u.hostname not in ("127.0.0.1", "localhost"):
                    self.send_error(403)
                    return
                px.seen.append(f"{self.command} {self.path}")
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("proxy-authorization", "connection", "host")}
                import http.client as hc
                c = hc.HTTPConnection(u.netloc, timeout=60)
                c.request(self.command, u.path + (f"?{u.query}" if u.query else ""), body, hdrs)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return self._serve(Handler, "proxy")



# -- building images offline --------------------------------------------------

def layer_tar(files: dict[str, bytes | str | None] | None = None, rootfs: str | None = None) -> bytes:
    """An uncompressed layer tar: ``files`` maps paths to contents (``None``
    = directory; a str starting with '->' = symlink), or a whole ``rootfs``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        if rootfs:
            for name in sorted(os.listdir(rootfs)):
                tf.add(os.path.join(rootfs, name), arcname=name)
        for path, data in (files or {}).items():
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.mtime = 0
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif isinstance(data, str) and data.startswith("->"):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[2:]
                tf.addfile(ti)
            else:
                b = data.encode() if isinstance(data, str) else data
                ti.size, ti.mode = len(b), 0o755
                tf.addfile(ti, io.BytesIO(b))
    return buf.getvalue()


def sha256(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def gz(b: bytes, level: int = 6) -> bytes:
    return gzip.compress(b, compresslevel=level, mtime=0)


def zst(b: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(level=3).compress(b)


MT_LAYER = {"docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "oci": "application/vnd.oci.image.layer.v1.tar+gzip",
            "oci+zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
            "foreign": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}


def image_config(diff_ids: list[str], cmd=("sh",), arch="amd64", os_="linux",
                 env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                 variant: str | None = None) -> bytes:
    cfg = {"architecture": arch, "os": os_,
           "config": {"Env": list(env), "Cmd": list(cmd)},
           "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
           "created": "2026-01-01T00:00:00Z",
           "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"}
                       for i in range(len(diff_ids))]}
    if variant:
        cfg["variant"] = variant
    return json.dumps(cfg, separators=(",", ":")).encode()


def build_image(layers: list[bytes], kind: str = "docker", compress: str = "gzip",
                **cfg_kw) -> dict:
    """Make the blobs and manifest of an image from uncompressed layer tars.
    Returns {"manifest": bytes, "media_type": str, "blobs": {digest: bytes},
    "config": digest, "layers": [digest], "diff_ids": [digest]}."""
    blobs, descs, diff_ids = {}, [], []
    for raw in layers:
        data = zst(raw) if compress == "zstd" else gz(raw)
        d = sha256(data)
        blobs[d] = data
        diff_ids.append(sha256(raw))
        mt = MT_LAYER["oci+zstd"] if compress == "zstd" else MT_LAYER[kind]
        descs.append({"mediaType": mt, "size": len(data), "digest": d})
    cfg = image_config(diff_ids, **cfg_kw)
    cd = sha256(cfg)
    blobs[cd] = cfg
    if kind == "oci":
        mt = "application/vnd.oci.image.manifest.v1+json"
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "size": len(cfg), "digest": cd}, "layers": descs}
    else:
        mt = "application/vnd.docker.distribution.manifest.v2+json"
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "size": len(cfg), "digest": cd}, "layers": descs}
    body = json.dumps(man, indent=3).encode()
    return {"manifest": body, "media_type": mt, "blobs": blobs, "config": cd,
            "layers": [x["digest"] for x in descs], "diff_ids": diff_ids,
            "digest": sha256(body)}


def busybox_image(kind: str = "docker", rootfs: str | None = None, extra: dict | None = None,
                  **cfg_kw) -> dict:
    """The busybox image (one layer from Debian's static busybox, Cmd ["sh"]),
    plus an optional second layer of ``extra`` files; built offline."""
    import tempfile
    from skiff.testing.busybox import make_rootfs
    if rootfs is None:
        with tempfile.TemporaryDirectory(prefix="skiff-bb-") as tmp:
            layers = [layer_tar(rootfs=make_rootfs(os.path.join(tmp, "rootfs")))]
    else:
        layers = [layer_tar(rootfs=rootfs)]
    if extra:
        layers.append(layer_tar(extra))
    return build_image(layers, kind=kind, **cfg_kw)


def seed(reg: "Registry", repo: str = "library/busybox", image: dict | None = None,
         tag: str = "latest") -> dict:
    """Put ``image`` (default: busybox_image()) into ``reg`` as repo:tag, in
    whatever auth mode the registry runs (basic: its first user; token: a
    push token issued by its TokenService). Returns the image dict; e2e
    tests then ``docker pull`` it through skiffd with default-registry set
    to ``reg.host``."""
    image = image or busybox_image()
    auth = token = None
    if reg.htpasswd:
        auth = next(iter(reg.htpasswd.items()))
    elif reg.token:
        token = reg.token.issue("seed", [{"type": "repository", "name": repo,
                                          "actions": ["pull", "push"]}])
    ctx = None
    if reg.tls:
        import ssl
        ctx = ssl.create_default_context(cafile=reg.tls.ca_crt)
    push_raw(reg, repo, image, tag=tag, auth=auth, context=ctx, token=token)
    return image


def _req(method, url, data=None, headers=None, auth=None, context=None, token=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    elif auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    r = urllib.request.Request(url, data=data, headers=h, method=method)
    return urllib.request.urlopen(r, timeout=60, context=context)


def push_raw(reg: Registry, repo: str, image: dict, tag: str | None = "latest",
             auth: tuple[str, str] | None = None, skip_blobs: tuple = (),
             context=None, token: str | None = None) -> str:
    """Upload blobs and the manifest with urllib (no skiff code), plain HTTP
    or TLS (``context``), basic auth or a bearer ``token``. Returns the
    manifest digest."""
    base = reg.url
    for d, data in image["blobs"].items():
        if d in skip_blobs:
            continue
        r = _req("POST", f"{base}/v2/{repo}/blobs/uploads/", b"", auth=auth, context=context,
                 token=token)
        loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = base + loc
        sep = "&" if "?" in loc else "?"
        _req("PUT", f"{loc}{sep}digest={d}", data,
             {"Content-Type": "application/octet-stream"}, auth=auth, context=context,
             token=token).read()
    ref = tag or image["digest"]
    _req("PUT", f"{base}/v2/{repo}/manifests/{ref}", image["manifest"],
         {"Content-Type": image["media_type"]}, auth=auth, context=context,
         token=token).read()
    return image["digest"]


def index_of(images: list[tuple[dict, dict]], kind: str = "oci") -> dict:
    """An index/manifest list over (image, platform) pairs."""
    mt = ("application/vnd.oci.image.index.v1+json" if kind == "oci"
          else "application/vnd.docker.distribution.manifest.list.v2+json")
    idx = {"schemaVersion": 2, "mediaType": mt,
           "manifests": [{"mediaType": img["media_type"], "size": len(img["manifest"]),
                          "digest": img["digest"], "platform": plat} for img, plat in images]}
    body = json.dumps(idx).encode()
    return {"manifest": body, "media_type": mt, "blobs": {}, "digest": sha256(body)}


def oci_layout(dest: str, image: dict, tag: str = "latest") -> str:
    """Write ``image`` (from build_image, kind="oci") as an OCI image layout,
    for ``skopeo copy oci:<dest>:<tag> …``."""
    bd = os.path.join(dest, "blobs", "sha256")
    os.makedirs(bd, exist_ok=True)
    for d, data in list(image["blobs"].items()) + [(image["digest"], image["manifest"])]:
        with open(os.path.join(bd, d.split(":")[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": image["media_type"], "size": len(image["manifest"]),
             "digest": image["digest"],
             "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    return dest
