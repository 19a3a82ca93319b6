"""Seccomp for skiff-runtime: the OCI ``linux.seccomp`` section → a kernel filter.

Semantics follow runc (libcontainer/seccomp/seccomp_linux.go):
- ``defaultAction`` / ``defaultErrnoRet``; actions SCMP_ACT_KILL (= KILL_THREAD),
  SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_ERRNO and
  SCMP_ACT_TRACE (errno ``errnoRet``, default EPERM), SCMP_ACT_ALLOW, SCMP_ACT_LOG.
  SCMP_ACT_NOTIFY (a listener socket) is not supported: a clear error.
- ``architectures`` (SCMP_ARCH_*) are added to the native one.
- ``syscalls[].names`` unknown to libseccomp on this arch are skipped, as runc
  does (profiles list syscalls of newer kernels); a rule whose action equals
  the default is skipped (libseccomp refuses it).
- ``args`` (index, value, valueTwo, op SCMP_CMP_NE/LT/LE/EQ/GE/GT/MASKED_EQ;
  for MASKED_EQ ``value`` is the mask and ``valueTwo`` the expected result).
  When two conditions name the same argument index, each becomes its own
  rule (libseccomp cannot AND them; runc's fallback).
- ``flags``: SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW.
- runc's -ENOSYS stub: with a deny-by-default profile, a syscall numbered
  above every syscall the profile names gets ENOSYS instead of the default
  errno, so libc falls back to the older call (:func:`enosys_stub`).
- Not done: SCMP_ACT_NOTIFY / listenerPath (refused with a clear error);
  the bad-architecture action is libseccomp's default (kill), as runc.

Speed: the filter is compiled by libseccomp (through the ``pyseccomp`` ctypes
package, imported only when compiling) into classic BPF, and the program is
cached by content under ``cache_dir``; a container with a profile seen before
(Docker's default, typically) loads it with one seccomp(2) call and never
loads libseccomp.

API for the runtime's init::

    from skiff.runtime import seccomp
    prog = seccomp.prepare(spec["linux"].get("seccomp"), cache_dir)   # early:
        # validates and compiles (errors surface at create time); None if no section
    ...
    if no_new_privileges:  prctl(PR_SET_NO_NEW_PRIVS) ... then, last thing
        before execve:  prog.load()
    else: prog.load() BEFORE dropping capabilities (without no_new_privs the
        kernel requires CAP_SYS_ADMIN), as runc does.

``prepare`` raises :class:`skiff.errors.InvalidArgument` for a malformed
section; ``load`` raises OSError with the errno of seccomp(2).
"""

from skiff.sys import _ffi as ctypes
import errno as _errno
import os

from skiff.errors import InvalidArgument

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

_AUDIT_64, _AUDIT_LE, _MIPS_N32 = 0x80000000, 0x40000000, 0x20000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _AUDIT_LE,
    "SCMP_ARCH_X86_64": 62 | _AUDIT_64 | _AUDIT_LE,
    "SCMP_ARCH_X32": 62 | _AUDIT_LE,
    "SCMP_ARCH_ARM": 40 | _AUDIT_LE,
    "SCMP_ARCH_AARCH64": 183 | _AUDIT_64 | _AUDIT_LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _AUDIT_64,
    "SCMP_ARCH_MIPS64N32": 8 | _AUDIT_64 | _MIPS_N32,
    "SCMP_ARCH_MIPSEL": 8 | _AUDIT_LE,
    "SCMP_ARCH_MIPSEL64": 8 | _AUDIT_64 | _AUDIT_LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _AUDIT_64 | _AUDIT_LE | _MIPS_N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _AUDIT_64,
    "SCMP_ARCH_PPC64LE": 21 | _AUDIT_64 | _AUDIT_LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _AUDIT_64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _AUDIT_64,
    "SCMP_ARCH_RISCV64": 243 | _AUDIT_64 | _AUDIT_LE,
}

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000


def action(name: str, errno_ret=None) -> int:
    """OCI action name (+ errnoRet) → the kernel's SECCOMP_RET_* value."""
    if errno_ret is not None and (not isinstance(errno_ret, int) or errno_ret < 0
                                  or errno_ret > 0xFFFF):
        raise InvalidArgument(f"invalid seccomp errnoRet {errno_ret!r}")
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        ret = _errno.EPERM if errno_ret is None else errno_ret
        return (0x00050000 if name == "SCMP_ACT_ERRNO" else 0x7FF00000) | (ret & 0xFFFF)
    if errno_ret is not None:
        raise InvalidArgument(f"seccomp: errnoRet is only valid with SCMP_ACT_ERRNO and "
                              f"SCMP_ACT_TRACE, not {name}")
    acts = {"SCMP_ACT_KILL": ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS, "SCMP_ACT_TRAP": ACT_TRAP,
            "SCMP_ACT_ALLOW": ACT_ALLOW, "SCMP_ACT_LOG": ACT_LOG}
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument("seccomp action SCMP_ACT_NOTIFY is not supported by skiff-runtime")
    if name not in acts:
        raise InvalidArgument(f"invalid seccomp action {name!r}")
    return acts[name]


def filter_flags(section: dict) -> int:
    flags = 0
    for f in section.get("flags") or []:
        if f not in FLAGS:
            raise InvalidArgument(f"seccomp flags {f!r} not yet supported by skiff-runtime")
        flags |= FLAGS[f]
    return flags


def _rules(section: dict, default: int):
    """Yield (action, [names], [(index, op, a, b), ...]) per libseccomp rule."""
    for call in section.get("syscalls") or []:
        if not isinstance(call, dict):
            raise InvalidArgument("seccomp: encountered a malformed syscall entry")
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not names:
            raise InvalidArgument("seccomp: a syscall rule has no names")
        act = action(call.get("action", ""), call.get("errnoRet"))
        if act == default:
            continue
        conds = []
        counts = {}
        for arg in call.get("args") or []:
            idx = arg.get("index")
            if not isinstance(idx, int) or not 0 <= idx <= 5:
                raise InvalidArgument(f"seccomp: invalid argument index {idx!r}")
            op = OPS.get(arg.get("op"))
            if op is None:
                raise InvalidArgument(f"seccomp: invalid compare operator {arg.get('op')!r}")
            conds.append((idx, op, int(arg.get("value", 0)), int(arg.get("valueTwo", 0))))
            counts[idx] = counts.get(idx, 0) + 1
        if conds and max(counts.values()) > 1:
            for c in conds:
                yield act, names, [c]
        else:
            yield act, names, conds


def validate(section: dict) -> None:
    if not isinstance(section, dict):
        raise InvalidArgument("linux.seccomp must be an object")
    if "defaultAction" not in section:
        raise InvalidArgument("seccomp: defaultAction is required")
    default = action(section["defaultAction"], section.get("defaultErrnoRet"))
    for a in section.get("architectures") or []:
        if a not in ARCHES:
            raise InvalidArgument(f"seccomp: invalid architecture {a!r}")
    filter_flags(section)
    for _ in _rules(section, default):
        pass
    if section.get("listenerPath"):
        raise InvalidArgument("seccomp listenerPath (SCMP_ACT_NOTIFY) is not supported")


def compile_bpf(section: dict) -> bytes:
    """Build the filter with libseccomp and return the classic BPF program
    (struct sock_filter array, 8 bytes per instruction)."""
    validate(section)
    import pyseccomp  # lazy: loads libseccomp
    default = action(section["defaultAction"], section.get("defaultErrnoRet"))
    f = pyseccomp.SyscallFilter(default)
    for a in section.get("architectures") or []:
        try:
            f.add_arch(ARCHES[a])
        except OSError as e:
            if e.errno != _errno.EEXIST:
                raise InvalidArgument(f"seccomp: cannot add architecture {a}: {e.strerror}")
    resolved = {}
    for act, names, conds in _rules(section, default):
        args = [pyseccomp.Arg(i, op, a, b) for i, op, a, b in conds]
        for name in names:
            nr = resolved.get(name)
            if nr is None:
                nr = resolved[name] = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if nr == -1:
                continue  # unknown to libseccomp here: skipped, as runc does
            try:
                f.add_rule(act, nr, *args)
            except OSError as e:
                raise InvalidArgument(f"seccomp: adding rule for syscall {name} failed: "
                                      f"{e.strerror}") from None
    fd = os.memfd_create("skiff-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as mf:
            f.export_bpf(mf)
        os.lseek(fd, 0, os.SEEK_SET)
        out = bytearray()
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            out += b
    finally:
        os.close(fd)
    return enosys_stub(section, pyseccomp) + bytes(out)


# -- the -ENOSYS stub (runc's patchbpf) --------------------------------------
# A syscall newer than every syscall the profile names is one the profile's
# author did not know; with a deny-by-default profile it would get EPERM, and
# libc would not fall back to the older call (it does on ENOSYS: clone3,
# fchmodat2, ...). runc prepends a check that answers ENOSYS for those; so
# does this. Classic BPF: struct sock_filter {u16 code; u8 jt, jf; u32 k}.
_LD_W_ABS, _JA, _JEQ, _JGT, _JSET, _RET = 0x20, 0x05, 0x15, 0x25, 0x45, 0x06
_X32_BIT = 0x40000000
_AUDIT_X86_64 = 62 | _AUDIT_64 | _AUDIT_LE


def _assemble(prog: list) -> bytes:
    """Instructions are (code, jt, jf, k); jt/jf/k may name a label (a str
    item in the list marks a label's position)."""
    import struct
    labels, insns = {}, []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(insns):
        rel = lambda x: labels[x] - i - 1 if isinstance(x, str) else x  # noqa: E731
        if code == _JA:
            k = rel(k)
        jt, jf = rel(jt), rel(jf)
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError("seccomp stub: jump too long")
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)


def enosys_stub(section: dict, pyseccomp) -> bytes:
    """The stub to prepend to the filter (b"" when not wanted: allow/log by
    default, or the default errno already is ENOSYS)."""
    if section["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        return b""
    if section.get("defaultErrnoRet") == _errno.ENOSYS:
        return b""
    arches = [ARCHES[a] for a in section.get("architectures") or []]
    native = pyseccomp.system_arch()
    if native not in arches:
        arches.append(native)
    names = {n for call in section.get("syscalls") or []
             for n in (call.get("names") or [call.get("name")]) if n}
    # audit arch → {scmp arch: largest syscall number named}
    last: dict[int, dict[int, int]] = {}
    for arch in arches:
        nrs = [pyseccomp.resolve_syscall(arch, n) for n in names]
        top = max((x for x in nrs if x >= 0), default=-1)
        if top < 0:
            continue
        audit = _AUDIT_X86_64 if arch == ARCHES["SCMP_ARCH_X32"] else arch
        last.setdefault(audit, {})[arch] = top
    if not last:
        return b""
    enosys = 0x00050000 | _errno.ENOSYS
    x86_64, x32 = ARCHES["SCMP_ARCH_X86_64"], ARCHES["SCMP_ARCH_X32"]
    prog = [(_LD_W_ABS, 0, 0, 4)]
    for audit in last:
        prog.append((_JEQ, f"arch{audit}", 0, audit))
    prog.append((_JA, 0, 0, "filter"))
    for audit, tops in last.items():
        prog.append(f"arch{audit}")
        prog.append((_LD_W_ABS, 0, 0, 0))
        if audit == _AUDIT_X86_64:
            if x86_64 in tops and x32 in tops:
                prog += [(_JSET, f"x32_{audit}", 0, _X32_BIT),
                         (_JGT, "enosys", "filter_j", tops[x86_64]),
                         f"x32_{audit}",
                         (_JGT, "enosys", "filter_j", tops[x32])]
                continue
            if x86_64 in tops:   # x32 calls are not this section's business
                prog.append((_JSET, "filter_j", 0, _X32_BIT))
            else:
                prog.append((_JSET, 0, "filter_j", _X32_BIT))
        prog.append((_JGT, "enosys", "filter_j", next(iter(tops.values()))))
    prog += ["filter_j", (_JA, 0, 0, "filter"), "enosys", (_RET, 0, 0, enosys), "filter"]
    return _assemble(prog)


def _cache_key(section: dict) -> str:
    # repr of the parsed JSON: deterministic for the same document (a reordered
    # document only costs a cache miss) and needs no json import
    try:
        from _sha256 import sha256   # the builtin module: no OpenSSL load
    except ImportError:
        from hashlib import sha256
    u = os.uname()
    h = sha256(repr(section).encode())
    h.update(f"|{u.machine}|{u.release}|{_libseccomp_id()}".encode())
    return h.hexdigest()


def _libseccomp_id() -> str:
    """Identity of the installed libseccomp (a rebuilt library may compile
    differently): path, size and mtime of libseccomp.so.2."""
    dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64",
            "/usr/lib", "/lib")
    for d in dirs:
        p = os.path.join(d, "libseccomp.so.2")
        try:
            st = os.stat(p)
        except OSError:
            continue
        return f"{os.path.realpath(p)}:{st.st_size}:{st.st_mtime_ns}"
    for d in dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.startswith("libseccomp.so."))
        except OSError:
            continue
        if names:
            st = os.stat(os.path.join(d, names[-1]))
            return f"{d}/{names[-1]}:{st.st_size}:{st.st_mtime_ns}"
    return "?"


class Program:
    """A compiled filter ready to load: ``bpf`` (bytes) and seccomp(2) ``flags``."""

    def __init__(self, bpf: bytes, flags: int = 0):
        if not bpf or len(bpf) % 8:
            raise ValueError("seccomp program must be a non-empty sock_filter array")
        self.bpf = bpf
        self.flags = flags

    def __len__(self):
        return len(self.bpf) // 8

    def load(self) -> None:
        """Install the filter on the calling thread (all threads with TSYNC).
        Without no_new_privs set this needs CAP_SYS_ADMIN."""
        load_bpf(self.bpf, self.flags)


def prepare(section: dict | None, cache_dir: str | None = None) -> Program | None:
    """Validate and compile ``linux.seccomp`` (None → None). With ``cache_dir``
    the compiled program is reused across containers (content-addressed)."""
    if not section:
        return None
    flags = filter_flags(section)
    path = None
    if cache_dir:
        path = os.path.join(cache_dir, _cache_key(section) + ".bpf")
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data and len(data) % 8 == 0:
                return Program(data, flags)
        except OSError:
            pass
    data = compile_bpf(section)
    if path:
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, path)
        except OSError:
            pass
    return Program(data, flags)


_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "s390x": 348,
                "ppc64le": 358}.get(os.uname().machine, 317)
SECCOMP_SET_MODE_FILTER = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(bpf: bytes, flags: int = 0) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    ret = libc.syscall(ctypes.c_long(_SYS_SECCOMP), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_uint(flags), ctypes.byref(prog))
    if ret < 0:
        err = ctypes.get_errno()
        hint = ""
        if err == _errno.EACCES:
            hint = " (without no_new_privs loading a filter needs CAP_SYS_ADMIN)"
        raise OSError(err, f"seccomp: loading the filter failed: {os.strerror(err)}{hint}")
