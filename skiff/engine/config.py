"""Daemon configuration: /etc/skiff/daemon.json (Docker's key names) + flags."""

import json
import os
import shutil

from skiff import errors

DEFAULT_CONFIG_FILE = "/etc/skiff/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/skiff"
DEFAULT_EXEC_ROOT = "/run/skiff"
DEFAULT_REGISTRY = "docker.io"
DEFAULT_CGROUP_PARENT = "/skiff"

KNOWN_KEYS = {
    "data-root", "exec-root", "hosts", "registry-mirrors", "insecure-registries",
    "runtimes", "default-runtime", "bridge", "bip", "default-address-pools",
    "iptables", "ip-forward", "dns", "dns-search", "dns-opts", "icc",
    "max-concurrent-downloads", "max-concurrent-uploads", "debug", "log-level",
    "default-registry", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey",
    "live-restore", "log-driver", "log-opts", "storage-driver", "userland-proxy",
    "init", "init-path", "experimental", "features", "exec-opts", "labels",
    "cgroup-parent", "default-ipc-mode", "default-shm-size",
}


def _which(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


class DaemonConfig:
    def __init__(self, data: dict | None = None):
        d = dict(data or {})
        unknown = set(d) - KNOWN_KEYS
        if unknown:
            raise errors.InvalidArgument(
                "the following directives don't match any configuration option: "
                + ", ".join(sorted(unknown)))
        self.raw = d
        self.data_root = d.get("data-root", DEFAULT_DATA_ROOT)
        self.exec_root = d.get("exec-root", DEFAULT_EXEC_ROOT)
        self.hosts = list(d.get("hosts") or [])
        self.registry_mirrors = list(d.get("registry-mirrors") or [])
        self.insecure_registries = list(d.get("insecure-registries") or [])
        self.default_registry = d.get("default-registry", DEFAULT_REGISTRY)
        self.runtimes = {"runc": {"path": _which("runc") or "runc"},
                         "crun": {"path": _which("crun") or "crun"},
                         "skiff-runtime": {"path": _which("skiff-runtime") or "skiff-runtime"}}
        for name, spec in (d.get("runtimes") or {}).items():
            if not isinstance(spec, dict) or "path" not in spec:
                raise errors.InvalidArgument(f"runtime {name}: a path is required")
            self.runtimes[name] = dict(spec)
        self.default_runtime = d.get("default-runtime", "skiff-runtime")
        self.bridge = d.get("bridge")
        self.bip = d.get("bip")
        self.default_address_pools = d.get("default-address-pools")
        self.iptables = d.get("iptables", True)
        self.ip_forward = d.get("ip-forward", True)
        self.dns = list(d.get("dns") or [])
        self.icc = d.get("icc", True)
        self.max_concurrent_downloads = d.get("max-concurrent-downloads", 3)
        self.max_concurrent_uploads = d.get("max-concurrent-uploads", 5)
        self.debug = bool(d.get("debug", False))
        self.log_level = d.get("log-level", "info")
        self.labels = list(d.get("labels") or [])
        # the cgroup every container's cgroup is made in (Docker's /docker)
        parent = str(d.get("cgroup-parent") or DEFAULT_CGROUP_PARENT).rstrip("/")
        if not parent or ".." in parent.split("/"):
            raise errors.InvalidArgument(f"invalid cgroup-parent: {d.get('cgroup-parent')!r}")
        self.cgroup_parent = parent if parent.startswith("/") else "/" + parent
        # IpcMode and ShmSize of containers created without one (Docker's keys)
        ipc = d.get("default-ipc-mode") or "private"
        if ipc not in ("private", "shareable"):
            hint = 'use "shareable" or "private"'
            if ipc in ("host", "none") or ipc.startswith("container:"):
                raise errors.InvalidArgument(
                    f'IPC mode "{ipc}" is not supported as default value; {hint}')
            raise errors.InvalidArgument(f"default IPC mode setting ({ipc}) is invalid; {hint}")
        self.default_ipc_mode = ipc
        self.default_shm_size = 64 << 20
        if d.get("default-shm-size"):
            from skiff.engine.volumes import _ram_in_bytes
            try:
                self.default_shm_size = _ram_in_bytes(str(d["default-shm-size"]))
            except ValueError as e:
                raise errors.InvalidArgument(f"invalid default-shm-size: {e}")
        self.init_path = d.get("init-path") or _which("tini-static", "tini", "catatonit",
                                                       "docker-init")
        self.tls = d.get("tls", False) or d.get("tlsverify", False)
        self.tlscacert = d.get("tlscacert")
        self.tlscert = d.get("tlscert")
        self.tlskey = d.get("tlskey")
        self.tlsverify = d.get("tlsverify", False)
        self.config_file = None

    @classmethod
    def load(cls, path: str | None, overrides: dict | None = None) -> "DaemonConfig":
        data = {}
        p = path or DEFAULT_CONFIG_FILE
        if os.path.exists(p):
            with open(p) as f:
                text = f.read()
            if text.strip():
                try:
                    data = json.loads(text)
                except ValueError as e:
                    raise errors.InvalidArgument(f"unable to configure the Docker daemon with file {p}: {e}")
        elif path:
            raise errors.InvalidArgument(f"open {path}: no such file or directory")
        for k, v in (overrides or {}).items():
            if v is not None:
                if k in data and data[k] != v and k != "hosts":
                    pass  # flags win, as docker would reject; we prefer the flag
                data[k] = v
        cfg = cls(data)
        cfg.config_file = p
        return cfg

    def runtime_path(self, name: str | None) -> str:
        name = name or self.default_runtime
        spec = self.runtimes.get(name)
        if spec is None:
            raise errors.InvalidArgument(f"unknown or invalid runtime name: {name}")
        return spec["path"]

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.exec_root, "runtime")
