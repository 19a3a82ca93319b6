"""Registry configuration: which endpoint serves a repository, over which
transport (HTTPS verified, HTTPS unverified or plain HTTP), with which TLS
material, and how many transfers run at once.

Keys follow Docker's daemon.json: ``registry-mirrors``,
``insecure-registries``, ``max-concurrent-downloads``,
``max-concurrent-uploads``, ``max-download-attempts``; skiff's
``default-registry`` names the host that plays docker.io (tests point it at a
registry on 127.0.0.1 so nothing reaches a public registry).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass, field

from ..errors import InvalidArgument
from .reference import DOCKER_IO

DEFAULT_CERTS_DIR = "/etc/skiff/certs.d"
# Docker always treats loopback as insecure (moby registry/config.go).
DEFAULT_INSECURE = ("127.0.0.0/8",)


@dataclass(frozen=True)
class Endpoint:
    """One place to talk to: ``scheme://host``; ``verify`` False means TLS
    without certificate verification (an insecure registry tried over HTTPS
    first, as Docker does); ``fallback_http`` lets the client retry over
    plain HTTP when the TLS handshake itself fails; ``mirror`` marks a
    docker.io mirror (pull only)."""
    host: str
    scheme: str = "https"
    verify: bool = True
    fallback_http: bool = False
    mirror: bool = False
    path_prefix: str = ""

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}{self.path_prefix}"


@dataclass
class RegistryConfig:
    default_registry: str | None = None
    mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=lambda: list(DEFAULT_INSECURE))
    certs_dir: str = DEFAULT_CERTS_DIR
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    max_download_attempts: int = 5
    max_upload_attempts: int = 5
    retry_delay: float = 1.0          # seconds; grows linearly per attempt (Docker: 5 s)
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    chunk_size: int | None = None     # push: None = monolithic PUT, else chunked PATCHes
    auth_config_path: str | None = None  # Docker config.json for credentials
    user_agent: str = "skiff/0.1 (docker-compatible)"
    # {"http": url, "https": url, "no": "host,.domain,10.0.0.0/8"}; None = the
    # environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), as dockerd does
    proxies: dict | None = None

    _ssl_cache: dict = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_daemon_json(cls, d: dict, **overrides) -> "RegistryConfig":
        """Build from a daemon.json mapping (Docker's key names)."""
        kw = {}
        if d.get("default-registry"):
            kw["default_registry"] = str(d["default-registry"])
        if d.get("registry-mirrors"):
            kw["mirrors"] = list(d["registry-mirrors"])
        insecure = list(DEFAULT_INSECURE)
        for item in d.get("insecure-registries") or []:
            if item not in insecure:
                insecure.append(item)
        kw["insecure_registries"] = insecure
        for key, attr in (("max-concurrent-downloads", "max_concurrent_downloads"),
                          ("max-concurrent-uploads", "max_concurrent_uploads"),
                          ("max-download-attempts", "max_download_attempts")):
            if key in d:
                v = int(d[key])
                if v < 1:
                    raise InvalidArgument(f"invalid {key}: {v}")
                kw[attr] = v
        px = d.get("proxies") or {}
        if px:   # Docker 23+: "proxies": {"http-proxy", "https-proxy", "no-proxy"}
            kw["proxies"] = {"http": px.get("http-proxy") or "",
                             "https": px.get("https-proxy") or "",
                             "no": px.get("no-proxy") or ""}
        kw.update(overrides)
        return cls(**kw)

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy URL for ``scheme://host``, or None. Like Go's
        ProxyFromEnvironment: loopback is never proxied; NO_PROXY holds
        hosts, ``.domain`` suffixes, CIDRs or ``*``."""
        px = self.proxies
        if px is None:
            env = os.environ
            px = {"http": env.get("HTTP_PROXY") or env.get("http_proxy") or "",
                  "https": env.get("HTTPS_PROXY") or env.get("https_proxy") or "",
                  "no": env.get("NO_PROXY") or env.get("no_proxy") or ""}
        url = px.get(scheme) or ""
        if not url:
            return None
        hostname = _hostname(host).lower()
        if hostname == "localhost" and not px.get("loopback"):
            return None
        try:
            ip = ipaddress.ip_address(hostname)
            if ip.is_loopback and not px.get("loopback"):
                return None
        except ValueError:
            ip = None
        for item in (px.get("no") or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            if item == "*":
                return None
            if "/" in item and ip is not None:
                try:
                    if ip in ipaddress.ip_network(item, strict=False):
                        return None
                except ValueError:
                    pass
                continue
            bare = item.lstrip(".")
            if item in (host.lower(), hostname) or hostname == bare or \
                    hostname.endswith("." + bare):
                return None
        if "://" not in url:
            url = "http://" + url
        return url

    # -- transport decisions -------------------------------------------------

    def is_insecure(self, host: str) -> bool:
        """Docker's rule: listed by host[:port] or CIDR; the host part of an
        IP literal is matched against CIDRs (127.0.0.0/8 by default)."""
        hostname = _hostname(host)
        for item in self.insecure_registries:
            item = item.strip()
            for prefix in ("http://", "https://"):
                if item.startswith(prefix):
                    item = item[len(prefix):]
            if item.rstrip("/") in (host, hostname):
                return True
            if "/" in item:
                try:
                    net = ipaddress.ip_network(item, strict=False)
                    if ipaddress.ip_address(hostname) in net:
                        return True
                except ValueError:
                    continue
        return False

    def endpoints(self, domain: str, *, push: bool = False) -> list[Endpoint]:
        """Endpoints to try for ``domain``, in order."""
        out: list[Endpoint] = []
        if domain == DOCKER_IO:
            if not push:
                for m in self.mirrors:
                    out.append(_mirror_endpoint(m, self))
            host = self.default_registry or "registry-1.docker.io"
            if host in ("docker.io", "index.docker.io"):   # "the default": Docker Hub itself
                host = "registry-1.docker.io"
        else:
            host = domain
        out.append(self._endpoint(host))
        return out

    def _endpoint(self, host: str, mirror: bool = False) -> Endpoint:
        if host.startswith(("http://", "https://")):
            return _mirror_endpoint(host, self, mirror=mirror)
        if self.is_insecure(host):
            return Endpoint(host, "https", verify=False, fallback_http=True, mirror=mirror)
        return Endpoint(host, "https", verify=True, mirror=mirror)

    def ssl_context(self, host: str, verify: bool) -> ssl.SSLContext:
        """A TLS context for ``host``: the system CAs plus
        ``<certs_dir>/<host>/*.crt``, and a client certificate from
        ``*.cert`` + ``*.key`` (Docker's certs.d layout)."""
        d = os.path.join(self.certs_dir, host)
        try:   # certs.d is re-read when its files change (Docker reads it per connection)
            stamp = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(d)))
        except OSError:
            stamp = ()
        key = (host, verify, stamp)
        with self._lock:
            ctx = self._ssl_cache.get(key)
            if ctx is not None:
                return ctx
            if verify:
                ctx = ssl.create_default_context()
            else:   # no verification: skip loading the system CA bundle (~35 ms)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if stamp:
                names = sorted(os.listdir(d))
                for n in names:
                    p = os.path.join(d, n)
                    if n.endswith(".crt") and verify:
                        ctx.load_verify_locations(cafile=p)
                for n in names:
                    if n.endswith(".cert"):
                        keyfile = os.path.join(d, n[:-5] + ".key")
                        if not os.path.exists(keyfile):
                            raise InvalidArgument(
                                f"missing key {n[:-5]}.key for client certificate {n}")
                        ctx.load_cert_chain(os.path.join(d, n), keyfile)
                    elif n.endswith(".key") and not os.path.exists(
                            os.path.join(d, n[:-4] + ".cert")):
                        raise InvalidArgument(
                            f"missing client certificate {n[:-4]}.cert for key {n}")
            self._ssl_cache[key] = ctx
            return ctx


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _mirror_endpoint(url: str, cfg: RegistryConfig, mirror: bool = True) -> Endpoint:
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    path = ("/" + path.rstrip("/")) if path.strip("/") else ""
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror: unsupported scheme {scheme!r} in {url!r}")
    verify = scheme == "https" and not cfg.is_insecure(host)
    return Endpoint(host, scheme, verify=verify, fallback_http=False, mirror=mirror,
                    path_prefix=path)
