"""Streams: stdcopy frame demultiplexing, hijacked attach/exec sessions
(stdin copy with half-close, raw terminal, detach keys, resize), and
docker's JSON message display (pull/push/load progress)."""

import os
import struct
import sys

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


class Demux:
    """Incremental parser of the 8-byte-header multiplexed stream
    (``[stream, 0, 0, 0, size uint32 BE] + payload``)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            stream = self.buf[0]
            size = struct.unpack(">I", self.buf[4:8])[0]
            if len(self.buf) < 8 + size:
                break
            out.append((stream, self.buf[8:8 + size]))
            self.buf = self.buf[8 + size:]
        return out


def frame(stream, data):
    return struct.pack(">BxxxI", stream, len(data)) + data


class StreamError(Exception):
    pass


def copy_output(read1, tty, out=None, err=None):
    """Copy a (raw or multiplexed) stream to stdout/stderr until EOF."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    dm = None if tty else Demux()
    while True:
        try:
            data = read1()
        except OSError:
            break
        if not data:
            break
        if dm is None:
            out.write(data)
            out.flush()
            continue
        for stream, payload in dm.feed(data):
            if stream == SYSTEMERR:
                raise StreamError(payload.decode("utf-8", "replace"))
            w = err if stream == STDERR else out
            w.write(payload)
            w.flush()


def parse_detach_keys(spec):
    """"ctrl-p,ctrl-q" → b"\\x10\\x11" (docker's term.ToBytes)."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(k) > 1 and k.startswith("ctrl-"):
            c = k[5:]
            if len(c) == 1 and "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c == "@":
                out.append(0)
            elif c in "[\\]^_" and len(c) == 1:
                out.append({"[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise ValueError(f"Unknown character: '{key}'")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class RawTerminal:
    """Put a tty fd into raw mode; restore on exit. ``enabled`` False: a
    no-op (so callers can always use ``with``)."""

    def __init__(self, fd, enabled=True):
        self.fd = fd
        self.enabled = enabled
        self.saved = None

    def __enter__(self):
        if not self.enabled:
            return self
        import termios
        import tty
        try:
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        except termios.error:
            self.saved = None
        return self

    def __exit__(self, *a):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def term_size(fd=1):
    try:
        sz = os.get_terminal_size(fd)
        return sz.lines, sz.columns
    except OSError:
        return None


class Session:
    """A hijacked attach/exec connection."""

    def __init__(self, sock, rfile, tty, stdin=False, detach_keys=b"\x10\x11"):
        self.sock = sock
        self.rfile = rfile
        self.tty = tty
        self.stdin = stdin
        self.detach_keys = detach_keys if tty or detach_keys else b""
        self.detached = False
        self._stdin_thread = None

    def _copy_stdin(self):
        fd = sys.stdin.fileno()
        keys = self.detach_keys if self.tty else b""
        held = b""
        try:
            while True:
                try:
                    data = os.read(fd, 32768)
                except OSError:
                    data = b""
                if not data:
                    break
                if keys:
                    outb = bytearray()
                    for b in data:
                        cand = held + bytes([b])
                        if keys.startswith(cand):
                            held = cand
                            if held == keys:
                                self.detached = True
                                if outb:
                                    self.sock.sendall(bytes(outb))
                                self._close_all()
                                return
                        else:
                            outb += cand
                            held = b""
                    data = bytes(outb)
                    if not data:
                        continue
                self.sock.sendall(data)
        except OSError:
            return
        # stdin reached EOF: half-close, keep reading output
        try:
            self.sock.shutdown(1)  # SHUT_WR
        except OSError:
            pass

    def _close_all(self):
        try:
            self.sock.shutdown(2)  # SHUT_RDWR
        except OSError:
            pass

    def start_stdin(self):
        if self.stdin:
            import threading
            self._stdin_thread = threading.Thread(target=self._copy_stdin, daemon=True)
            self._stdin_thread.start()
        else:
            # like docker's hijackedIOStreamer: no input → send EOF at once
            try:
                self.sock.shutdown(1)  # SHUT_WR
            except OSError:
                pass

    def run(self, out=None, err=None):
        """Copy output until the stream ends (or the user detaches)."""
        self.start_stdin()
        try:
            copy_output(self.rfile.read1, self.tty, out, err)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


# -- JSON messages (pkg/jsonmessage) ---------------------------------------------
def progress_string(p, width):
    from skiff.humanize import json_progress
    return json_progress(p.get("current", 0), p.get("total", 0), p.get("start", 0),
                         width=width, units=p.get("units", ""),
                         hidecounts=bool(p.get("hidecounts")))


class JSONMessageError(Exception):
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def display_messages(messages, out=None, is_term=None, aux=None):
    """docker's DisplayJSONMessagesStream: per-ID lines redrawn in place on a
    terminal, plain lines (progress messages skipped) otherwise."""
    out = out or sys.stdout
    if is_term is None:
        is_term = out.isatty()
    width = 200
    if is_term:
        try:
            ts = term_size(out.fileno())
        except (OSError, ValueError, AttributeError):
            ts = None
        if ts:
            width = ts[1]
    ids = {}
    for jm in messages:
        if jm.get("aux") is not None:
            if aux is not None:
                aux(jm["aux"])
            continue
        err = jm.get("errorDetail") or ({"message": jm["error"]} if jm.get("error") else None)
        has_prog = "progressDetail" in jm or bool(jm.get("progress"))
        diff = 0
        jid = jm.get("id") or ""
        if jid and has_prog:
            line = ids.get(jid)
            if line is None:
                line = len(ids)
                ids[jid] = line
                if is_term:
                    out.write("\n")
            diff = len(ids) - line
            if is_term and diff:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        if err:
            raise JSONMessageError(err.get("message", ""), err.get("code"))
        prog = jm.get("progressDetail") or {}
        pstr = progress_string(prog, width) if prog else ""
        endl = ""
        if is_term and not jm.get("stream") and has_prog:
            out.write("\x1b[2K\r")
            endl = "\r"
        elif pstr:
            if jid and is_term and diff:
                out.write(f"\x1b[{diff}B")
            continue
        if jid:
            out.write(f"{jid}: ")
        if has_prog and is_term:
            out.write(f"{jm.get('status', '')} {pstr}{endl}")
        elif jm.get("stream"):
            out.write(jm["stream"] + endl)
        else:
            out.write(f"{jm.get('status', '')}{endl}\n")
        if jid and is_term and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
