"""Docker-style (pflag) command-line parsing, small and fast to import.

Semantics follow spf13/pflag as the docker CLI uses it: ``--name=x`` and
``--name x``; ``-e X``, ``-eX`` and ``-e=X``; combined booleans ``-it``,
``-dit``; booleans take ``--rm=false``; ``--`` ends flags; for ``run``,
``create`` and ``exec`` flags stop at the first positional argument
(SetInterspersed(false)), elsewhere flags and arguments may be mixed.
"""


class UsageError(Exception):
    """Bad flags or arguments: docker prints the message, a hint, exits 125
    (1 for most non-run commands; the caller decides)."""


class Flag:
    __slots__ = ("long", "short", "kind", "default", "dest", "help", "metavar")

    def __init__(self, long, short=None, kind="bool", default=None, help="",
                 dest=None, metavar=None):
        self.long = long
        self.short = short
        self.kind = kind  # bool | str | list | int | float
        if default is None:
            default = {"bool": False, "list": None, "int": None}.get(kind)
        self.default = default
        self.dest = dest or long.replace("-", "_")
        self.help = help
        self.metavar = metavar


def F(spec, kind="bool", default=None, help="", dest=None):
    """``F("e,env", "list")`` → Flag(long="env", short="e")."""
    names = spec.split(",")
    short = names[0] if len(names) == 2 else None
    long = names[-1]
    return Flag(long, short, kind, default, help, dest)


_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


class Opts(dict):
    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def parse(flags, args, interspersed=True):
    """Return (Opts, positionals, set_flags).  Raises UsageError."""
    by_long = {}
    by_short = {}
    for f in flags:
        by_long[f.long] = f
        if f.short:
            by_short[f.short] = f
    opts = Opts()
    for f in flags:
        opts[f.dest] = list(f.default) if isinstance(f.default, list) else f.default
    seen = set()
    pos = []

    def setval(f, val, name):
        seen.add(f.dest)
        if f.kind == "bool":
            if val is None or val in _TRUE:
                opts[f.dest] = True
            elif val in _FALSE:
                opts[f.dest] = False
            else:
                raise UsageError(f'invalid argument "{val}" for "{name}" flag: '
                                 f'strconv.ParseBool: parsing "{val}": invalid syntax')
        elif f.kind == "list":
            if opts[f.dest] is None:
                opts[f.dest] = []
            opts[f.dest].append(val)
        elif f.kind == "int":
            try:
                opts[f.dest] = int(val)
            except ValueError:
                raise UsageError(f'invalid argument "{val}" for "{name}" flag: '
                                 f'strconv.ParseInt: parsing "{val}": invalid syntax') from None
        elif f.kind == "float":
            try:
                opts[f.dest] = float(val)
            except ValueError:
                raise UsageError(f'invalid argument "{val}" for "{name}" flag: '
                                 f'strconv.ParseFloat: parsing "{val}": invalid syntax') from None
        else:
            opts[f.dest] = val

    i = 0
    n = len(args)
    while i < n:
        a = args[i]
        i += 1
        if a == "--":
            pos.extend(args[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            f = by_long.get(name)
            if f is None:
                if name == "help":
                    opts["help"] = True
                    continue
                raise UsageError(f"unknown flag: --{name}")
            if f.kind == "bool":
                setval(f, val if eq else None, "--" + name)
            else:
                if not eq:
                    if i >= n:
                        raise UsageError(f"flag needs an argument: --{name}")
                    val = args[i]
                    i += 1
                setval(f, val, "--" + name)
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                f = by_short.get(c)
                if f is None:
                    if c == "h":
                        opts["help"] = True
                        j += 1
                        continue
                    raise UsageError(f"unknown shorthand flag: '{c}' in {a}")
                j += 1
                if f.kind == "bool":
                    if j < len(a) and a[j] == "=":
                        setval(f, a[j + 1:], "-" + c)
                        break
                    setval(f, None, "-" + c)
                    continue
                rest = a[j:]
                if rest.startswith("="):
                    rest = rest[1:]
                elif not rest:
                    if i >= n:
                        raise UsageError(f"flag needs an argument: '{c}' in -{c}")
                    rest = args[i]
                    i += 1
                setval(f, rest, "-" + c)
                break
            continue
        pos.append(a)
        if not interspersed:
            pos.extend(args[i:])
            break
    return opts, pos, seen


def usage_text(prog, usage, flags, desc=""):
    lines = [f"\nUsage:  {prog} {usage}\n"]
    if desc:
        lines.append(desc + "\n")
    if flags:
        lines.append("Options:")
        rows = []
        for f in flags:
            names = (f"-{f.short}, " if f.short else "    ") + "--" + f.long
            if f.kind != "bool":
                names += " " + (f.metavar or {"list": "list", "int": "int",
                                              "float": "decimal"}.get(f.kind, "string"))
            rows.append((names, f.help))
        w = max(len(r[0]) for r in rows) + 3
        for names, h in rows:
            lines.append(f"  {names:<{w}}{h}")
    return "\n".join(lines) + "\n"
