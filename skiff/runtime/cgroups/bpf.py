"""Device filtering on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program,
assembled here by hand and loaded and attached with the bpf() syscall
through ctypes (no libbpf, no compiler).

The program sees ``struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
u32 minor; }`` where ``access_type = access << 16 | type`` (type 1 = block,
2 = char; access bits 1 = mknod, 2 = read, 4 = write) and returns 1 to allow,
0 to deny. Its logic is the state of :class:`devices.Emulator`: one block per
exception, then the default.
"""

from skiff.sys import _ffi as ctypes
import os
import struct

from .devices import WILDCARD, Emulator

_libc = ctypes.CDLL(None, use_errno=True)

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "s390x": 351,
            "ppc64le": 361}.get(os.uname().machine, 321)

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEV_BLOCK, DEV_CHAR = 1, 2
ACC = {"m": 1, "r": 2, "w": 4}
ACC_ALL = 7

# opcodes
_LDXW = 0x61        # dst = *(u32 *)(src + off)
_AND32_K = 0x54
_RSH32_K = 0x74
_MOV32_X = 0xbc
_MOV64_K = 0xb7
_JNE_K = 0x55
_JNE_X = 0x5d
_JEQ_K = 0x15
_EXIT = 0x95


def _insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _block(checks: list[tuple], result: int) -> list[bytes]:
    """Checks are (code, dst, src, imm) conditional jumps "to the next block";
    the block ends with ``return result``."""
    n = len(checks) + 2
    out = []
    for i, (code, dst, src, imm) in enumerate(checks):
        if code in (_JNE_K, _JNE_X, _JEQ_K):
            out.append(_insn(code, dst, src, n - i - 1, imm))
        else:
            out.append(_insn(code, dst, src, 0, imm))
    out.append(_insn(_MOV64_K, 0, imm=result))
    out.append(_insn(_EXIT))
    return out


def program(emu: Emulator) -> bytes:
    """The eBPF instructions (bytes, 8 per instruction) for ``emu``'s state."""
    insns = [
        _insn(_LDXW, 2, 1, 0),          # r2 = access_type
        _insn(_AND32_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_LDXW, 3, 1, 0),
        _insn(_RSH32_K, 3, imm=16),      # r3 = access
        _insn(_LDXW, 4, 1, 4),          # r4 = major
        _insn(_LDXW, 5, 1, 8),          # r5 = minor
    ]
    for (t, maj, mnr), acc in sorted(emu.exceptions.items()):
        bits = sum(ACC[c] for c in acc)
        checks = [(_JNE_K, 2, 0, DEV_BLOCK if t == "b" else DEV_CHAR)]
        if emu.default_allow:
            # deny exception: matches when any requested bit is in it
            checks += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, bits), (_JEQ_K, 1, 0, 0)]
        elif bits != ACC_ALL:
            # allow exception: matches when every requested bit is in it
            checks += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, bits), (_JNE_X, 1, 3, 0)]
        if maj != WILDCARD:
            checks.append((_JNE_K, 4, 0, maj))
        if mnr != WILDCARD:
            checks.append((_JNE_K, 5, 0, mnr))
        insns += _block(checks, 0 if emu.default_allow else 1)
    insns.append(_insn(_MOV64_K, 0, imm=1 if emu.default_allow else 0))
    insns.append(_insn(_EXIT))
    return b"".join(insns)


class _Attr(ctypes.Structure):
    _fields_ = [("raw", ctypes.c_uint8 * 128)]


def _bpf(cmd: int, fields: list[tuple[int, str, int]]) -> int:
    attr = _Attr()
    buf = bytearray(128)
    for off, fmt, val in fields:
        struct.pack_into(fmt, buf, off, val)
    ctypes.memmove(ctypes.addressof(attr), bytes(buf), 128)
    ret = _libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(cmd), ctypes.byref(attr),
                        ctypes.c_uint(128))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret, bytes(attr.raw)


def load(insns: bytes) -> int:
    """Load the program; returns its fd. On a verifier error the log is in
    the exception text."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"Apache")
    fields = [(0, "<I", BPF_PROG_TYPE_CGROUP_DEVICE), (4, "<I", len(insns) // 8),
              (8, "<Q", ctypes.addressof(code)), (16, "<Q", ctypes.addressof(lic))]
    try:
        return _bpf(BPF_PROG_LOAD, fields)[0]
    except OSError as e:
        log = ctypes.create_string_buffer(65536)
        fields += [(24, "<I", 1), (28, "<I", len(log)), (32, "<Q", ctypes.addressof(log))]
        try:
            return _bpf(BPF_PROG_LOAD, fields)[0]
        except OSError:
            raise OSError(e.errno, f"loading the device cgroup eBPF program: {e.strerror}: "
                          f"{log.value.decode(errors='replace')}") from None


def attached(dirfd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup open at ``dirfd``."""
    ids = (ctypes.c_uint32 * 64)()
    _, raw = _bpf(BPF_PROG_QUERY, [(0, "<I", dirfd), (4, "<I", BPF_CGROUP_DEVICE),
                                   (16, "<Q", ctypes.addressof(ids)), (24, "<I", 64)])
    cnt = struct.unpack_from("<I", raw, 24)[0]
    return list(ids[:cnt])


def set_device_filter(cgroup_dir: str, emu: Emulator) -> None:
    """Attach a program for ``emu`` to ``cgroup_dir`` and detach the ones
    attached before (so an update replaces, never stacks, the filter)."""
    prog_fd = load(program(emu))
    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        old = attached(dirfd)
        _bpf(BPF_PROG_ATTACH, [(0, "<I", dirfd), (4, "<I", prog_fd),
                               (8, "<I", BPF_CGROUP_DEVICE), (12, "<I", BPF_F_ALLOW_MULTI)])
        for pid_ in old:
            try:
                fd = _bpf(BPF_PROG_GET_FD_BY_ID, [(0, "<I", pid_)])[0]
            except OSError:
                continue
            try:
                _bpf(BPF_PROG_DETACH, [(0, "<I", dirfd), (4, "<I", fd),
                                       (8, "<I", BPF_CGROUP_DEVICE)])
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        os.close(dirfd)
        os.close(prog_fd)
