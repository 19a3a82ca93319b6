"""A recording Engine API endpoint on a unix socket, for differential tests.

It is not a daemon: it answers the few requests the docker CLI and skiff need
to *send* a command (ping, create, inspect, list ...) with fixed data given
by the test, and records every request.  The point is to run the real docker
CLI and skiff against the same answers and compare what each sends and what
each prints."""

import json
import os
import socketserver
import threading
from urllib.parse import parse_qs, urlsplit


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path          # without the /vX.Y prefix
        self.query = query        # dict of lists
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"<{self.method} {self.path} {self.query}>"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server.owner
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            headers = {}
            while True:
                h = self.rfile.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
            elif headers.get("content-length"):
                body = self.rfile.read(int(headers["content-length"]))
            u = urlsplit(target)
            path = u.path
            version = None
            if path.startswith("/v") and "/" in path[1:]:
                version, path = path[2:].split("/", 1)[0], "/" + path[2:].split("/", 1)[1]
            req = Request(method, path, parse_qs(u.query), headers, body)
            req.version = version
            srv.requests.append(req)
            status, rheaders, rbody = srv.answer(req)
            if isinstance(rbody, (dict, list)):
                rbody = json.dumps(rbody).encode()
                rheaders.setdefault("Content-Type", "application/json")
            out = [f"HTTP/1.1 {status} X"]
            hdrs = {"Api-Version": srv.api_version, "Ostype": "linux",
                    "Server": "Docker/28.2.2 (linux)"}
            hdrs.update(rheaders)
            if method == "HEAD":
                hdrs["Content-Length"] = "0"
                rbody = b""
            else:
                hdrs["Content-Length"] = str(len(rbody))
            out += [f"{k}: {v}" for k, v in hdrs.items()]
            self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode() + rbody)
            self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class Recorder:
    """``routes``: {(method, path): (status, body) or callable(req)}."""

    def __init__(self, sock_path, routes=None, api_version="1.51"):
        self.sock_path = sock_path
        self.routes = dict(routes or {})
        self.api_version = api_version
        self.requests = []
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.server = _Server(sock_path, _Handler)
        self.server.owner = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return "unix://" + self.sock_path

    def answer(self, req):
        if req.path == "/_ping":
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"OK"
        r = self.routes.get((req.method, req.path))
        if r is None:
            for (m, p), v in self.routes.items():
                if m == req.method and p.endswith("*") and req.path.startswith(p[:-1]):
                    r = v
                    break
        if r is None:
            return 404, {}, {"message": f"page not found: {req.method} {req.path}"}
        if callable(r):
            r = r(req)
        status, body = r
        return status, {}, body if body is not None else b""

    def find(self, method, path):
        return [r for r in self.requests if r.method == method and r.path == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
