"""Docker's human-readable sizes and durations (go-units HumanSize,
HumanDuration) and its progress bar (jsonmessage.JSONProgress.String),
shared by the engine (Status strings), the registry client (the progress the
daemon streams) and the CLI (columns, pull/push output). A leaf module: it
imports nothing (time only when a bar shows time left)."""

_DEC = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size, precision=4):
    """units.HumanSizeWithPrecision: decimal units, %.<p>g."""
    size = float(size)
    i = 0
    while size >= 1000.0 and i < len(_DEC) - 1:
        size /= 1000.0
        i += 1
    return "%.*g" % (precision, size) + _DEC[i]


def go_duration(seconds: int) -> str:
    """A whole number of seconds as Go's Duration.String() ("1h2m3s")."""
    if seconds <= 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def json_progress(current, total, start=0, now=None, width=200, units="", hidecounts=False):
    """jsonmessage.JSONProgress.String(): "[==>   ]  1.2MB/3.4MB 2s" (the bar
    box only wider than 110 columns, the time left only wider than 50)."""
    current = current or 0
    total = total or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return "%8s" % human_size(current) if not units else f"{current} {units}"
    pct = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = "[" + "=" * pct + ">" + " " * max(50 - pct, 0) + "] "
    if hidecounts:
        nums = ""
    elif not units:
        nums = "%8s/%s" % (human_size(current), human_size(total))
        if current > total:
            nums = "%8s" % human_size(current)
    else:
        nums = f"{current}/{total} {units}"
        if current > total:
            nums = f"{current} {units}"
    left = ""
    if current > 0 and start and start > 0 and pct < 50 and width > 50:
        if now is None:
            import time
            now = time.time()
        per = max(now - start, 0.0) / current
        left = " " + go_duration(int((total - current) * per))
    return bar + nums + left


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About a minute",
    "3 hours", "2 weeks" ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = int(seconds // 60)
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = int((seconds + 1800) // 3600)  # Go's d.Round(time.Hour): halves away from zero
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"
