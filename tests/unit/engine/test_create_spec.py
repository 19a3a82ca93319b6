"""build_spec against Docker's known defaults and validation messages."""

import os

import pytest

from skiff import errors, oci
from skiff.engine import create, seccomp_default
from skiff.engine.volumes import VolumeStore

CID = "a" * 64
HOST_CAPS = [c for c in oci.ALL_CAPS if c != "CAP_SYS_RESOURCE"]


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n")
    (r / "etc/group").write_text(
        "root:x:0:\nwheel:x:10:app\napp:x:1000:\naudio:x:29:\n")
    (r / "data").mkdir()
    (r / "data/seed.txt").write_text("from the image\n")
    return str(r)


def spec(cc=None, hc=None, ic=None, rootfs=None, **kw):
    kw.setdefault("host_caps", HOST_CAPS)
    kw.setdefault("cgroup2", False)
    kw.setdefault("arch", "x86_64")
    return create.build_spec(cc or {}, hc or {}, ic if ic is not None else {"Cmd": ["sh"]},
                             container_id=CID, rootfs=rootfs or "/nonexistent",
                             **kw)


def test_docker_defaults():
    s = spec()
    caps = s["process"]["capabilities"]
    assert sorted(caps["bounding"]) == sorted(oci.DOCKER_DEFAULT_CAPS)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "inheritable" not in caps and "ambient" not in caps
    lx = s["linux"]
    for p in oci.DOCKER_MASKED_PATHS:
        assert p in lx["maskedPaths"]
    assert lx["readonlyPaths"] == oci.DOCKER_READONLY_PATHS
    dests = [m["destination"] for m in s["mounts"]]
    assert dests[:7] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                         "/dev/mqueue", "/dev/shm"]
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert "size=65536k" in shm["options"]
    ns = {n["type"] for n in lx["namespaces"]}
    assert ns == {"mount", "ipc", "pid", "uts", "network"}
    assert lx["cgroupsPath"] == f"/skiff/{CID}"
    assert s["hostname"] == CID[:12]
    assert s["process"]["env"][:2] == ["PATH=" + create.DEFAULT_PATH,
                                       "HOSTNAME=" + CID[:12]]
    assert s["process"]["cwd"] == "/"
    assert s["process"]["user"] == {"uid": 0, "gid": 0}
    assert s["root"] == {"path": "/nonexistent", "readonly": False}
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert lx["seccomp"]["defaultErrnoRet"] == 1
    assert s["process"]["noNewPrivileges"] is False


def test_cgroup2_private_cgroupns():
    s = spec(cgroup2=True)
    assert {"type": "cgroup"} in s["linux"]["namespaces"]
    cg = next(m for m in s["mounts"] if m["destination"] == "/sys/fs/cgroup")
    assert cg["type"] == "cgroup2"


def test_entrypoint_cmd_merging():
    ic = {"Entrypoint": ["/ep"], "Cmd": ["a", "b"]}
    assert spec(ic=ic)["process"]["args"] == ["/ep", "a", "b"]
    assert spec({"Cmd": ["x"]}, ic=ic)["process"]["args"] == ["/ep", "x"]
    # a new entrypoint drops the image's Cmd
    assert spec({"Entrypoint": ["/new"]}, ic=ic)["process"]["args"] == ["/new"]
    # --entrypoint "" resets it
    assert spec({"Entrypoint": [""], "Cmd": ["ls"]}, ic=ic)["process"]["args"] == ["ls"]
    assert spec({"Cmd": "echo"}, ic={})["process"]["args"] == ["echo"]
    with pytest.raises(errors.InvalidArgument, match="no command specified"):
        spec(ic={})


def test_env_merge_and_tty():
    s = spec({"Env": ["B=2", "C=3"], "Tty": True}, {"ConsoleSize": [30, 100]},
             ic={"Cmd": ["sh"], "Env": ["PATH=/img", "B=1"]})
    env = s["process"]["env"]
    assert "PATH=/img" in env and "PATH=" + create.DEFAULT_PATH not in env
    assert "B=2" in env and "B=1" not in env and "C=3" in env
    assert "TERM=xterm" in env and "HOME=/" in env
    assert s["process"]["terminal"] is True
    assert s["process"]["consoleSize"] == {"height": 30, "width": 100}


def test_workdir_and_hostname():
    s = spec({"WorkingDir": "/srv/../app", "Hostname": "web", "Domainname": "example.org"})
    assert s["process"]["cwd"] == "/app"
    assert s["hostname"] == "web" and s["domainname"] == "example.org"
    with pytest.raises(errors.InvalidArgument, match="needs to be an absolute path"):
        spec({"WorkingDir": "rel"})


def test_user_from_container_passwd(rootfs):
    s = spec({"User": "app"}, rootfs=rootfs)
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000,
                                    "additionalGids": [10, 1000]}
    assert "HOME=/home/app" in s["process"]["env"]
    s = spec({"User": "1000:29"}, rootfs=rootfs)
    assert s["process"]["user"]["uid"] == 1000 and s["process"]["user"]["gid"] == 29
    s = spec({"User": "4242"}, rootfs=rootfs)
    assert s["process"]["user"] == {"uid": 4242, "gid": 0}
    s = spec({"User": "daemon:audio"}, hc={"GroupAdd": ["wheel", "77"]}, rootfs=rootfs)
    assert s["process"]["user"] == {"uid": 1, "gid": 29, "additionalGids": [10, 29, 77]}
    with pytest.raises(errors.InvalidArgument,
                       match="unable to find user nobody: no matching entries"):
        spec({"User": "nobody"}, rootfs=rootfs)


def test_user_passwd_symlink_stays_in_root(tmp_path):
    """/etc/passwd -> /etc/shadow-like host path must resolve inside the root."""
    r = tmp_path / "r"
    (r / "etc").mkdir(parents=True)
    host = tmp_path / "hostpasswd"
    host.write_text("evil:x:0:0::/:/bin/sh\n")
    os.symlink(str(host), r / "etc/passwd")
    with pytest.raises(errors.InvalidArgument, match="unable to find user evil"):
        spec({"User": "evil"}, rootfs=str(r))


def test_caps_add_drop():
    s = spec(hc={"CapAdd": ["net_admin", "CAP_SYS_TIME"], "CapDrop": ["chown", "CAP_KILL"]})
    b = s["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in b and "CAP_SYS_TIME" in b
    assert "CAP_CHOWN" not in b and "CAP_KILL" not in b
    s = spec(hc={"CapDrop": ["ALL"], "CapAdd": ["NET_BIND_SERVICE"]})
    assert s["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    s = spec(hc={"CapAdd": ["ALL"], "CapDrop": ["MKNOD"]})
    b = s["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in b and "CAP_MKNOD" not in b and "CAP_SYS_RESOURCE" not in b
    with pytest.raises(errors.InvalidArgument, match='unknown capability: "CAP_BOGUS"'):
        spec(hc={"CapAdd": ["bogus"]})
    # CAP_SYS_ADMIN unlocks mount & friends and the free clone
    sc = s["linux"]["seccomp"]
    assert "mount" in sc["syscalls"][0]["names"]
    assert not any(r["names"] == ["clone3"] for r in sc["syscalls"])


def test_privileged_grants_host_set():
    s = spec(hc={"Privileged": True})
    b = s["process"]["capabilities"]["bounding"]
    assert sorted(b) == sorted(HOST_CAPS)
    assert "CAP_SYS_RESOURCE" not in b
    assert "seccomp" not in s["linux"]
    assert s["linux"]["maskedPaths"] == [] and s["linux"]["readonlyPaths"] == []
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    paths = {d["path"] for d in s["linux"].get("devices", [])}
    assert "/dev/null" in paths
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


def test_security_opts(tmp_path):
    s = spec(hc={"SecurityOpt": ["no-new-privileges"]})
    assert s["process"]["noNewPrivileges"] is True
    s = spec(hc={"SecurityOpt": ["seccomp=unconfined"]})
    assert "seccomp" not in s["linux"]
    w = []
    s = spec(hc={"SecurityOpt": ["apparmor=docker-default", "label=disable"]}, warnings=w)
    assert len(w) == 2
    prof = tmp_path / "p.json"
    prof.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ['
                    '{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},'
                    '{"names": ["reboot"], "action": "SCMP_ACT_ALLOW",'
                    ' "includes": {"caps": ["CAP_SYS_BOOT"]}}]}')
    s = spec(hc={"SecurityOpt": [f"seccomp={prof}"]})
    sc = s["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ALLOW"
    assert [r["names"] for r in sc["syscalls"]] == [["mkdir"]]
    # the docker CLI sends the profile's content rather than its path
    s = spec(hc={"SecurityOpt": ["seccomp=" + prof.read_text()]})
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    with pytest.raises(errors.InvalidArgument, match='invalid --security-opt 2: "foo=bar"'):
        spec(hc={"SecurityOpt": ["foo=bar"]})
    with pytest.raises(errors.InvalidArgument, match='invalid --security-opt 1: "bogus"'):
        spec(hc={"SecurityOpt": ["bogus"]})


def test_resources():
    s = spec(hc={"Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 1500000000,
                 "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0", "PidsLimit": 50,
                 "BlkioWeight": 300, "OomScoreAdj": 100,
                 "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]})
    r = s["linux"]["resources"]
    assert r["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20}
    assert r["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0",
                        "mems": "0"}
    assert r["pids"] == {"limit": 50}
    assert r["blockIO"] == {"weight": 300}
    assert s["process"]["oomScoreAdj"] == 100
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}]
    r = spec(hc={"Memory": 64 << 20, "MemorySwap": -1})["linux"]["resources"]
    assert r["memory"]["swap"] == -1
    r = spec(hc={"CpuQuota": 50000, "CpuPeriod": 100000})["linux"]["resources"]
    assert r["cpu"] == {"quota": 50000, "period": 100000}


@pytest.mark.parametrize("hc,msg", [
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"MemorySwap": 100 << 20}, "You should always set the Memory limit when using "
                                "Memoryswap limit"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be "
                                                    "larger than memory limit"),
    ({"Memory": 32 << 20, "MemoryReservation": 64 << 20},
     "Minimum memory limit can not be less than memory reservation limit"),
    ({"NanoCpus": 10**9, "CpuQuota": 1000}, "Conflicting options: Nano CPUs and CPU Quota"),
    ({"NanoCpus": 10**9, "CpuPeriod": 1000}, "Conflicting options: Nano CPUs and CPU Period"),
    ({"NanoCpus": 10**12}, "Range of CPUs is from 0.01 to"),
    ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"OomScoreAdj": 5000}, "range for oom score adj is [-1000, 1000]"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"CpusetCpus": "a-b"}, "Invalid value a-b for cpuset cpus"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "ulimit soft limit"),
    ({"Sysctls": {"kernel.panic": "1"}}, "sysctl 'kernel.panic' is not allowed"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}, "NetworkMode": "host"},
     "not allowed in host network namespace"),
    ({"DeviceCgroupRules": ["x 1:2 r"]}, "invalid device cgroup format"),
    ({"Binds": ["/a:relative"]}, "mount path must be absolute"),
    ({"Binds": ["/a:/"]}, "destination can't be '/'"),
    ({"Binds": ["/a:/x", "/b:/x"]}, "Duplicate mount point: /x"),
    ({"Binds": ["/a:/x:bogus"]}, "invalid mode: bogus"),
    ({"Binds": ["bad name!:/x"]}, "includes invalid characters for a local volume name"),
    ({"Mounts": [{"Type": "bind", "Source": "/does/not/exist", "Target": "/x"}]},
     "bind source path does not exist: /does/not/exist"),
    ({"Mounts": [{"Type": "nfs", "Target": "/x"}]}, "mount type unknown"),
])
def test_validation_messages(hc, msg):
    with pytest.raises(errors.InvalidArgument) as ei:
        spec(hc=hc)
    assert msg in ei.value.message


def test_namespace_modes():
    s = spec(hc={"IpcMode": "host", "PidMode": "host", "UTSMode": "host",
                 "NetworkMode": "host"})
    assert s["linux"]["namespaces"] == [{"type": "mount"}]
    assert "hostname" not in s
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    s = spec(hc={"PidMode": "container:abc", "NetworkMode": "container:abc"},
             container_namespaces={"pid": "/proc/9/ns/pid", "network": "/proc/9/ns/net"})
    assert {"type": "pid", "path": "/proc/9/ns/pid"} in s["linux"]["namespaces"]
    assert {"type": "network", "path": "/proc/9/ns/net"} in s["linux"]["namespaces"]
    s = spec(netns_path="/run/skiff/netns/x")
    assert {"type": "network", "path": "/run/skiff/netns/x"} in s["linux"]["namespaces"]
    s = spec(hc={"IpcMode": "none"})
    assert not any(m["destination"] == "/dev/shm" for m in s["mounts"])
    with pytest.raises(errors.InvalidArgument):
        spec(hc={"IpcMode": "container:nope"})
    s = spec(hc={"Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"},
                 "ShmSize": 128 << 20})
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert "size=131072k" in shm["options"]


def test_binds_tmpfs_and_extra_mounts(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    extra = [{"destination": "/etc/hosts", "type": "bind", "source": "/tmp/hosts",
              "options": ["rbind", "rprivate"]},
             {"destination": "/etc/resolv.conf", "type": "bind", "source": "/tmp/r",
              "options": ["rbind", "rprivate"]}]
    points = []
    s = spec(hc={"Binds": [f"{src}:/data:ro,rshared", f"{tmp_path}/new:/new"],
                 "Tmpfs": {"/run": "rw,size=64m,exec"},
                 "Mounts": [{"Type": "tmpfs", "Target": "/scratch",
                             "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}},
                            {"Type": "bind", "Source": str(src),
                             "Target": "/etc/resolv.conf", "ReadOnly": True}],
                 "ReadonlyRootfs": True},
             mounts_extra=extra, mount_points=points)
    by = {m["destination"]: m for m in s["mounts"]}
    assert by["/data"]["options"] == ["rbind", "rshared", "ro"]
    assert by["/data"]["source"] == str(src)
    assert os.path.isdir(tmp_path / "new")  # -v creates a missing host dir
    assert by["/run"]["type"] == "tmpfs"
    assert "size=67108864" in by["/run"]["options"] and "exec" in by["/run"]["options"]
    assert "noexec" not in by["/run"]["options"]
    assert "mode=1777" in by["/scratch"]["options"]
    assert by["/etc/hosts"]["source"] == "/tmp/hosts"
    assert by["/etc/resolv.conf"]["source"] == str(src)  # the user's wins
    assert s["root"]["readonly"] is True
    assert {"Type": "bind", "Source": str(src), "Destination": "/data",
            "Mode": "ro,rshared", "RW": False, "Propagation": "rshared"} in points


def test_volumes_created_last_and_copied_up(tmp_path, rootfs):
    store = VolumeStore(str(tmp_path / "volumes"))
    points = []
    s = spec({"Volumes": {"/anon": {}}}, {"Binds": ["named:/data"]}, rootfs=rootfs,
             volume_store=store, mount_points=points)
    by = {m["destination"]: m for m in s["mounts"]}
    named = store.inspect("named")
    assert by["/data"]["source"] == named["Mountpoint"]
    with open(os.path.join(named["Mountpoint"], "seed.txt")) as f:
        assert f.read() == "from the image\n"
    anon = [p for p in points if p["Destination"] == "/anon"][0]
    assert len(anon["Name"]) == 64
    assert store.users("named") == [CID]
    # a failing request creates no volume
    before = store.names()
    with pytest.raises(errors.InvalidArgument):
        spec({}, {"Binds": ["other:/x"], "Memory": 1}, rootfs=rootfs, volume_store=store)
    assert store.names() == before


def test_init_and_annotations(tmp_path):
    init = tmp_path / "tini"
    init.write_text("")
    s = spec({"Labels": {"a": "b"}}, {"Init": True, "Annotations": {"x": "y"}},
             init_path=str(init))
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert any(m["destination"] == "/sbin/docker-init" and m["source"] == str(init)
               for m in s["mounts"])
    assert s["annotations"] == {"a": "b", "x": "y"}


def test_devices():
    s = spec(hc={"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                              "CgroupPermissions": "rw"}],
                 "DeviceCgroupRules": ["c 42:* rmw"]})
    assert {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3} .items() <= \
        s["linux"]["devices"][0].items()
    rules = s["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules
    with pytest.raises(errors.InvalidArgument, match="error gathering device information"):
        spec(hc={"Devices": [{"PathOnHost": "/dev/nonexistent-dev"}]})


# ------------------------------------------------------------ seccomp facts
def _names(prof, action="SCMP_ACT_ALLOW"):
    out = set()
    for r in prof["syscalls"]:
        if r["action"] == action and not r.get("args"):
            out.update(r["names"])
    return out


def test_seccomp_default_facts():
    p = seccomp_default.render(oci.DOCKER_DEFAULT_CAPS, "x86_64", kernel="6.1.0")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _names(p)
    for ok in ("read", "write", "openat", "execve", "ptrace", "chroot", "arch_prctl",
               "epoll_wait"):
        assert ok in allowed
    for banned in ("keyctl", "add_key", "request_key", "userfaultfd", "kexec_load",
                   "pivot_root", "io_uring_setup", "mount", "umount2", "unshare", "setns",
                   "reboot", "init_module", "bpf", "perf_event_open", "clock_settime",
                   "open_by_handle_at", "swapon", "vm86", "acct", "syslog"):
        assert banned not in allowed
    rules = {r["names"][0]: r for r in p["syscalls"] if len(r["names"]) == 1}
    assert [a["value"] for a in rules["personality"]["args"]] == \
        [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert rules["socket"]["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]
    assert rules["clone"]["args"][0]["value"] == 0x7E020000
    assert rules["clone"]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert rules["clone3"]["action"] == "SCMP_ACT_ERRNO"
    assert rules["clone3"]["errnoRet"] == 38
    assert len(seccomp_default.CAP_ALLOWED["CAP_SYS_ADMIN"]) == 26
    old = seccomp_default.render(oci.DOCKER_DEFAULT_CAPS, "x86_64", kernel="4.4.0")
    assert "ptrace" not in _names(old)


def test_seccomp_capability_groups():
    caps = oci.DOCKER_DEFAULT_CAPS + ["CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_SYS_NICE"]
    allowed = _names(seccomp_default.render(caps, "aarch64", kernel="6.1"))
    assert {"settimeofday", "clock_settime", "kcmp", "process_madvise", "mbind",
            "set_mempolicy"} <= allowed
    assert "arch_prctl" not in allowed
    p = seccomp_default.render(oci.DOCKER_DEFAULT_CAPS, "s390x", kernel="6.1")
    clone = next(r for r in p["syscalls"] if r["names"] == ["clone"])
    assert clone["args"][0]["index"] == 1


def test_engine_form(tmp_path, rootfs):
    """The engine passes its merged config, resolved process and mounts."""
    store = VolumeStore(str(tmp_path / "volumes"))
    vol = store.get_or_create("fresh")
    proc = {"terminal": True, "user": {"uid": 1000, "gid": 1000}, "args": ["sh", "-c", "x"],
            "env": ["A=1"], "cwd": "/app", "consoleSize": {"height": 5, "width": 7}}
    extra = [{"destination": "/etc/hosts", "type": "bind", "source": "/h",
              "options": ["rbind", "rprivate"]},
             {"destination": "/data", "type": "bind", "source": vol["Mountpoint"],
              "options": ["rbind", "rprivate"]},
             {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid"]}]
    s = create.build_spec(
        config={"Hostname": "h1", "Tty": True, "Image": "busybox"},
        host_config={"CapDrop": ["NET_RAW"], "Tmpfs": {"/run": "size=1m"},
                     "Memory": 32 << 20, "UTSMode": "", "NetworkMode": "bridge"},
        container_id=CID, process=proc, netns_path="/run/skiff/netns/x",
        extra_mounts=extra, hostname="h1", cgroups_path=f"/skiff/{CID}", rootfs=rootfs,
        host_caps=HOST_CAPS, cgroup2=False, arch="x86_64")
    p = s["process"]
    assert p["args"] == ["sh", "-c", "x"] and p["cwd"] == "/app"
    assert p["user"] == {"uid": 1000, "gid": 1000}
    assert p["consoleSize"] == {"height": 5, "width": 7}
    assert "CAP_NET_RAW" not in p["capabilities"]["bounding"]
    assert s["linux"]["cgroupsPath"] == f"/skiff/{CID}"
    assert s["linux"]["resources"]["memory"]["limit"] == 32 << 20
    by = {m["destination"]: m for m in s["mounts"]}
    assert "size=1048576" in by["/run"]["options"]
    assert by["/etc/hosts"]["source"] == "/h"
    # copy-up into the fresh volume the engine created
    assert os.path.exists(os.path.join(vol["Mountpoint"], "seed.txt"))
    assert s["linux"]["seccomp"]["defaultErrnoRet"] == 1


def test_validate_for_create():
    assert create.validate({}, {"Memory": 64 << 20}) == []
    with pytest.raises(errors.InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        create.validate({}, {"Memory": 1024})
    with pytest.raises(errors.InvalidArgument, match="Duplicate mount point"):
        create.validate({}, {"Binds": ["/a:/x"], "Tmpfs": {"/x": ""}})
    with pytest.raises(errors.InvalidArgument, match='unknown capability: "CAP_NOPE"'):
        create.validate({}, {"CapAdd": ["nope"]}, host_caps=HOST_CAPS)
    w = create.validate({}, {"OomKillDisable": True, "SecurityOpt": ["apparmor=x"]})
    assert len(w) == 2


def test_cgroup_parent():
    assert spec(hc={"CgroupParent": "/mine"})["linux"]["cgroupsPath"] == f"/mine/{CID}"
    assert spec(hc={"CgroupParent": "mine"})["linux"]["cgroupsPath"] == f"/mine/{CID}"
    s = create.build_spec(config={}, host_config={"CgroupParent": "/p"}, container_id=CID,
                          process={"args": ["sh"]}, cgroups_path=f"/skiff/{CID}",
                          rootfs="/nonexistent", host_caps=HOST_CAPS, cgroup2=False)
    assert s["linux"]["cgroupsPath"] == f"/p/{CID}"
    with pytest.raises(errors.InvalidArgument, match="invalid cgroup parent"):
        spec(hc={"CgroupParent": "/a/../../b"})
