"""Docker's output formatting: tables (text/tabwriter with docker's settings),
human sizes and durations (go-units), port lists, and the ``--format``
driver with ``table`` and ``json`` shortcuts."""

import sys
import time

from skiff.cli import template as T
from skiff.humanize import human_duration, human_size  # noqa: F401 (fmt.human_size)


# -- go-units ---------------------------------------------------------------
_BIN = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _gfmt(x, prec):
    s = "%.*g" % (prec, x)
    return s


def bytes_size(size):
    """units.BytesSize: binary units, %.4g."""
    size = float(size)
    i = 0
    while size >= 1024.0 and i < len(_BIN) - 1:
        size /= 1024.0
        i += 1
    return _gfmt(size, 4) + _BIN[i]


def since(ts, now=None):
    if not ts:
        return ""
    return human_duration((now or time.time()) - float(ts)) + " ago"


def parse_rfc3339(s):
    """'2024-01-02T03:04:05.123456789Z' (or +hh:mm) → unix seconds (float)."""
    if not s or s.startswith("0001-01-01"):
        return 0.0
    import calendar
    date, _, rest = s.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    tz = 0
    if rest.endswith("Z"):
        rest = rest[:-1]
    else:
        for sign in "+-":
            if sign in rest:
                rest, _, off = rest.rpartition(sign)
                oh, _, om = off.partition(":")
                tz = (int(oh) * 3600 + int(om or 0) * 60) * (1 if sign == "+" else -1)
                break
    hms, _, frac = rest.partition(".")
    hh, mm, ss = (int(x) for x in hms.split(":"))
    t = calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)) - tz
    return t + (float("0." + frac) if frac else 0.0)


def get_timestamp(value, now=None):
    """docker's timetypes.GetTimestamp: a duration ("10m"), an RFC 3339 /
    date-time (local when no zone) or a unix timestamp → "secs[.nanos]"."""
    import re
    import calendar
    now = time.time() if now is None else now
    if value != "0":
        try:
            from skiff.cli.runopts import go_duration
            return str(int(now - go_duration(value) / 1e9))
        except Exception:  # noqa: BLE001 - not a duration
            pass
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2}))?(?::(\d{2}))?"
                     r"(?:\.(\d{1,9}))?)?(Z|z|[+-]\d{2}:?\d{2})?", value)
    if m:
        y, mo, d, hh, mm, ss, frac, tz = m.groups()
        tup = (int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), 0, 0, -1)
        if tz:
            secs = calendar.timegm(tup)
            if tz not in ("Z", "z"):
                sign = 1 if tz[0] == "+" else -1
                tz = tz[1:].replace(":", "")
                secs -= sign * (int(tz[:2]) * 3600 + int(tz[2:]) * 60)
        else:
            secs = int(time.mktime(tup))
        ns = int((frac or "0").ljust(9, "0"))
        return f"{secs}.{ns:09d}"
    if "-" in value or not re.fullmatch(r"\d+(\.\d{1,9})?", value):
        raise ValueError(f'failed to parse value as time or duration: "{value}"')
    return value


def local_time(ts):
    """Go's time.Unix(ts).String(): '2024-01-02 03:04:05 +0000 UTC'."""
    lt = time.localtime(ts)
    off = lt.tm_gmtoff
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + \
        f" {sign}{off // 3600:02d}{off % 3600 // 60:02d} {lt.tm_zone}"


def truncate_id(i, n=12):
    if ":" in i:
        i = i.split(":", 1)[1]
    return i[:n]


def ellipsis(s, width):
    if len(s) <= width:
        return s
    if width <= 0:
        return ""
    return s[:width - 1] + "…"


def go_quote(s):
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


# -- ports (docker's DisplayablePorts) --------------------------------------
def display_ports(ports):
    """docker's formatter.DisplayablePorts: sort, group consecutive ports
    per IP/proto, host mappings whose public port differs come last."""
    if not ports:
        return ""

    def key(p):
        return (p.get("PrivatePort", 0), p.get("IP", "") or "", p.get("PublicPort", 0) or 0,
                p.get("Type", ""))
    groups = {}
    order = []
    result = []
    host_maps = []
    for p in sorted(ports, key=key):
        cur = p.get("PrivatePort", 0)
        ptype = p.get("Type", "")
        pkey = ptype
        ip = p.get("IP", "") or ""
        if ip:
            pub = p.get("PublicPort", 0) or 0
            if pub != cur:
                hp = f"[{ip}]:{pub}" if ":" in ip else f"{ip}:{pub}"
                host_maps.append(f"{hp}->{cur}/{ptype}")
                continue
            pkey = f"{ip}/{ptype}"
        g = groups.get(pkey)
        if g is None:
            groups[pkey] = [cur, cur]
            order.append(pkey)
            continue
        if cur == g[1] + 1:
            g[1] = cur
            continue
        result.append(_form_group(pkey, g[0], g[1]))
        groups[pkey] = [cur, cur]
    for k in order:
        g = groups[k]
        result.append(_form_group(k, g[0], g[1]))
    return ", ".join(result + host_maps)


def _form_group(key, start, last):
    parts = key.split("/")
    gtype = parts[0]
    ip = ""
    if len(parts) > 1:
        ip, gtype = parts[0], parts[1]
    group = str(start) if start == last else f"{start}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{gtype}"


# -- tabwriter ----------------------------------------------------------------
def tabwrite(text, minwidth=10, padding=3):
    """Go's text/tabwriter with docker's settings (minwidth 10, tabwidth 1,
    padding 3, pad ' ', no flags): cells end with a tab; the text after the
    last tab of a line is not aligned.  Column blocks are runs of
    consecutive lines that have a cell in that column."""
    lines = text.split("\n")
    trailing = lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    rows = [ln.split("\t") for ln in lines]
    widths = [[None] * (len(r) - 1) for r in rows]

    def fmt_block(start, end, col):
        # lines start..end-1 all have a cell at col
        w = minwidth
        for r in range(start, end):
            w = max(w, len(rows[r][col]) + padding)
        for r in range(start, end):
            widths[r][col] = w
        # nested column
        r = start
        while r < end:
            if len(rows[r]) - 1 > col + 1:
                s = r
                while r < end and len(rows[r]) - 1 > col + 1:
                    r += 1
                fmt_block(s, r, col + 1)
            else:
                r += 1

    r = 0
    while r < len(rows):
        if len(rows[r]) > 1:
            s = r
            while r < len(rows) and len(rows[r]) > 1:
                r += 1
            fmt_block(s, r, 0)
        else:
            r += 1
    out = []
    for row, w in zip(rows, widths):
        parts = []
        for i, cell in enumerate(row[:-1]):
            parts.append(cell.ljust(w[i]))
        parts.append(row[-1])
        out.append("".join(parts))
    return "\n".join(out) + ("\n" if trailing else "")


# -- --format driver ------------------------------------------------------------
def write_formatted(fmt, items, headers, default_table, out=None, quiet_field=None):
    """Render ``items`` (context objects) with docker's formatter rules.

    ``fmt``: None/"" → default_table; "table" → default_table; "table X" →
    header row + X through tabwriter; "json" → {{json .}} per line; else a
    raw template, one line per item."""
    out = out or sys.stdout
    if not fmt or fmt == "table":
        fmt = default_table
    elif fmt == "json":
        fmt = "{{json .}}"
    is_table = fmt.startswith("table")
    body = fmt[5:] if is_table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    try:
        tmpl = T.Template(body)
    except T.TemplateError as e:
        raise SystemExit(_tmpl_error(e))
    buf = []
    if is_table:
        buf.append(tmpl.render(headers) + "\n")
    for it in items:
        try:
            buf.append(tmpl.render(it) + "\n")
        except T.TemplateError as e:
            raise SystemExit(_tmpl_error(e))
    text = "".join(buf)
    if is_table:
        text = tabwrite(text)
    out.write(text)
    out.flush()


def _tmpl_error(e):
    sys.stderr.write(f"template parsing error: {e}\n")
    return 1


class Ctx:
    """A formatting context: template fields are attributes or methods."""
    FIELDS = ()
    GO_TYPE = "context"

    def to_json(self):
        d = {}
        for f in sorted(self.FIELDS):
            v = getattr(self, f)
            if callable(v):
                try:
                    v = v()
                except TypeError:
                    continue
            d[f] = v
        return d


def labels_str(labels):
    if not labels:
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class ContainerCtx(Ctx):
    GO_TYPE = "*formatter.ContainerContext"
    FIELDS = ("ID", "Names", "Image", "ImageID", "Command", "CreatedAt", "RunningFor",
              "Ports", "State", "Status", "Size", "Labels", "Label", "Mounts",
              "LocalVolumes", "Networks", "Platform")
    HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE",
               "Command": "COMMAND", "CreatedAt": "CREATED AT", "RunningFor": "CREATED",
               "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
               "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS",
               "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS",
               "ImageID": "IMAGE ID", "Platform": "PLATFORM"}

    def __init__(self, c, trunc=True, now=None):
        self.c = c
        self.trunc = trunc
        self.now = now

    @property
    def ID(self):
        return truncate_id(self.c.get("Id", "")) if self.trunc else self.c.get("Id", "")

    @property
    def Names(self):
        names = [n[1:] if n.startswith("/") else n for n in (self.c.get("Names") or [])]
        if self.trunc:
            names = [n for n in names if "/" not in n][:1] or names[:1]
        return ",".join(names)

    @property
    def Image(self):
        img = self.c.get("Image") or ""
        if not img:
            return "<no image>"
        if self.trunc:
            iid = self.c.get("ImageID", "")
            if iid and truncate_id(iid) == truncate_id(img):
                return truncate_id(img)
            if "@" in img:
                img = img.split("@", 1)[0]
        return img

    @property
    def ImageID(self):
        return self.c.get("ImageID", "")

    @property
    def Command(self):
        cmd = self.c.get("Command") or ""
        if self.trunc:
            cmd = ellipsis(cmd, 20)
        return go_quote(cmd)

    @property
    def CreatedAt(self):
        return local_time(self.c.get("Created", 0))

    @property
    def RunningFor(self):
        return since(self.c.get("Created", 0), self.now)

    @property
    def Ports(self):
        return display_ports(self.c.get("Ports"))

    @property
    def State(self):
        return self.c.get("State", "")

    @property
    def Status(self):
        return self.c.get("Status", "")

    @property
    def Size(self):
        srw = self.c.get("SizeRw", 0) or 0
        sv = self.c.get("SizeRootFs", 0) or 0
        s = human_size(srw, 3)
        if sv:
            s += f" (virtual {human_size(sv, 3)})"
        return s

    @property
    def Labels(self):
        return labels_str(self.c.get("Labels"))

    def Label(self, name):
        return (self.c.get("Labels") or {}).get(name, "")

    @property
    def Mounts(self):
        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source", "")
            if self.trunc and m.get("Name"):
                name = ellipsis(name, 15)
            out.append(name)
        return ",".join(out)

    @property
    def LocalVolumes(self):
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    @property
    def Networks(self):
        nets = ((self.c.get("NetworkSettings") or {}).get("Networks") or {})
        return ",".join(sorted(nets))

    @property
    def Platform(self):
        return ""

    def to_json(self):
        d = super().to_json()
        d.pop("Label", None)
        d.pop("ImageID", None)
        d["Platform"] = None
        return d


class ImageCtx(Ctx):
    GO_TYPE = "*formatter.imageContext"
    FIELDS = ("ID", "Repository", "Tag", "Digest", "CreatedSince", "CreatedAt",
              "Size", "Containers", "VirtualSize", "SharedSize", "UniqueSize")
    HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG",
               "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
               "Size": "SIZE", "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE",
               "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
    HEADERS["VirtualSize"] = "SIZE"

    def __init__(self, img, repo, tag, digest, trunc=True, now=None):
        self.i = img
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.trunc = trunc
        self.now = now

    @property
    def ID(self):
        return truncate_id(self.i.get("Id", "")) if self.trunc else self.i.get("Id", "")

    @property
    def Repository(self):
        return self.repo

    @property
    def Tag(self):
        return self.tag

    @property
    def Digest(self):
        return self.digest

    @property
    def CreatedSince(self):
        c = self.i.get("Created", 0)
        return since(c, self.now) if c else "N/A"

    @property
    def CreatedAt(self):
        return local_time(self.i.get("Created", 0))

    @property
    def Size(self):
        return human_size(self.i.get("Size", 0), 3)

    @property
    def VirtualSize(self):
        return human_size(self.i.get("Size", 0))

    @property
    def Containers(self):
        c = self.i.get("Containers", -1)
        return "N/A" if c is None or c == -1 else str(c)

    @property
    def SharedSize(self):
        s = self.i.get("SharedSize", -1)
        return "N/A" if s is None or s == -1 else human_size(s, 3)

    @property
    def UniqueSize(self):
        s = self.i.get("SharedSize", -1)
        if s is None or s == -1:
            return "N/A"
        return human_size(self.i.get("Size", 0) - s, 3)


class MapCtx(Ctx):
    """Context over a dict with computed overrides (networks, volumes ...)."""
    GO_TYPE = "context"

    def __init__(self, fields, headers):
        self._f = fields
        self.HEADERS = headers
        self.FIELDS = tuple(fields)

    def __getattr__(self, k):
        try:
            return self.__dict__["_f"][k]
        except KeyError:
            raise AttributeError(k) from None

    def to_json(self):
        return {k: self._f[k] for k in sorted(self._f) if not callable(self._f[k])}


def header_ctx(headers):
    class H(dict):
        def __missing__(self, k):
            return ""
    h = H(headers)
    return h
