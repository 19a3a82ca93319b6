"""A small Docker Engine API client: HTTP/1.1 over a unix socket (or plain TCP).

Stdlib ``socket`` only: ``http.client`` costs ~20 ms of imports and the CLI's
start-up time is benchmarked against docker's.  What it does:

- keep-alive requests with Content-Length or chunked bodies;
- API version negotiation through ``HEAD /_ping`` (GET as fallback), as the
  docker CLI does: use the lower of our maximum and the daemon's
  ``Api-Version``, 1.24 when the header is missing;
- streamed responses (JSON message streams, logs, stats, events);
- hijacked connections (``Connection: Upgrade`` / ``Upgrade: tcp`` → ``101``)
  for attach and exec.
"""

import _socket  # the C module: socket.py's enum conversions cost ~5 ms at start-up
import json
import os

SHUT_WR = 1
SHUT_RDWR = 2

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s, safe=""):
    """Percent-encode like urllib.parse.quote (without importing it: start-up)."""
    ok = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else "%%%02X" % b for b in str(s).encode("utf-8"))


def urlencode(items):
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in items)

MAX_API_VERSION = "1.51"
DEFAULT_SOCKET = "/run/skiff/skiff.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET


class ConnectError(Exception):
    """No daemon answers at ``host``."""

    def __init__(self, host, cause=None):
        if isinstance(cause, PermissionError):
            msg = (f"permission denied while trying to connect to the skiff daemon socket "
                   f"at {host}: {cause.strerror.lower() if cause.strerror else cause}")
        else:
            msg = f"Cannot connect to the skiff daemon at {host}. Is skiffd running?"
        super().__init__(msg)
        self.host = host
        self.cause = cause

    @property
    def nobody_there(self):
        """True when no daemon listens (so one may be started)."""
        return isinstance(self.cause, (FileNotFoundError, ConnectionRefusedError))


class APIError(Exception):
    """The daemon answered with an error status; ``message`` is its text."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self):
        return "Error response from daemon: " + self.message


def version_tuple(v):
    try:
        return tuple(int(x) for x in str(v).split("."))
    except ValueError:
        return (0,)


def parse_host(host):
    """``unix:///path`` / ``/path`` → ("unix", path); ``tcp://h:p`` → ("tcp", (h, p))."""
    if host.startswith("unix://"):
        return "unix", host[len("unix://"):]
    if host.startswith("/"):
        return "unix", host
    if host.startswith(("tcp://", "http://")):
        rest = host.split("://", 1)[1].rstrip("/")
        h, _, p = rest.rpartition(":")
        if not h:
            h, p = rest, "2375"
        return "tcp", (h.strip("[]"), int(p))
    raise ValueError(f"unsupported host {host!r}: use unix:///path or tcp://host:port")


class Reader:
    """A buffered reader over a raw socket: readline / read1."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if data:
            self.buf += data
        return bool(data)

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if not self._fill():
                line, self.buf = self.buf, b""
                return line

    def read1(self, n=65536):
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class Response:
    """An HTTP response whose body is read lazily from the connection."""

    def __init__(self, client, sock, rfile, status, reason, headers, head=False):
        self._client = client
        self.sock = sock
        self.rfile = rfile
        self.status = status
        self.reason = reason
        self.headers = headers
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        cl = headers.get("content-length")
        self.length = int(cl) if cl is not None and not self.chunked else None
        self._chunk_left = 0
        self._done = False
        self.keep_alive = headers.get("connection", "").lower() != "close"
        if head or self.length == 0 or status in (204, 304) or (status < 200 and status != 101):
            self._finish(True)

    # -- body reading --------------------------------------------------------
    def read1(self, n=65536):
        """Return the next piece of body (b"" at the end)."""
        if self._done:
            return b""
        if self.chunked:
            if self._chunk_left == 0:
                line = self.rfile.readline()
                if not line:
                    self._finish(False)
                    return b""
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline()
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    self._finish(True)
                    return b""
                self._chunk_left = size
            data = self.rfile.read1(min(n, self._chunk_left))
            if not data:
                self._finish(False)
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.rfile.readline()  # CRLF after the chunk
            return data
        if self.length is not None:
            data = self.rfile.read1(min(n, self.length))
            if not data:
                self._finish(False)
                return b""
            self.length -= len(data)
            if self.length == 0:
                self._finish(True)
            return data
        data = self.rfile.read1(n)
        if not data:
            self._finish(False)
        return data

    def read(self):
        parts = []
        while True:
            d = self.read1()
            if not d:
                return b"".join(parts)
            parts.append(d)

    def iter_chunks(self):
        while True:
            d = self.read1()
            if not d:
                return
            yield d

    def iter_lines(self):
        buf = b""
        for chunk in self.iter_chunks():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
        if buf:
            yield buf

    def iter_json(self):
        """Newline-delimited (or concatenated) JSON messages."""
        dec = json.JSONDecoder()
        buf = ""
        for chunk in self.iter_chunks():
            buf += chunk.decode("utf-8", "replace")
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                yield obj

    def json(self):
        data = self.read()
        return json.loads(data) if data.strip() else None

    def _finish(self, clean):
        self._done = True
        if clean and self.keep_alive and self._client is not None:
            self._client._release(self.sock, self.rfile)
        else:
            self.close()

    def close(self):
        self._done = True
        try:
            self.sock.close()
        except OSError:
            pass


class Client:
    def __init__(self, host=DEFAULT_HOST, version=None, timeout=None):
        self.host = host
        self.kind, self.addr = parse_host(host)
        self.timeout = timeout
        self.version = version  # negotiated lazily
        self.server_headers = {}
        self._idle = None

    # -- connections ---------------------------------------------------------
    def connect(self):
        try:
            if self.kind == "unix":
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    s.settimeout(self.timeout)
                    s.connect(self.addr)
                except OSError:
                    s.close()
                    raise
            else:
                import socket
                s = socket.create_connection(self.addr, timeout=self.timeout)
        except OSError as e:
            raise ConnectError(self.host, e) from None
        return s

    def _release(self, sock, rfile):
        if self._idle is not None:
            try:
                self._idle[0].close()
            except OSError:
                pass
        self._idle = (sock, rfile)

    def _take(self):
        if self._idle is not None:
            conn, self._idle = self._idle, None
            return conn, True
        s = self.connect()
        return (s, Reader(s)), False

    def close(self):
        if self._idle is not None:
            try:
                self._idle[0].close()
            except OSError:
                pass
            self._idle = None

    # -- requests ------------------------------------------------------------
    def url(self, path, params=None, versioned=True):
        if versioned:
            path = f"/v{self.negotiate()}{path}"
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "1" if v else "0"
                if isinstance(v, (list, tuple)):
                    items.extend((k, str(x)) for x in v)
                else:
                    items.append((k, str(v)))
            if items:
                path += "?" + urlencode(items)
        return path

    def raw_request(self, method, path, body=None, headers=None, upgrade=False):
        """Send a request, return a Response with headers read."""
        hdrs = {"Host": "api.moby.localhost" if self.kind == "unix" else "%s:%d" % self.addr,
                "User-Agent": "skiff-cli"}
        if isinstance(body, (dict, list)) or body is Ellipsis:
            body = json.dumps(None if body is Ellipsis else body).encode()
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        if upgrade:
            hdrs["Connection"] = "Upgrade"
            hdrs["Upgrade"] = "tcp"
        stream_body = body is not None and not isinstance(body, (bytes, bytearray))
        if stream_body:
            hdrs["Transfer-Encoding"] = "chunked"
        elif body is not None:
            hdrs["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        for attempt in (0, 1):
            if upgrade:
                sock = self.connect()
                rfile, reused = Reader(sock), False
            else:
                (sock, rfile), reused = self._take()
            try:
                if stream_body:
                    sock.sendall(head.encode("latin-1"))
                    for chunk in body:
                        if chunk:
                            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sock.sendall(b"0\r\n\r\n")
                else:
                    sock.sendall(head.encode("latin-1") + (body or b""))
                status_line = rfile.readline()
                if not status_line:
                    raise ConnectionResetError("connection closed")
            except (ConnectionError, BrokenPipeError) as e:
                sock.close()
                if reused and attempt == 0 and not stream_body:
                    continue
                raise ConnectError(self.host, e) from None
            break
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = {}
        while True:
            line = rfile.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return Response(None if upgrade else self, sock, rfile, status, reason, headers,
                        head=method == "HEAD")

    def request(self, method, path, params=None, body=None, headers=None,
                versioned=True, stream=False, ok=None):
        """Request; raise APIError for error statuses.  With stream=True the
        Response is returned unread (caller iterates it)."""
        r = self.raw_request(method, self.url(path, params, versioned), body, headers)
        if r.status >= 400 or (ok is not None and r.status not in ok):
            raise self._error(r)
        return r

    def _error(self, r):
        data = r.read()
        msg = None
        try:
            j = json.loads(data)
            if isinstance(j, dict):
                msg = j.get("message")
        except ValueError:
            pass
        if msg is None:
            msg = data.decode("utf-8", "replace").strip() or f"{r.status} {r.reason}"
        return APIError(r.status, msg)

    def get(self, path, params=None, **kw):
        return self.request("GET", path, params, **kw).json()

    def post(self, path, params=None, body=None, **kw):
        return self.request("POST", path, params, body, **kw).json()

    def delete(self, path, params=None, **kw):
        return self.request("DELETE", path, params, **kw).json()

    # -- negotiation ---------------------------------------------------------
    def ping(self):
        r = self.raw_request("HEAD", "/_ping")
        if r.status not in (200, 500):
            r.read()
            r = self.raw_request("GET", "/_ping")
        r.read()
        self.server_headers = r.headers
        return r.headers

    def negotiate(self):
        if self.version is None:
            h = self.ping()
            srv = h.get("api-version") or "1.24"
            self.version = (srv if version_tuple(srv) < version_tuple(MAX_API_VERSION)
                            else MAX_API_VERSION)
        return self.version

    # -- hijack --------------------------------------------------------------
    def hijack(self, path, params=None, body=None):
        """POST with Upgrade: tcp; return (sock, rfile, content_type)."""
        r = self.raw_request("POST", self.url(path, params), body, upgrade=True)
        if r.status != 101:
            if r.status >= 400:
                err = self._error(r)
                r.close()
                raise err
            r.close()
            raise APIError(r.status, f"unable to upgrade to tcp, received {r.status}")
        return r.sock, r.rfile, r.headers.get("content-type", "")


def q(s):
    """Quote an ID or name for a URL path segment."""
    return quote(s, safe="")


def auth_header(authconfig=None):
    import base64
    data = json.dumps(authconfig or {}).encode()
    return base64.urlsafe_b64encode(data).decode()


def env_host():
    """The host chosen by the environment and whether skiff may auto-start a
    daemon there: (host, autostart)."""
    h = os.environ.get("SKIFF_HOST")
    if h:
        return h, parse_host(h)[0] == "unix"
    d = os.environ.get("DOCKER_HOST", "")
    if d.startswith("unix://") and os.path.basename(d).startswith("skiff"):
        return d, False
    return DEFAULT_HOST, True
