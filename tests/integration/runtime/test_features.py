"""What a process sees inside the container, on skiff-runtime, runc and crun
alike: capabilities, no_new_privs, mounts, users, rlimits, masked and
read-only paths, devices, user namespaces, sysctl."""

import os

from tests.integration.runtime.conftest import edit_config, run_bundle, with_userns

CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE = 29, 5, 10


def _status(out):
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_default_caps_and_no_new_privs(runtime, make_bundle):
    code, out = run_bundle(runtime, make_bundle(["cat", "/proc/self/status"]))
    assert code == 0
    st = _status(out)
    want = (1 << CAP_AUDIT_WRITE) | (1 << CAP_KILL) | (1 << CAP_NET_BIND_SERVICE)
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[key], 16) == want, (key, st[key])
    assert int(st["CapInh"], 16) == 0
    assert int(st["CapAmb"], 16) == 0
    assert st["NoNewPrivs"].strip() == "1"


def test_all_five_cap_sets_for_non_root(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/self/status"])

    def f(s):
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
        s["process"]["noNewPrivileges"] = False
        caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"]
        s["process"]["capabilities"] = {"bounding": caps, "effective": caps,
                                        "permitted": caps, "inheritable": caps,
                                        "ambient": ["CAP_NET_BIND_SERVICE"]}
    edit_config(bundle, f)
    code, out = run_bundle(runtime, bundle)
    assert code == 0
    st = _status(out)
    three = (1 << 10) | (1 << 5) | (1 << 0)
    assert int(st["CapBnd"], 16) == three
    assert int(st["CapInh"], 16) == three
    assert int(st["CapAmb"], 16) == 1 << 10
    # a non-root process keeps only its ambient set across execve
    assert int(st["CapEff"], 16) == 1 << 10
    assert int(st["CapPrm"], 16) == 1 << 10
    assert st["NoNewPrivs"].strip() == "0"


def test_user_groups_and_home(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "id; echo HOME=$HOME; cat /proc/self/status"])

    def f(s):
        s["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [33, 5]}
    edit_config(bundle, f)
    code, out = run_bundle(runtime, bundle)
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("uid=1000(user) gid=100(users)")
    assert "33(www-data)" in first and "5(tty)" in first
    assert "HOME=/home/user" in out
    st = _status(out)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["100"] * 4
    assert sorted(st["Groups"].split()) == ["33", "5"]


def test_cwd_and_env(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "pwd; echo $FOO"])

    def f(s):
        s["process"]["cwd"] = "/tmp"
        s["process"]["env"].append("FOO=bar baz")
    edit_config(bundle, f)
    assert run_bundle(runtime, bundle) == (0, "/tmp\nbar baz\n")


def test_rlimits(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"])

    def f(s):
        s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    edit_config(bundle, f)
    assert run_bundle(runtime, bundle) == (0, "321\n654\n0\n")


def test_readonly_root_and_mounts(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; "
                                      "touch /dev/shm/y && echo shm-rw; cat /proc/self/mountinfo"],
                         readonly=True)
    code, out = run_bundle(runtime, bundle)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "ro"
    assert lines[1] == "shm-rw"
    mi = {}
    for line in lines[2:]:
        parts = line.split()
        sep = parts.index("-")
        mi[parts[4]] = (parts[5].split(","), parts[sep + 1])
    assert "ro" in mi["/"][0]
    assert mi["/proc"][1] == "proc"
    assert mi["/dev"][1] == "tmpfs"
    assert mi["/dev/pts"][1] == "devpts"
    assert mi["/dev/shm"][1] == "tmpfs" and "nodev" in mi["/dev/shm"][0]
    assert mi["/dev/mqueue"][1] == "mqueue"
    assert mi["/sys"][1] == "sysfs" and "ro" in mi["/sys"][0]
    assert "/sys/fs/cgroup" in mi
    # nothing of the host's mount table leaks in
    assert not any(mp.startswith("/home") or mp.startswith("/work") for mp in mi)


def test_bind_mounts_with_options(runtime, make_bundle, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("from host\n")
    bundle = make_bundle(["sh", "-c", "cat /mnt/ro/hello; touch /mnt/ro/new 2>/dev/null || "
                                      "echo denied; touch /mnt/rw/new && echo written; "
                                      "cat /etc/hostfile"])
    hostfile = tmp_path / "file"
    hostfile.write_text("single file\n")

    def f(s):
        s["mounts"] += [
            {"destination": "/mnt/ro", "type": "bind", "source": str(src),
             "options": ["rbind", "ro"]},
            {"destination": "/mnt/rw", "type": "bind", "source": str(src),
             "options": ["bind", "rw", "nosuid"]},
            {"destination": "/etc/hostfile", "type": "bind", "source": str(hostfile),
             "options": ["bind", "ro"]},
            {"destination": "/run/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["size=1m"]},
        ]
    edit_config(bundle, f)
    code, out = run_bundle(runtime, bundle)
    assert code == 0, out
    assert out == "from host\ndenied\nwritten\nsingle file\n"
    assert (src / "new").exists()


def test_masked_and_readonly_paths(runtime, make_bundle):
    script = ("cat /proc/keys 2>&1 | wc -c; ls /proc/acpi | wc -l; "
              "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro; "
              "cat /proc/timer_list | wc -c")
    bundle = make_bundle(["sh", "-c", script])

    def f(s):
        s["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"]
                                        for k in ("bounding", "effective", "permitted")}
    edit_config(bundle, f)
    code, out = run_bundle(runtime, bundle)
    assert code == 0
    assert out.split() == ["0", "0", "sys-ro", "0"]


def test_devices(runtime, make_bundle):
    script = ("ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "
              "/dev/fuse; for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; "
              "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok")
    bundle = make_bundle(["sh", "-c", script])

    def f(s):
        s["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10,
                                  "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 0}]
    edit_config(bundle, f)
    code, out = run_bundle(runtime, bundle)
    assert code == 0, out
    lines = out.splitlines()
    modes = {ln.split()[-1]: (ln.split()[0], ln.split()[4].rstrip(","), ln.split()[5])
             for ln in lines[:7]}
    assert modes["/dev/null"] == ("crw-rw-rw-", "1", "3")
    assert modes["/dev/tty"] == ("crw-rw-rw-", "5", "0")
    assert modes["/dev/fuse"] == ("crw-r-----", "10", "229")
    assert lines[7:12] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                           "/proc/self/fd/2", "pts/ptmx"]
    assert lines[12:] == ["4", "null-ok"]


def test_user_namespace_mapping(runtime, busybox_rootfs):
    import shutil
    import tempfile
    from skiff.testing.busybox import make_bundle
    # the bundle must be reachable by the mapped root: not under pytest's 0700 tmp
    top = tempfile.mkdtemp(prefix="skiff-userns-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        _userns(runtime, make_bundle(os.path.join(top, "b"), rootfs_src=busybox_rootfs,
                                     args=["sh", "-c", "cat /proc/self/uid_map "
                                           "/proc/self/gid_map; id -u; stat -c %u /bin/busybox"]))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _userns(runtime, bundle):
    # the rootfs must be owned by the mapped root
    os.system(f"chown -R 100000:100000 {bundle}/rootfs")

    edit_config(bundle, with_userns)
    code, out = run_bundle(runtime, bundle)
    assert code == 0, out
    lines = [ln.split() for ln in out.splitlines()]
    assert lines[0] == ["0", "100000", "65536"]
    assert lines[1] == ["0", "100000", "65536"]
    assert lines[2] == ["0"] and lines[3] == ["0"]


def test_sysctl_and_oom_score(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward "
                                      "/proc/sys/kernel/shmmni /proc/self/oom_score_adj"])

    def f(s):
        s["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"}
        s["process"]["oomScoreAdj"] = 123
    edit_config(bundle, f)
    assert run_bundle(runtime, bundle) == (0, "1\n1000\n123\n")


def test_join_network_namespace_by_path(runtime, make_bundle):
    import subprocess
    name = f"skrt{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "add", "skdummy0",
                        "type", "veth", "peer", "name", "skdummy1"], check=True)
        bundle = make_bundle(["cat", "/proc/net/dev"])

        def f(s):
            s["linux"]["namespaces"] = [
                ns if ns["type"] != "network" else {"type": "network",
                                                    "path": f"/run/netns/{name}"}
                for ns in s["linux"]["namespaces"]]
        edit_config(bundle, f)
        code, out = run_bundle(runtime, bundle)
        assert code == 0
        assert "skdummy0" in out
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_no_pivot(runtime, make_bundle):
    code, out = run_bundle(runtime, make_bundle(["sh", "-c", "ls /; cat /etc/hostname"]),
                           "--no-pivot")
    assert code == 0
    assert "bin" in out.split() and out.endswith("busybox\n")


def test_missing_executable_fails_at_create(runtime, make_bundle):
    p = runtime.run(make_bundle(["/no/such/binary"]))
    assert p.returncode != 0
    assert "no such file or directory" in (p.stderr + p.stdout).lower()


def test_recursive_readonly_bind(runtime, make_bundle, tmp_path):
    """`rro` (mount_setattr with AT_RECURSIVE): the bind and every mount below
    it are read-only; plain `ro` leaves the submounts writable."""
    import subprocess
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "sub")],
                   check=True)
    try:
        script = ("for d in /mnt/rro /mnt/rro/sub /mnt/ro /mnt/ro/sub; do "
                  "touch $d/f 2>/dev/null && echo $d:rw || echo $d:ro; done")
        bundle = make_bundle(["sh", "-c", script])

        def f(s):
            s["mounts"] += [
                {"destination": "/mnt/rro", "type": "bind", "source": str(src),
                 "options": ["rbind", "rro"]},
                {"destination": "/mnt/ro", "type": "bind", "source": str(src),
                 "options": ["rbind", "ro"]},
            ]
        edit_config(bundle, f)
        code, out = run_bundle(runtime, bundle)
        assert code == 0, out
        assert out.split() == ["/mnt/rro:ro", "/mnt/rro/sub:ro", "/mnt/ro:ro", "/mnt/ro/sub:rw"]
    finally:
        subprocess.run(["umount", "-l", str(src / "sub")], check=True)
