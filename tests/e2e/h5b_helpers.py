"""Helpers for the image/volume/cp/network e2e tests (engineer H5b)."""

import io
import os
import subprocess
import tarfile
import time

from skiff.testing import busybox


def rootfs_tar(path: str, extra: dict | None = None) -> str:
    """A root filesystem tar (busybox + ``extra`` {path: text}) for docker import."""
    d = path + ".d"
    busybox.make_rootfs(d)
    for name, text in (extra or {}).items():
        p = os.path.join(d, name.lstrip("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    with tarfile.open(path, "w") as tf:
        for entry in sorted(os.listdir(d)):
            tf.add(os.path.join(d, entry), arcname=entry)
    subprocess.run(["rm", "-rf", d], check=True)
    return path


def tar_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class NetnsRegistry:
    """Debian's docker-registry started inside the test daemon's network
    namespace on the daemon's default-registry port, so short names
    (``busybox``) and 127.0.0.1:<port>/... both reach it and nothing else."""

    def __init__(self, skiffd, d: str):
        from skiff.testing.registry import Registry

        self.skiffd = skiffd
        self.port = int(skiffd.registry.rsplit(":", 1)[1])
        self.reg = Registry(d, port=self.port)
        self.host = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        import json

        cfgpath = os.path.join(self.reg.dir, "config.yml")
        with open(cfgpath, "w") as f:
            json.dump(self.reg._config(), f)
        log = open(self.reg.log_path, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.skiffd.netns}", "--", "docker-registry",
             "serve", cfgpath], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        probe = ("import socket,sys\n"
                 f"socket.create_connection(('127.0.0.1', {self.port}), 0.5)\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.skiffd.nsexec("/usr/bin/python3", "-c", probe).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not start in the daemon's netns")

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def logs_until(skiffd, name, marker, timeout=20):
    """`docker logs name` once it holds ``marker`` (fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        out = skiffd.docker("logs", name).stdout
        if marker in out or time.monotonic() > deadline:
            assert marker in out, out
            return out
        time.sleep(0.05)
