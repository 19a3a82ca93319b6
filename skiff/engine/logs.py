"""Container logs: conmon writes CRI's k8s-file format on disk
(``<RFC3339Nano> <stdout|stderr> <F|P> <text>``); clients get Docker's
json-file semantics: follow, timestamps, since, until, tail."""

import asyncio
import calendar
import os
import time


def parse_ts(ts: str) -> int:
    """RFC3339(Nano) with a Z or +HH:MM offset → nanoseconds since the epoch."""
    if ts.endswith("Z"):
        main, off = ts[:-1], 0
    else:
        main, sign, off_s = ts[:-6], ts[-6], ts[-5:]
        off = (int(off_s[:2]) * 3600 + int(off_s[3:]) * 60) * (1 if sign == "+" else -1)
    if "." in main:
        base, frac = main.split(".", 1)
    else:
        base, frac = main, "0"
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - off
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def format_ts(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_since(value: str | None) -> int | None:
    """Docker's since/until query value: unix seconds with optional .nanos."""
    if value in (None, "", "0"):
        return None
    if "." in value:
        s, n = value.split(".", 1)
        return int(s) * 1_000_000_000 + int((n + "000000000")[:9])
    return int(value) * 1_000_000_000


def parse_line(line: bytes):
    """→ (ns, stream, partial, data) or None for a malformed line."""
    try:
        ts, stream, tag, rest = line.split(b" ", 3)
    except ValueError:
        parts = line.split(b" ", 2)
        if len(parts) == 3 and parts[2] in (b"F", b"P"):
            ts, stream, tag, rest = parts[0], parts[1], parts[2], b""
        else:
            return None
    try:
        ns = parse_ts(ts.decode())
    except (ValueError, IndexError):
        return None
    if rest.endswith(b"\n"):
        rest = rest[:-1]
    return ns, stream.decode(), tag == b"P", rest


class LogEntry:
    __slots__ = ("ns", "stream", "data")

    def __init__(self, ns, stream, data):
        self.ns, self.stream, self.data = ns, stream, data


class LogReader:
    """Reads a k8s-file log incrementally, joining partial lines."""

    def __init__(self, path: str):
        self.path = path
        self.f = None
        self.buf = b""
        self.pending = {}

    def _open(self):
        if self.f is None and os.path.exists(self.path):
            self.f = open(self.path, "rb")
        return self.f

    def read_available(self) -> list[LogEntry]:
        f = self._open()
        if f is None:
            return []
        out = []
        chunk = f.read()
        if not chunk:
            return out
        self.buf += chunk
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            p = parse_line(line)
            if p is None:
                continue
            ns, stream, partial, data = p
            prev = self.pending.pop(stream, None)
            if prev is not None:
                ns, data = prev[0], prev[1] + data
            if partial:
                self.pending[stream] = (ns, data)
                continue
            out.append(LogEntry(ns, stream, data + b"\n"))
        return out

    def close(self):
        if self.f:
            self.f.close()
            self.f = None


def select(entries, since=None, until=None, tail=None):
    if since is not None:
        entries = [e for e in entries if e.ns >= since]
    if until is not None:
        entries = [e for e in entries if e.ns <= until]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries


async def stream_logs(path: str, *, follow: bool, since=None, until=None, tail=None,
                      is_running=lambda: False, stopped_event=None):
    """Async generator of LogEntry in Docker's semantics."""
    reader = LogReader(path)
    try:
        for e in select(reader.read_available(), since, until, tail):
            yield e
        if not follow:
            return
        while True:
            running = is_running()
            for e in reader.read_available():
                if since is not None and e.ns < since:
                    continue
                if until is not None and e.ns > until:
                    return
                yield e
            if not running:
                # one last read: conmon flushes before it exits
                for e in reader.read_available():
                    yield e
                return
            if until is not None and time.time_ns() > until:
                return
            await asyncio.sleep(0.05)
    finally:
        reader.close()
