"""A busybox root filesystem and OCI bundle built offline from the host's
static busybox (Debian package busybox-static)."""

import json
import os
import shutil
import subprocess

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
users:x:100:user
www-data:x:33:
user:x:1000:
nogroup:x:65534:
"""


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            out = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout \
                if shutil.which("file") else "static"
            if "dynamic" not in out:
                return path
    raise FileNotFoundError("static busybox not found: apt-get install busybox-static")


def make_rootfs(dest: str) -> str:
    """Write a busybox root filesystem into ``dest`` (created if missing)."""
    bb = find_busybox()
    os.makedirs(dest, exist_ok=True)
    for d, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
                    ("etc", 0o755), ("dev", 0o755), ("proc", 0o555), ("sys", 0o555),
                    ("tmp", 0o1777), ("root", 0o700), ("home/user", 0o755), ("var/www", 0o755),
                    ("run", 0o755)):
        p = os.path.join(dest, d)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    shutil.copy2(bb, os.path.join(dest, "bin/busybox"))
    os.chmod(os.path.join(dest, "bin/busybox"), 0o755)
    listing = subprocess.run([bb, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in listing:
        if applet in ("bin/busybox",):
            continue
        link = os.path.join(dest, applet)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP),
                       ("etc/hostname", "busybox\n"),
                       ("etc/hosts", "127.0.0.1\tlocalhost\n")):
        with open(os.path.join(dest, name), "w") as f:
            f.write(text)
    os.chown(os.path.join(dest, "home/user"), 1000, 1000) if os.geteuid() == 0 else None
    return dest


def runc_default_spec(args=None, terminal=False, rootfs="rootfs") -> dict:
    """The spec `runc spec` prints, with ``args`` as the process."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args or ["sh"]),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in
                             ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def make_bundle(dest: str, args=None, rootfs_src: str | None = None, terminal=False,
                readonly=False) -> str:
    """An OCI bundle at ``dest``: rootfs/ (copied from ``rootfs_src`` or built)
    and config.json running ``args``."""
    os.makedirs(dest, exist_ok=True)
    rootfs = os.path.join(dest, "rootfs")
    if rootfs_src:
        subprocess.run(["cp", "-a", rootfs_src, rootfs], check=True)
    else:
        make_rootfs(rootfs)
    spec = runc_default_spec(args, terminal=terminal)
    spec["root"]["readonly"] = readonly
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return dest
