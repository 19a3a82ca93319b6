"""The subset of Go's text/template that ``--format`` users write.

Supported: ``{{.Field.Sub}}``, ``{{.}}``, ``{{$}}``, variables
(``{{$x := .A}}``, ``{{range $k, $v := .M}}``), ``{{if}}``/``{{else if}}``/
``{{else}}``/``{{end}}``, ``{{range}}`` (with ``{{else}}``), ``{{with}}``,
pipelines (``{{.Names | upper}}``), parentheses, trim markers ``{{-``/``-}}``,
comments, and the functions docker registers (json, split, join, title,
lower, upper, pad, truncate, println) plus Go's builtins (index, printf,
print, len, slice, eq/ne/lt/le/gt/ge, and/or/not, urlquery).

Values print as Go's fmt ``%v`` prints docker's typed values: integers as
integers, floats in shortest form, maps ``map[a:1 b:2]``, slices ``[a b]``,
null ``<nil>``, a missing map key ``<no value>``.
"""

import json


class TemplateError(Exception):
    pass


class _Missing:
    def __repr__(self):
        return "<no value>"


MISSING = _Missing()


# -- printing ---------------------------------------------------------------
def go_float(f):
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    s = repr(abs(f))
    sign = "-" if f < 0 else ""
    if "e" in s:
        mant, exp = s.split("e")
        exp = int(exp)
    else:
        mant, exp = s, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    # decimal exponent of the first significant digit
    if ip.strip("0"):
        e10 = len(ip.lstrip("0")) - 1 + exp
    else:
        e10 = -(len(fp) - len(fp.lstrip("0"))) - 1 + exp
    digits = digits.rstrip("0") or "0"
    if e10 < -4 or e10 >= 21:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    if e10 >= 0:
        if len(digits) <= e10 + 1:
            return sign + digits + "0" * (e10 + 1 - len(digits))
        return sign + digits[:e10 + 1] + "." + digits[e10 + 1:]
    return sign + "0." + "0" * (-e10 - 1) + digits


def go_str(v):
    """Go's ``%v`` of a value that came from JSON."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if hasattr(v, "__str__"):
        return str(v)
    return repr(v)


class NilList(list):
    """A nil Go slice: prints "[]", marshals as null."""


class NilMap(dict):
    """A nil Go map: prints "map[]", marshals as null."""


# docker API fields that are slices / maps in Go: a JSON null there is a nil
# slice or map, which text/template prints as [] / map[] rather than <nil>.
NIL_SLICE_FIELDS = frozenset((
    "Args", "Entrypoint", "Cmd", "Env", "Binds", "Links", "CapAdd", "CapDrop", "Dns",
    "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "SecurityOpt", "VolumesFrom",
    "Mounts", "Devices", "DeviceCgroupRules", "DeviceRequests", "Ulimits", "MaskedPaths",
    "ReadonlyPaths", "OnBuild", "Aliases", "DNSNames", "RepoTags", "RepoDigests", "Shell",
    "Names", "Ports", "Warnings", "ExecIDs", "Layers", "Config", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "ConsoleSize"))
NIL_MAP_FIELDS = frozenset((
    "Labels", "ExposedPorts", "Volumes", "PortBindings", "Tmpfs", "Sysctls", "StorageOpt",
    "Options", "DriverOpts", "Annotations", "Networks", "Containers", "Attributes",
    "Data", "Status"))


def to_jsonable(v):
    if isinstance(v, (NilList, NilMap)):
        return None
    if isinstance(v, dict):
        if v and not all(isinstance(k, str) and k[:1].isupper() and k.isidentifier()
                         for k in v):
            # a Go map (keys are data, not field names): json.Marshal sorts keys
            return {k: to_jsonable(v[k]) for k in sorted(v)}
        return {k: to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if hasattr(v, "to_json"):
        return v.to_json()
    return v


def go_json(v):
    """docker's ``json`` template function: an Encoder without HTML escaping
    for plain data; docker's list contexts marshal themselves with
    json.Marshal, which escapes <, > and &."""
    s = json.dumps(to_jsonable(v), separators=(",", ":"), ensure_ascii=False)
    if hasattr(v, "to_json"):
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s


# -- lexer ------------------------------------------------------------------
def _split(text):
    """Yield ("text", s) and ("action", s) pieces, applying trim markers."""
    out = []
    i = 0
    while True:
        j = text.find("{{", i)
        if j < 0:
            out.append(["text", text[i:]])
            break
        out.append(["text", text[i:j]])
        k = text.find("}}", j + 2)
        if k < 0:
            raise TemplateError("unclosed action")
        inner = text[j + 2:k]
        ltrim = inner.startswith("- ") or inner == "-"
        rtrim = inner.endswith(" -")
        if ltrim:
            inner = inner[2:] if inner.startswith("- ") else inner[1:]
            out[-1][1] = out[-1][1].rstrip(" \t\r\n")
        if rtrim:
            inner = inner[:-2]
        out.append(["action", inner.strip()])
        i = k + 2
        if rtrim:
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
    return out


def _lex(s):
    toks = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c in "()|,":
            toks.append((c, c))
            i += 1
        elif s.startswith(":=", i):
            toks.append(("declare", ":="))
            i += 2
        elif c == "=":
            toks.append(("assign", "="))
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                raise TemplateError("unterminated quoted string")
            toks.append(("str", json.loads(s[i:j + 1])))
            i = j + 1
        elif c == "`":
            j = s.find("`", i + 1)
            if j < 0:
                raise TemplateError("unterminated raw quoted string")
            toks.append(("str", s[i + 1:j]))
            i = j + 1
        elif c == "'":
            j = s.find("'", i + 1)
            toks.append(("num", ord(json.loads('"' + s[i + 1:j] + '"'))))
            i = j + 1
        elif c == "." and (i + 1 >= n or not s[i + 1].isalpha()):
            # "." alone (maybe followed by nothing/space/paren)
            toks.append(("dot", "."))
            i += 1
        elif c == "." or c == "$" or c.isalpha() or c == "_":
            j = i + 1
            while j < n and (s[j].isalnum() or s[j] in "._$"):
                j += 1
            word = s[i:j]
            if c == ".":
                toks.append(("field", [p for p in word.split(".") if p]))
            elif c == "$":
                parts = word.split(".")
                toks.append(("var", (parts[0], [p for p in parts[1:] if p])))
            else:
                if "." in word:
                    # function result chain is rare; treat "x.y" as ident
                    pass
                toks.append(("ident", word))
            i = j
        elif c.isdigit() or (c in "+-" and i + 1 < n and s[i + 1].isdigit()):
            j = i + 1
            while j < n and (s[j].isalnum() or s[j] in ".+-_"):
                j += 1
            w = s[i:j]
            try:
                v = int(w, 0)
            except ValueError:
                v = float(w)
            toks.append(("num", v))
            i = j
        else:
            raise TemplateError(f"unexpected {c!r} in command")
    return toks


# -- parser -----------------------------------------------------------------
class _P:
    def __init__(self, toks):
        self.t = toks
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def pipeline(self, allow_decl=True):
        decl = None
        if allow_decl:
            # $x := ... or $k, $v := ...
            j = self.i
            names = []
            while j < len(self.t) and self.t[j][0] == "var" and not self.t[j][1][1]:
                names.append(self.t[j][1][0])
                j += 1
                if j < len(self.t) and self.t[j][0] == ",":
                    j += 1
                    continue
                break
            if names and j < len(self.t) and self.t[j][0] in ("declare", "assign"):
                decl = names
                self.i = j + 1
        cmds = []
        while True:
            cmd = []
            while True:
                k, v = self.peek()
                if k is None or k in ("|", ")"):
                    break
                cmd.append(self.operand())
            if not cmd:
                raise TemplateError("missing value for command")
            cmds.append(cmd)
            if self.peek()[0] == "|":
                self.next()
                continue
            break
        return ("pipe", decl, cmds)

    def operand(self):
        k, v = self.next()
        if k == "(":
            p = self.pipeline(False)
            if self.next()[0] != ")":
                raise TemplateError("unclosed left paren")
            # (pipe).Field
            nk, nv = self.peek()
            if nk == "field":
                self.next()
                return ("chain", p, nv)
            return p
        if k in ("field", "var", "str", "num", "ident", "dot"):
            return (k, v)
        raise TemplateError(f"unexpected {v!r} in operand")


def parse(text):
    pieces = _split(text)
    pos = [0]

    def block(stop):
        nodes = []
        while pos[0] < len(pieces):
            kind, s = pieces[pos[0]]
            pos[0] += 1
            if kind == "text":
                if s:
                    nodes.append(("text", s))
                continue
            if s.startswith("/*"):
                continue
            word = s.split(None, 1)[0] if s else ""
            rest = s[len(word):].strip()
            if word in ("end", "else"):
                if word in stop:
                    return nodes, word, rest
                raise TemplateError(f"unexpected {{{{{word}}}}}")
            if word in ("if", "range", "with"):
                nodes.append(control(word, rest))
                continue
            toks = _lex(s)
            p = _P(toks)
            pl = p.pipeline()
            if p.i != len(toks):
                raise TemplateError(f"unexpected {toks[p.i][1]!r} in command")
            nodes.append(("action", pl))
        if stop:
            raise TemplateError("unexpected EOF")
        return nodes, None, None

    def control(word, rest):
        toks = _lex(rest)
        p = _P(toks)
        pl = p.pipeline()
        body, how, r2 = block(("end", "else"))
        els = None
        if how == "else":
            if r2.startswith("if ") and word == "if":
                els = [control("if", r2[3:])]
            elif r2.startswith("with ") and word == "with":
                els = [control("with", r2[5:])]
            else:
                els, how2, _ = block(("end",))
        return (word, pl, body, els)

    nodes, _, _ = block(())
    return nodes


# -- evaluation -------------------------------------------------------------
def truth(v):
    if v is None or v is MISSING or v is False:
        return False
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


def _field(obj, name, args=()):
    if obj is None or obj is MISSING:
        if obj is None:
            return MISSING
        return MISSING
    if isinstance(obj, dict):
        try:
            v = obj[name]
        except KeyError:
            return MISSING
        if v is None:
            if name in NIL_SLICE_FIELDS:
                return NilList()
            if name in NIL_MAP_FIELDS:
                return NilMap()
        if args and not callable(v):
            return v
    else:
        attr = getattr(obj, "FIELDS", None)
        if attr is not None and name not in attr:
            raise TemplateError(
                f'template: :1: executing "" at <.{name}>: can\'t evaluate field {name} '
                f"in type {getattr(type(obj), 'GO_TYPE', type(obj).__name__)}")
        try:
            v = getattr(obj, name)
        except AttributeError:
            raise TemplateError(f"can't evaluate field {name}") from None
    if callable(v) and not isinstance(v, type):
        return v(*args)
    if args:
        raise TemplateError(f"{name} is not a method but has arguments")
    return v


def _index(item, *keys):
    v = item
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, MISSING) if not isinstance(k, float) else v.get(k, MISSING)
        elif isinstance(v, (list, tuple, str)):
            v = v[int(k)]
        elif v is None or v is MISSING:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _printf(fmt, *args):
    out = []
    i = 0
    ai = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < n and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= n:
            out.append(fmt[i:])
            break
        verb = fmt[j]
        spec = fmt[i + 1:j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[ai]
        ai += 1
        if verb in "vs":
            s = go_str(a)
            out.append(("%" + spec + "s") % s if spec else s)
        elif verb == "q":
            out.append(json.dumps(go_str(a), ensure_ascii=False))
        elif verb in "dxXo":
            try:
                out.append(("%" + spec + verb) % int(a))
            except (TypeError, ValueError):
                out.append(f"%!{verb}({go_str(a)})")
        elif verb in "feEgG":
            try:
                out.append(("%" + spec + verb) % float(a))
            except (TypeError, ValueError):
                out.append(f"%!{verb}({go_str(a)})")
        elif verb == "t":
            out.append(go_str(bool(a)))
        else:
            out.append(go_str(a))
    return "".join(out)


def _cmp(op):
    def f(a, b, *more):
        if op == "eq" and more:
            return any(a == x for x in (b,) + more)
        a = None if a is MISSING else a
        b = None if b is MISSING else b
        try:
            return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b,
                    "gt": a > b, "ge": a >= b}[op]
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None
    return f


def _and(*a):
    for x in a:
        if not truth(x):
            return x
    return a[-1]


def _or(*a):
    for x in a:
        if truth(x):
            return x
    return a[-1]


def _join(items, sep):
    if items is None or items is MISSING:
        return ""
    return sep.join(go_str(x) for x in items)


def _title(s):
    return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))


def _truncate(s, n):
    n = int(n)
    return s[:n] if len(s) > n else s


def _pad(s, left, right):
    return " " * int(left) + s + " " * int(right)


def _slice(item, *idx):
    idx = [int(i) for i in idx]
    if len(idx) == 0:
        return item
    if len(idx) == 1:
        return item[idx[0]:]
    return item[idx[0]:idx[1]]


def _urlquery(*a):
    from urllib.parse import quote_plus
    return quote_plus("".join(go_str(x) for x in a))


def _print(*a):
    out = []
    for i, x in enumerate(a):
        if i and not isinstance(x, str) and not isinstance(a[i - 1], str):
            out.append(" ")
        out.append(go_str(x))
    return "".join(out)


FUNCS = {
    "json": go_json,
    "split": lambda s, sep: s.split(sep),
    "join": _join,
    "title": _title,
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "pad": _pad,
    "truncate": _truncate,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": _print,
    "printf": _printf,
    "index": _index,
    "len": lambda x: len(x) if x is not None and x is not MISSING else 0,
    "slice": _slice,
    "not": lambda x: not truth(x),
    "and": _and,
    "or": _or,
    "eq": _cmp("eq"), "ne": _cmp("ne"), "lt": _cmp("lt"),
    "le": _cmp("le"), "gt": _cmp("gt"), "ge": _cmp("ge"),
    "urlquery": _urlquery,
    "html": lambda *a: _print(*a).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
}


class _Scope:
    def __init__(self, root):
        self.vars = [{"$": root}]

    def get(self, name):
        for frame in reversed(self.vars):
            if name in frame:
                return frame[name]
        raise TemplateError(f"undefined variable: {name}")

    def set(self, name, v, declare=True):
        if declare:
            self.vars[-1][name] = v
        else:
            for frame in reversed(self.vars):
                if name in frame:
                    frame[name] = v
                    return
            raise TemplateError(f"undefined variable: {name}")


def _eval_operand(op, dot, scope, args=()):
    k, v = op[0], op[1]
    if k == "dot":
        return dot
    if k == "field":
        cur = dot
        for i, name in enumerate(v):
            cur = _field(cur, name, args if i == len(v) - 1 else ())
        return cur
    if k == "var":
        name, fields = v
        cur = scope.get(name)
        for i, f in enumerate(fields):
            cur = _field(cur, f, args if i == len(fields) - 1 else ())
        return cur
    if k in ("str", "num"):
        return v
    if k == "ident":
        if v == "true":
            return True
        if v == "false":
            return False
        if v == "nil":
            return None
        fn = FUNCS.get(v)
        if fn is None:
            raise TemplateError(f'function "{v}" not defined')
        return fn(*args)
    if k == "pipe":
        return _eval_pipe(op, dot, scope)
    if k == "chain":
        cur = _eval_pipe(v, dot, scope)
        for name in op[2]:
            cur = _field(cur, name)
        return cur
    raise TemplateError(f"can't evaluate {k}")


def _eval_pipe(pipe, dot, scope):
    _, decl, cmds = pipe
    val = None
    have = False
    for cmd in cmds:
        head = cmd[0]
        rest = [_eval_operand(a, dot, scope) for a in cmd[1:]]
        if have:
            rest.append(val)
        if head[0] in ("ident",) and head[1] not in ("true", "false", "nil"):
            val = _eval_operand(head, dot, scope, rest)
        elif head[0] in ("field", "var") and (rest or (have and len(cmd) == 1)):
            val = _eval_operand(head, dot, scope, rest)
        else:
            if rest and not (have and len(cmd) == 1):
                raise TemplateError(f"can't give argument to non-function {head[1]}")
            val = _eval_operand(head, dot, scope)
        have = True
    if decl and len(decl) == 1:
        scope.set(decl[0], val, True)
    return val


def _exec(nodes, dot, scope, out):
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "action":
            pipe = node[1]
            v = _eval_pipe(pipe, dot, scope)
            if not pipe[1]:
                out.append(go_str(v))
        elif kind == "if":
            _, pipe, body, els = node
            scope.vars.append({})
            v = _eval_pipe(pipe, dot, scope)
            if truth(v):
                _exec(body, dot, scope, out)
            elif els:
                _exec(els, dot, scope, out)
            scope.vars.pop()
        elif kind == "with":
            _, pipe, body, els = node
            scope.vars.append({})
            v = _eval_pipe(pipe, dot, scope)
            if truth(v):
                _exec(body, v, scope, out)
            elif els:
                _exec(els, dot, scope, out)
            scope.vars.pop()
        elif kind == "range":
            _, pipe, body, els = node
            _, decl, cmds = pipe
            scope.vars.append({})
            v = _eval_pipe(("pipe", None, cmds), dot, scope)
            if isinstance(v, dict):
                items = [(k, v[k]) for k in sorted(v)]
            elif v is None or v is MISSING:
                items = []
            elif isinstance(v, (list, tuple)):
                items = list(enumerate(v))
            elif isinstance(v, (int, float)):
                items = [(i, i) for i in range(int(v))]
            else:
                raise TemplateError(f"range can't iterate over {go_str(v)}")
            if not items and els:
                _exec(els, dot, scope, out)
            for k, x in items:
                if decl:
                    if len(decl) == 1:
                        scope.set(decl[0], x)
                    else:
                        scope.set(decl[0], k)
                        scope.set(decl[1], x)
                _exec(body, x, scope, out)
            scope.vars.pop()


class Template:
    def __init__(self, text):
        self.text = text
        self.nodes = parse(text)

    def render(self, data):
        out = []
        _exec(self.nodes, data, _Scope(data), out)
        return "".join(out)


def render(text, data):
    return Template(text).render(data)
