"""Docker's default OCI spec as a container sees it (skiff.engine.create),
driven through the docker SDK: capabilities, seccomp, masked and read-only
paths, resources, users, mounts."""

import docker
import pytest

DEFAULT_CAPS_HEX = "00000000a80425fb"  # Docker's 14 default capabilities


def _run(skiffd, cmd, **kw):
    kw.setdefault("network_mode", "none")
    return skiffd.client.containers.run("busybox", ["sh", "-c", cmd], remove=True,
                                        **kw).decode()


def _status(out, key):
    for line in out.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in {out!r}")


def _host_bounding():
    with open("/proc/self/status") as f:
        return _status(f.read(), "CapBnd")


def test_default_caps_seccomp_and_paths(skiffd):
    out = _run(skiffd, "cat /proc/self/status; echo ---; cat /proc/kcore | wc -c; "
                       "cat /proc/keys | wc -c; "
                       "(echo 1 > /proc/sys/vm/drop_caches) 2>&1; "
                       "(mkdir /sys/h5b) 2>&1; echo; "
                       "(unshare -U true) 2>&1; echo rc=$?")
    assert _status(out, "CapBnd") == DEFAULT_CAPS_HEX
    assert _status(out, "CapEff") == DEFAULT_CAPS_HEX
    assert _status(out, "CapInh") == "0000000000000000"
    assert _status(out, "Seccomp") == "2"
    assert _status(out, "NoNewPrivs") == "0"
    tail = out.split("---", 1)[1].split("\n")
    assert tail[1].strip() == "0" and tail[2].strip() == "0"  # masked: empty
    assert "Read-only file system" in out
    # unshare(CLONE_NEWUSER) is refused by the seccomp clone/unshare rules
    assert "rc=0" not in out


def test_caps_add_drop_privileged(skiffd):
    out = _run(skiffd, "cat /proc/self/status", cap_add=["NET_ADMIN"], cap_drop=["CHOWN"])
    bnd = int(_status(out, "CapBnd"), 16)
    assert bnd & (1 << 12) and not bnd & 1
    out = _run(skiffd, "cat /proc/self/status", cap_drop=["ALL"])
    assert int(_status(out, "CapBnd"), 16) == 0
    out = _run(skiffd, "cat /proc/self/status; ls /dev | wc -l; "
                       "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted", privileged=True)
    assert _status(out, "CapBnd") == _host_bounding()
    assert _status(out, "Seccomp") == "0"
    assert "mounted" in out
    out = _run(skiffd, "grep Seccomp /proc/self/status",
               security_opt=["seccomp=unconfined", "no-new-privileges"])
    assert _status(out, "Seccomp") == "0"
    out = _run(skiffd, "grep NoNewPrivs /proc/self/status", security_opt=["no-new-privileges"])
    assert _status(out, "NoNewPrivs") == "1"
    with pytest.raises(docker.errors.APIError) as ei:
        _run(skiffd, "true", cap_add=["NOT_A_CAP"])
    assert "unknown capability" in str(ei.value)


def test_user_workdir_hostname_env(skiffd):
    out = _run(skiffd, "id -u; id -g; pwd; hostname; echo $FOO; echo $HOME",
               user="65534:65534", working_dir="/tmp", hostname="h5b-host",
               environment={"FOO": "bar"})
    words = out.split()
    assert words[:5] == ["65534", "65534", "/tmp", "h5b-host", "bar"]
    assert len(words) == 6 and words[5].startswith("/")  # HOME from the passwd file
    out = _run(skiffd, "id -un", user="root")
    assert out.strip() == "root"


def test_resources_and_mounts(skiffd):
    out = _run(skiffd,
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
               "cat /sys/fs/cgroup/memory.max; "
               "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
               "ulimit -n; grep ' /run ' /proc/mounts; grep ' /dev/shm ' /proc/mounts; "
               "touch /h5b 2>&1; echo done",
               mem_limit="64m", pids_limit=42,
               ulimits=[docker.types.Ulimit(name="nofile", soft=512, hard=1024)],
               tmpfs={"/run": "size=8m"}, shm_size="16m", read_only=True)
    lines = out.splitlines()
    assert lines[0] == str(64 << 20)
    assert lines[1] == "42"
    assert lines[2] == "512"
    assert "tmpfs" in lines[3] and "size=8192k" in lines[3]
    assert "size=16384k" in lines[4]
    assert "Read-only file system" in out
    with pytest.raises(docker.errors.APIError) as ei:
        _run(skiffd, "true", mem_limit="1m")
    assert "Minimum memory limit allowed is 6MB" in str(ei.value)


def test_custom_seccomp_profile(skiffd):
    import json

    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    out = _run(skiffd, "mkdir /tmp/h5b-x 2>&1; grep Seccomp: /proc/self/status",
               security_opt=["seccomp=" + json.dumps(profile)])
    assert "Operation not permitted" in out
    assert _status(out, "Seccomp") == "2"
