"""The part of ctypes that skiff.sys uses, built on ``_ctypes`` directly.

``import ctypes`` costs 2-4 ms on this VM (struct, the endian helpers and a
few dozen type definitions), once per container command of skiff-runtime
and on its critical path. ``_ctypes`` (the C extension ctypes is written on)
loads in ~0.5 ms; these few definitions are what ctypes/__init__.py itself
does for the same names. Same behaviour, same objects' semantics.
"""

import _ctypes
from _ctypes import Structure, addressof, byref, get_errno, sizeof  # noqa: F401


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_ushort(_ctypes._SimpleCData):
    _type_ = "H"


class c_ubyte(_ctypes._SimpleCData):
    _type_ = "B"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


c_uint8 = c_ubyte
c_int32 = c_int
c_uint32 = c_uint
c_int64 = c_long
c_uint64 = c_ulong
c_size_t = c_ulong
c_ssize_t = c_long


def create_string_buffer(init, size=None):
    if size is None:
        size = len(init) + 1
    buf = (c_char * size)()
    buf.raw = bytes(init).ljust(size, b"\0")[:size]
    return buf


def memmove(dst, src, count):
    """memmove(dst, src, count): addresses (ints), bytes or ctypes objects."""
    fn = _Func(("memmove", _self))
    fn.restype = c_void_p
    fn.argtypes = (c_void_p, c_void_p, c_size_t)
    return fn(dst, src, count)


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class CDLL:
    """ctypes.CDLL(None, use_errno=True): functions of the running program
    (libc), int results, errno kept for get_errno()."""

    def __init__(self, name=None, use_errno=True):
        self._handle = _ctypes.dlopen(name, _ctypes.RTLD_LOCAL)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        fn = _Func((name, self))
        setattr(self, name, fn)
        return fn


class _PyFunc(_ctypes.CFuncPtr):
    """A function called with the GIL held (ctypes.PyDLL's): for the
    interpreter's own C API, and for a system call that must not let
    another thread run meanwhile (clone3)."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class PyDLL(CDLL):
    """ctypes.PyDLL(None): the same symbols, called without releasing the GIL."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        fn = _PyFunc((name, self))
        setattr(self, name, fn)
        return fn


_self = CDLL(None)
