"""Image references, normalized exactly as Docker does.

``busybox`` → ``docker.io/library/busybox:latest``; ``localhost:5000/x`` keeps
its host; ``name@sha256:…`` pins a digest. Names are always Docker's (so the
image store and the docker CLI agree on them); *where* docker.io is fetched
from is the registry configuration's business (``default-registry``,
``registry-mirrors``), see :mod:`skiff.registry.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgument

DOCKER_IO = "docker.io"
LEGACY_DOCKER_IO = "index.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
NAME_TOTAL_MAX = 255


def _invalid(why: str = "") -> InvalidArgument:
    return InvalidArgument("invalid reference format" + (f": {why}" if why else ""))


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """What Docker prints: ``busybox``, ``user/app``, ``host:5000/app``."""
        if self.domain == DOCKER_IO:
            p = self.path
            if p.startswith("library/") and p.count("/") == 1:
                return p[len("library/"):]
            return p
        return self.name

    def _suffix(self) -> str:
        s = ""
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """``busybox:latest`` / ``busybox@sha256:…``."""
        return self.familiar_name + self._suffix()

    @property
    def tag_or_digest(self) -> str:
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG_RE.match(tag):
            raise _invalid()
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, None, digest)

    # The host to connect to for this repository before mirrors and
    # default-registry are considered.
    @property
    def registry_host(self) -> str:
        return "registry-1.docker.io" if self.domain == DOCKER_IO else self.domain


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1:
        return DOCKER_IO, name
    first = name[:i]
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        domain, rest = first, name[i + 1:]
    else:
        return DOCKER_IO, name
    if domain == LEGACY_DOCKER_IO:
        domain = DOCKER_IO
    return domain, rest


def parse(s: str, default_registry: str | None = None, *, default_tag: bool = True) -> Reference:
    """Parse and normalize a reference the way Docker's ParseNormalizedNamed +
    TagNameOnly do. ``default_registry`` is accepted for the contract's sake:
    names stay Docker's (``docker.io/...``) and the registry configuration
    decides which endpoint serves docker.io (so the docker CLI, which always
    sends ``docker.io/library/x``, and skiff agree on image names)."""
    if not isinstance(s, str) or not s or s != s.strip():
        raise _invalid()
    if _HEX64.match(s):
        raise InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    rest = s
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise _invalid()
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and not _HEX64.match(hexpart):
            raise _invalid()
    tag = None
    # A tag is after the last ':' that comes after the last '/'.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.match(tag):
            raise _invalid()
    domain, path = _split_domain(rest)
    if not domain or not _DOMAIN_RE.match(domain):
        raise _invalid()
    if path.lower() != path:
        shown = f"library/{path}" if domain == DOCKER_IO and "/" not in path else path
        raise _invalid(f"repository name ({shown}) must be lowercase")
    if not _PATH_RE.match(path):
        raise _invalid()
    if domain == DOCKER_IO and "/" not in path:
        path = "library/" + path
    if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def parse_repository(s: str) -> Reference:
    """A repository without tag/digest (e.g. ``fromImage`` with a separate tag)."""
    return parse(s, default_tag=False)
