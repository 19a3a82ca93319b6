"""JSON without ``import json``.

``json`` pulls in ``re`` and ``enum`` (~8 ms on this machine), a large part of
skiff-runtime's start-up. The C accelerator ``_json`` does the real work for
``json`` anyway; this module drives it directly. Same results as
``json.loads``/``json.dumps`` for the data the runtime reads and writes.
"""

import _json

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_Ctx())


class JSONDecodeError(ValueError):
    pass


def loads(s):
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    if s.startswith("\ufeff"):
        s = s[1:]
    i = 0
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scan(s, i)
    except StopIteration as e:
        raise JSONDecodeError(f"invalid JSON at offset {e.value}") from None
    except ValueError as e:  # bad escapes, unterminated strings
        raise JSONDecodeError(str(e)) from None
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        raise JSONDecodeError(f"extra data at offset {end}")
    return obj


def load(f):
    return loads(f.read())


def _default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_compact = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",",
                              False, False, True)


def dumps(obj, indent=None):
    if indent is None:
        return "".join(_compact(obj, 0))
    enc = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ": ", ",",
                             False, False, True)
    # _json's C encoder does not indent; pretty-print by a small recursive walk
    return _pretty(obj, indent, 0, enc)


def _pretty(obj, indent, level, enc):
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{_json.encode_basestring_ascii(str(k))}: {_pretty(v, indent, level + 1, enc)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        items = [pad + _pretty(v, indent, level + 1, enc) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return "".join(enc(obj, 0))
