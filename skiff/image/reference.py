"""Local image names, Docker style: ``[registry/]path[:tag][@digest]``.

Names are kept in their familiar form (``busybox:latest``,
``localhost:5000/app:1``): ``docker.io/`` and ``library/`` are dropped, as
the docker CLI shows them. (skiff.registry.reference parses references for
pulls; this module only names images in the local store.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiff import errors

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
ID_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
DEFAULT_DOMAIN = "docker.io"


@dataclass(frozen=True)
class Ref:
    name: str               # familiar repository name: "busybox", "localhost:5000/a/b"
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def tagged(self) -> str:
        return f"{self.name}:{self.tag or 'latest'}"


def familiar(name: str) -> str:
    if name.startswith(DEFAULT_DOMAIN + "/"):
        name = name[len(DEFAULT_DOMAIN) + 1:]
        if name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/"):]
    elif name.startswith("index.docker.io/"):
        return familiar(DEFAULT_DOMAIN + name[len("index.docker.io"):])
    return name


def parse(ref: str, default_tag: str | None = "latest") -> Ref:
    """Parse ``ref``; a missing tag becomes ``default_tag`` unless a digest
    is given. Raises InvalidArgument("invalid reference format")."""
    if not ref or len(ref) > 4096:
        raise errors.InvalidArgument("invalid reference format")
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise errors.InvalidArgument("invalid reference format")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise errors.InvalidArgument("invalid reference format")
    if not _NAME_RE.match(name) or len(name) > 255:
        if name.lower() != name and _NAME_RE.match(name.lower()):
            raise errors.InvalidArgument(
                "invalid reference format: repository name (library/"
                f"{name}) must be lowercase")
        raise errors.InvalidArgument("invalid reference format")
    # a domain is only a domain if it looks like one
    first = name.split("/", 1)[0]
    if "/" in name and not ("." in first or ":" in first or first == "localhost"
                            or first.lower() != first):
        pass
    name = familiar(name)
    if tag is None and digest is None:
        tag = default_tag
    return Ref(name, tag, digest)


def is_id(s: str) -> bool:
    return bool(ID_RE.match(s))
