"""Media types and small helpers for Docker schema2 and OCI manifests,
indexes and image configs."""

from __future__ import annotations

import json
import platform as _platform

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
LAYER_TYPES = (DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN, OCI_LAYER, OCI_LAYER_GZIP,
               OCI_LAYER_ZSTD, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST + "+gzip",
               OCI_LAYER_NONDIST + "+zstd")

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


def oci_layer_type(compression: str) -> str:
    return {"tar": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


def docker_layer_type(compression: str) -> str:
    return {"tar": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP,
            "zstd": OCI_LAYER_ZSTD}[compression]


def to_oci_layer_type(media_type: str) -> str:
    return {DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
            DOCKER_LAYER_FOREIGN: OCI_LAYER_NONDIST + "+gzip"}.get(media_type, media_type)


def compression_of(media_type: str) -> str:
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return "tar"


def canonical(obj) -> bytes:
    """JSON bytes as Docker writes configs: compact, keys in our order."""
    return json.dumps(obj, separators=(",", ":")).encode()


def host_platform() -> dict:
    m = _platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    p = {"architecture": arch, "os": "linux"}
    if arch == "arm64":
        p["variant"] = "v8"
    return p


def pick_platform(manifests: list[dict], want: dict | None = None) -> dict | None:
    """The index entry for ``want`` (default: this host), else None."""
    want = want or host_platform()
    fallback = None
    for m in manifests:
        p = m.get("platform")
        if not p:
            fallback = fallback or m
            continue
        if p.get("os") == want.get("os", "linux") and \
                p.get("architecture") == want.get("architecture"):
            if not want.get("variant") or p.get("variant") in (None, want.get("variant")):
                return m
    return fallback


def parse_changes(changes, config: dict) -> dict:
    """Apply Dockerfile-style ``--change`` lines (CMD, ENTRYPOINT, ENV,
    WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL, ONBUILD, HEALTHCHECK)
    to an image's ``config`` section (a copy is returned)."""
    from skiff import errors
    import shlex

    cfg = json.loads(json.dumps(config or {}))
    for line in changes or ():
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        instr = parts[0].upper()
        arg = parts[1].strip() if len(parts) > 1 else ""

        def json_or_shell(a: str, shell: bool) -> list:
            if a.startswith("["):
                try:
                    v = json.loads(a)
                    if isinstance(v, list) and all(isinstance(x, str) for x in v):
                        return v
                except ValueError:
                    pass
            return ["/bin/sh", "-c", a] if shell else [a]

        def pairs(a: str) -> list[tuple[str, str]]:
            words = shlex.split(a, posix=True)
            if words and "=" not in words[0]:
                # legacy form: ENV key value...
                k, _, v = a.partition(" ")
                return [(k, v.strip())]
            out = []
            for w in words:
                if "=" not in w:
                    raise errors.InvalidArgument(f"{instr} names can not be blank" if not w
                                                 else f"Syntax error - can't find = in \"{w}\". "
                                                      f"Must be of the form: name=value")
                k, v = w.split("=", 1)
                out.append((k, v))
            return out

        if instr == "CMD":
            cfg["Cmd"] = json_or_shell(arg, True)
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = json_or_shell(arg, True) if arg else None
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in pairs(arg):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif instr == "WORKDIR":
            cfg["WorkingDir"] = arg if arg.startswith("/") else \
                (cfg.get("WorkingDir") or "/").rstrip("/") + "/" + arg
        elif instr == "USER":
            cfg["User"] = arg
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in arg.split():
                if "/" not in p:
                    p += "/tcp"
                ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in pairs(arg):
                labels[k] = v
            cfg["Labels"] = labels
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in (json_or_shell(arg, False) if arg.startswith("[") else arg.split()):
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = arg
        elif instr == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [arg]
        elif instr == "HEALTHCHECK":
            if arg.upper() == "NONE":
                cfg["Healthcheck"] = {"Test": ["NONE"]}
            else:
                a = arg
                if a.upper().startswith("CMD"):
                    a = a[3:].strip()
                cmd = json_or_shell(a, False) if a.startswith("[") else ["CMD-SHELL", a]
                if a.startswith("["):
                    cmd = ["CMD"] + cmd
                cfg["Healthcheck"] = {"Test": cmd}
        elif instr in ("FROM", "RUN", "COPY", "ADD", "ARG", "MAINTAINER", "SHELL"):
            raise errors.InvalidArgument(f"{instr.lower()} is not a valid change command")
        else:
            raise errors.InvalidArgument(
                f"dockerfile parse error on line 1: unknown instruction: {parts[0]}")
    return cfg
