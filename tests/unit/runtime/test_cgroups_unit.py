"""cgroups without root: conversions, path computation, device rule
semantics, the eBPF device program (run in a small interpreter), and the
resource → file mapping on a fake cgroup directory."""

import os
import struct

import pytest

from skiff.errors import InvalidArgument
from skiff.runtime import cgroups
from skiff.runtime.cgroups import bpf, convert, devices, v1, v2

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
OWN_V1 = "4:memory:/process_api/abc\n3:cpuset:/\n2:cpu,cpuacct:/user.slice\n1:pids:/\n0::/x\n"
OWN_V2 = "0::/user.slice/user-0.slice/session-1.scope\n"


def test_shares_to_weight_matches_runc():
    assert convert.shares_to_weight(0) == 0
    assert convert.shares_to_weight(2) == 1
    assert convert.shares_to_weight(1) == 1          # truncation, as Go
    assert convert.shares_to_weight(1024) == 39
    assert convert.shares_to_weight(262144) == 10000


def test_blkio_weight_to_io_weight():
    assert convert.blkio_weight_to_io_weight(0) == 0
    assert convert.blkio_weight_to_io_weight(10) == 1
    assert convert.blkio_weight_to_io_weight(500) == 4950
    assert convert.blkio_weight_to_io_weight(1000) == 10000


@pytest.mark.parametrize("swap,mem,want", [
    (0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0)])
def test_swap_conversion(swap, mem, want):
    assert convert.swap_v1_to_v2(swap, mem) == want


@pytest.mark.parametrize("swap,mem,msg", [(300, 0, "without memory limit"),
                                          (50, 100, "should be >= memory")])
def test_swap_conversion_rejects(swap, mem, msg):
    with pytest.raises(InvalidArgument, match=msg):
        convert.swap_v1_to_v2(swap, mem)


def test_cpu_max_line():
    assert convert.cpu_max(50000, 100000) == "50000 100000"
    assert convert.cpu_max(-1, 100000) == "max 100000"
    assert convert.cpu_max(20000, 0) == "20000"
    assert convert.cpu_max(0, 0) is None


@pytest.mark.parametrize("res,msg", [
    ({"memory": {"limit": "1g"}}, "not an integer"),
    ({"memory": {"limit": 100, "swap": 50}}, "memoryswap limit"),
    ({"cpu": {"cpus": "0-a"}}, "cpuset.cpus"),
    ({"cpu": {"cpus": "3-1"}}, "reversed"),
    ({"blockIO": {"weight": 5}}, "10 to 1000"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "device access"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "pageSize"),
    ({"hugepageLimits": [{"pageSize": "MB", "limit": 1}]}, "pageSize"),
    ({"hugepageLimits": [{"pageSize": "2mb", "limit": 1}]}, "pageSize"),
    ({"cpu": {"cpus": ""}}, None),
    ({"cpu": {"mems": "1,,2"}}, "cpuset.mems"),
    ({"cpu": {"cpus": "1 -2"}}, "cpuset.cpus"),
    ({"cpu": {"cpus": "1-2-3"}}, "cpuset.cpus"),
    ({"cpu": {"cpus": "0,"}}, "cpuset.cpus"),
])
def test_validate_rejects_bad_resources(res, msg):
    if msg is None:  # an empty value means "unset"
        assert convert.validate(res) == res
        return
    with pytest.raises(InvalidArgument, match=msg):
        convert.validate(res)


@pytest.mark.parametrize("cpus", ["0", "0-1", " 0 , 1-1 ", "0,1"])
def test_validate_accepts_cpuset_lists_and_page_sizes(cpus):
    res = {"cpu": {"cpus": cpus, "mems": "0"},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 0}]}
    assert convert.validate(res) == res
    assert convert.check_cpuset("cpuset.cpus", cpus) == cpus.replace(" ", "")


def test_create_path_imports_no_re_enum_or_ctypes():
    """skiff-runtime's create parent: cgroups, spec, process and the cli
    load without re, enum, dataclasses, json or ctypes (start-up time)."""
    import os
    import subprocess
    import sys
    import skiff
    top = os.path.dirname(os.path.dirname(os.path.abspath(skiff.__file__)))
    code = (f"import sys; sys.path.insert(0, {top!r}); from skiff.runtime import cli, commands, process, spec, cgroups, state; "
            "bad = [m for m in ('re', 'enum', 'dataclasses', 'json', 'ctypes') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_layout_detection():
    lay = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    assert lay.mode == "hybrid"
    assert lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1["cpu"] == lay.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert lay.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert cgroups.parse_mountinfo(V2_MOUNTINFO).mode == "v2"
    v1only = "\n".join(line for line in HYBRID_MOUNTINFO.splitlines() if "cgroup2" not in line)
    assert cgroups.parse_mountinfo(v1only).mode == "v1"


def test_absolute_path_goes_under_each_hierarchy_root():
    lay = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    p = cgroups.resolve_path("c1", "/skiff/c1", lay, own={})
    assert p["memory"] == "/sys/fs/cgroup/memory/skiff/c1"
    assert p["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/skiff/c1"
    assert p[""] == "/sys/fs/cgroup/unified/skiff/c1"


def test_default_path_is_container_id_under_own_cgroup_v1():
    lay = cgroups.parse_mountinfo(HYBRID_MOUNTINFO)
    p = cgroups.resolve_path("c1", None, lay, own=cgroups.own_cgroups(OWN_V1))
    assert p["memory"] == "/sys/fs/cgroup/memory/process_api/abc/c1"
    assert p["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/user.slice/c1"
    assert p["pids"] == "/sys/fs/cgroup/pids/c1"
    # v2 tree (hybrid): under the parent of the own cgroup, as runc's fs2
    assert p[""] == "/sys/fs/cgroup/unified/c1"


def test_relative_path_v2_uses_parent_of_own_cgroup():
    lay = cgroups.parse_mountinfo(V2_MOUNTINFO)
    p = cgroups.resolve_path("c1", "mine/c1", lay, own=cgroups.own_cgroups(OWN_V2))
    assert p == {"": "/sys/fs/cgroup/user.slice/user-0.slice/mine/c1"}


def test_path_cannot_escape_the_hierarchy():
    lay = cgroups.parse_mountinfo(V2_MOUNTINFO)
    assert cgroups.resolve_path("c", "/../../etc", lay, own={}) == {"": "/sys/fs/cgroup/etc"}
    assert cgroups.inner_path("c", "../../x") == "x"      # runc's CleanPath
    with pytest.raises(InvalidArgument, match="root cgroup"):
        cgroups.inner_path("c", "/../..")


def test_systemd_form_is_mapped_to_cgroupfs():
    assert cgroups.inner_path("c", "system.slice:docker:abc") == "/system.slice/docker-abc.scope"
    assert cgroups.inner_path("c", "a-b-c.slice:skiff:x") == \
        "/a.slice/a-b.slice/a-b-c.slice/skiff-x.scope"
    assert cgroups.inner_path("c", ":docker:abc") == "/system.slice/docker-abc.scope"
    with pytest.raises(InvalidArgument):
        cgroups.inner_path("c", "bad:docker:abc")


def test_state_round_trip():
    lay = cgroups.parse_mountinfo(V2_MOUNTINFO)
    m = cgroups.for_spec("c1", {"cgroupsPath": "/skiff/c1",
                                "resources": {"pids": {"limit": 5}}}, layout=lay)
    m2 = cgroups.from_state(m.to_state())
    assert m2.paths == m.paths == {"": "/sys/fs/cgroup/skiff/c1"}
    assert m2.mode == "v2"
    assert m2.owned is False           # nothing created yet


def test_for_spec_rejects_bad_resources_before_touching_anything():
    lay = cgroups.parse_mountinfo(V2_MOUNTINFO)
    with pytest.raises(InvalidArgument):
        cgroups.for_spec("c1", {"resources": {"pids": {"limit": "many"}}}, layout=lay)


# -- devices -------------------------------------------------------------

DOCKER_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rw"},
]


def test_v1_lines():
    rules = devices.parse(DOCKER_RULES)
    assert [r.v1_line() for r in rules] == [
        "a", "c 1:5 rwm", "c 1:3 rwm", "c 136:* rwm", "c *:* m", "b *:* m", "c 5:0 rw"]


def test_emulator_whitelist():
    emu = devices.Emulator().apply_all(devices.parse(DOCKER_RULES))
    assert not emu.default_allow
    assert emu.allows("c", 1, 3, "rw")
    assert emu.allows("c", 136, 7, "r")
    assert emu.allows("b", 8, 0, "m")          # mknod of anything
    assert not emu.allows("b", 8, 0, "r")      # but not open
    assert not emu.allows("c", 1, 8, "r")
    assert emu.allows("c", 5, 0, "m")          # "c *:* m" covers mknod
    assert not emu.allows("c", 5, 0, "rwm")    # no single exception covers rwm
    emu.apply(devices.Rule(False, "c", 1, 3, "w"))
    assert emu.allows("c", 1, 3, "r") and not emu.allows("c", 1, 3, "rw")


def test_emulator_blacklist():
    emu = devices.Emulator().apply_all(devices.parse([
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "w"}]))
    assert emu.default_allow
    assert emu.allows("c", 1, 9, "r")
    assert not emu.allows("c", 1, 9, "rw")
    assert emu.allows("b", 7, 0, "rwm")


def _run_bpf(prog: bytes, type_: int, major: int, minor: int, access: int) -> int:
    """A tiny interpreter for the opcodes bpf.program emits."""
    ctx = struct.pack("<III", (access << 16) | type_, major, minor)
    r = [0] * 11
    pc = 0
    n = len(prog) // 8
    while pc < n:
        code, regs, off, imm = struct.unpack_from("<BBhi", prog, pc * 8)
        dst, src = regs & 0xF, regs >> 4
        pc += 1
        m32 = 0xFFFFFFFF
        if code == 0x61:
            r[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            r[dst] = (r[dst] & imm) & m32
        elif code == 0x74:
            r[dst] = (r[dst] & m32) >> imm
        elif code == 0xbc:
            r[dst] = r[src] & m32
        elif code == 0xb7:
            r[dst] = imm
        elif code == 0x55:
            pc += off if r[dst] != imm else 0
        elif code == 0x5d:
            pc += off if r[dst] != r[src] else 0
        elif code == 0x15:
            pc += off if r[dst] == imm else 0
        elif code == 0x95:
            return r[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("fell off the end")


@pytest.mark.parametrize("rules", [DOCKER_RULES, [
    {"allow": True, "access": "rwm"},
    {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "w"},
    {"allow": False, "type": "b", "major": 8, "access": "rwm"}]])
def test_ebpf_program_agrees_with_v1_semantics(rules):
    emu = devices.Emulator().apply_all(devices.parse(rules))
    prog = bpf.program(emu)
    acc_bits = {"m": 1, "r": 2, "w": 4}
    for t, tcode in (("c", 2), ("b", 1)):
        for maj, mnr in ((1, 3), (1, 5), (1, 9), (5, 0), (8, 0), (8, 3), (136, 4), (10, 229)):
            for acc in ("r", "w", "m", "rw", "rwm"):
                bits = sum(acc_bits[c] for c in acc)
                want = emu.allows(t, maj, mnr, acc)
                assert _run_bpf(prog, tcode, maj, mnr, bits) == int(want), (t, maj, mnr, acc)


# -- resource files on a fake tree ------------------------------------------

def _fake(tmp_path, names):
    d = tmp_path / "cg"
    d.mkdir(exist_ok=True)
    for n in names:
        (d / n).write_text("")
    return str(d)


def test_v2_files(tmp_path):
    d = _fake(tmp_path, ["memory.max", "memory.low", "memory.swap.max", "cpu.weight", "cpu.max",
                         "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight", "io.max"])
    v2.apply(d, {"memory": {"limit": 100 << 20, "swap": 300 << 20, "reservation": 50 << 20},
                 "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
                 "pids": {"limit": -1},
                 "blockIO": {"weight": 500, "throttleReadBpsDevice":
                             [{"major": 254, "minor": 0, "rate": 1000}]}})
    got = {n: open(os.path.join(d, n)).read() for n in os.listdir(d)}
    assert got["memory.max"] == str(100 << 20)
    assert got["memory.swap.max"] == str(200 << 20)
    assert got["memory.low"] == str(50 << 20)
    assert got["cpu.weight"] == "39"
    assert got["cpu.max"] == "50000 100000"
    assert got["cpuset.cpus"] == "0"
    assert got["pids.max"] == "max"
    assert got["io.weight"] == "4950"
    assert got["io.max"] == "254:0 rbps=1000"


def test_v1_files_and_swap_order(tmp_path):
    d = _fake(tmp_path, ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                         "memory.soft_limit_in_bytes", "cpu.shares", "cpu.cfs_quota_us",
                         "cpu.cfs_period_us", "pids.max", "devices.allow", "devices.deny"])
    open(os.path.join(d, "memory.memsw.limit_in_bytes"), "w").write("9223372036854771712")
    # cpu.shares is read back: the fake keeps what was written
    v1.apply({"memory": d, "cpu": d, "pids": d, "devices": d},
             {"memory": {"limit": 64 << 20, "swap": 128 << 20},
              "cpu": {"shares": 512, "quota": 20000, "period": 100000},
              "pids": {"limit": 10},
              "devices": [{"allow": False, "access": "rwm"}]})
    got = {n: open(os.path.join(d, n)).read() for n in os.listdir(d)}
    assert got["memory.limit_in_bytes"] == str(64 << 20)
    assert got["memory.memsw.limit_in_bytes"] == str(128 << 20)
    assert got["cpu.cfs_quota_us"] == "20000" and got["cpu.cfs_period_us"] == "100000"
    assert got["pids.max"] == "10"
    assert got["devices.deny"] == "a"


def test_v1_rejects_unified(tmp_path):
    with pytest.raises(InvalidArgument, match="unified"):
        v1.apply({}, {"unified": {"memory.high": "1"}})


def test_missing_swap_accounting_is_a_clear_error(tmp_path):
    d = _fake(tmp_path, ["memory.limit_in_bytes"])
    with pytest.raises(InvalidArgument, match="swap"):
        v1.apply({"memory": d}, {"memory": {"limit": 100, "swap": 200}})


def test_inspection_cli(capsys):
    from skiff.runtime.cgroups.__main__ import main
    assert main(["layout"]) == 0
    assert '"mode"' in capsys.readouterr().out
    assert main(["paths", "abc", "/skiff/abc"]) == 0
    assert "/skiff/abc" in capsys.readouterr().out
    assert main(["bogus"]) == 2
