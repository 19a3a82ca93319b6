"""A minimal Docker-like OCI spec, used only when skiff.engine.create (the
full Docker create-request → spec conversion) is not importable."""

import copy

from skiff import oci


def build(rec: dict, *, process: dict, netns: str | None, mounts: list, hostname: str,
          cgroups_path: str) -> dict:
    hc = rec["HostConfig"]
    caps = list(oci.DOCKER_DEFAULT_CAPS)
    ns = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    ns.append({"type": "network", "path": netns} if netns else {"type": "network"})
    spec = {
        "ociVersion": oci.OCI_VERSION,
        "process": dict(process, capabilities={k: caps for k in
                                                ("bounding", "effective", "permitted")},
                        noNewPrivileges=False),
        "root": {"path": "rootfs", "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": copy.deepcopy(oci.DEFAULT_MOUNTS) + mounts,
        "linux": {
            "namespaces": ns,
            "maskedPaths": list(oci.DOCKER_MASKED_PATHS),
            "readonlyPaths": list(oci.DOCKER_READONLY_PATHS),
            "cgroupsPath": cgroups_path,
            "resources": {"devices": copy.deepcopy(oci.DOCKER_DEVICE_RULES)},
        },
    }
    return spec
