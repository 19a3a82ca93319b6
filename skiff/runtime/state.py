"""Container state on disk: ``<root>/<id>/state.bin`` (+ ``exec.fifo`` while
created), and the status computed as runc does: the init is gone →
stopped; exec.fifo still there → created; cgroup frozen → paused; else
running. The init is identified by pid *and* start time, so a reused pid is
never mistaken for the container.

The state file is the runtime's own (runc's state.json is private to runc
too; ``skiff-runtime state`` prints the JSON callers read). It is written in
the interpreter's built-in ``marshal`` format, not JSON: start, kill and
delete read it at every call, and the JSON decoder is a shared library
(``_json``) whose loading costs ~0.3-0.5 ms of their start-up on the
development VM; ``marshal`` is compiled into the interpreter. It holds only
dicts, lists, strings, numbers, booleans and None (what the JSON held), and
a state.json left by an older skiff-runtime is still read.
"""

import marshal
import posix

STATE_FILE = "state.bin"
OLD_STATE_FILE = "state.json"

# posix, not os: `os` costs ~2 ms of start-up (collections.abc for
# os.environ), and start/state/kill/delete need nothing else from it.


def read_file(path):
    """The whole file, through three system calls (open, read, close); the
    built-in open() makes a buffered file object and adds fstat, ioctl and
    lseek calls. Raises OSError as open() does."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        parts = []
        while chunk := posix.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        posix.close(fd)


def exists(path):
    try:
        posix.stat(path)
        return True
    except OSError:
        return False


class RuntimeFailure(Exception):
    """An error reported as runc does (message on stderr, exit status 1)."""


class SpecError(ValueError):
    """config.json is invalid; the message says what and where."""


VALID_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(cid):
    if not cid:
        raise RuntimeFailure("container id cannot be empty")
    if not set(cid) <= VALID_ID_CHARS or cid in (".", "..") or len(cid) > 1024:
        raise RuntimeFailure(f"invalid container id format: {cid}")


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat, or None if the process is gone or a zombie."""
    try:
        data = read_file(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def now_rfc3339():
    import time
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000)) + \
        f".{t % 1_000_000_000:09d}Z"


class Container:
    """What a later command knows about a container."""

    def __init__(self, root, cid, data):
        self.root = root
        self.id = cid
        self.data = data

    @property
    def dir(self):
        return f"{self.root}/{self.id}"

    @property
    def fifo(self):
        return f"{self.root}/{self.id}/exec.fifo"

    @property
    def pid(self):
        return self.data.get("pid", 0)

    def alive(self):
        pid = self.pid
        return bool(pid) and proc_start_time(pid) == self.data.get("start_time")

    def cgroup(self):
        st = self.data.get("cgroup")
        if not st:
            return None
        from skiff.runtime import cgroups
        return cgroups.from_state(st)

    def status(self):
        if not self.alive():
            return "stopped"
        if exists(self.fifo):
            return "created"
        if self.frozen():
            return "paused"
        return "running"

    def frozen(self):
        """Read the freezer state directly (importing the cgroups manager for
        one file costs more than the rest of `state`)."""
        cg = self.data.get("cgroup") or {}
        paths = cg.get("paths") or {}
        try:
            if cg.get("mode") == "v2":
                return read_file(paths[""] + "/cgroup.freeze").strip() == b"1"
            if "freezer" in paths:
                return read_file(paths["freezer"] + "/freezer.state").strip() in \
                    (b"FROZEN", b"FREEZING")
        except (OSError, KeyError):
            pass
        return False

    def remove_empty_cgroups(self):
        """Fast path of delete for a stopped container: rmdir its (empty)
        cgroup directories. → False if something is left (then the manager's
        destroy, which also kills leftovers, must run)."""
        cg = self.data.get("cgroup") or {}
        dirs = []
        for d in (cg.get("paths") or {}).values():
            if d not in dirs:
                dirs.append(d)
        ok = True
        for d in dirs:
            try:
                posix.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        return ok

    def oci_state(self, status=None):
        """The runtime-spec state given to hooks."""
        status = status or self.status()
        out = {"ociVersion": self.data.get("ociVersion", "1.0.2-dev"), "id": self.id,
               "status": status, "pid": self.pid if status != "stopped" else 0,
               "bundle": self.data["bundle"]}
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out

    def runc_state(self):
        """`runc state` JSON."""
        status = self.status()
        out = {"ociVersion": self.data.get("ociVersion", "1.0.2-dev"), "id": self.id,
               "pid": self.pid if status != "stopped" else 0, "status": status,
               "bundle": self.data["bundle"], "rootfs": self.data["rootfs"],
               "created": self.data["created"], "owner": ""}
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out

    def save(self):
        path = f"{self.dir}/{STATE_FILE}"
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(self.data))
        posix.rename(tmp, path)


def load(root, cid):
    validate_id(cid)
    d = f"{root}/{cid}"
    try:
        raw = read_file(f"{d}/{STATE_FILE}")
        old = False
    except (FileNotFoundError, NotADirectoryError):
        try:
            raw = read_file(f"{d}/{OLD_STATE_FILE}")
            old = True
        except (FileNotFoundError, NotADirectoryError):
            raise RuntimeFailure("container does not exist") from None
    try:
        if old:
            from skiff.runtime import fastjson
            data = fastjson.loads(raw)
        else:
            data = marshal.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a mapping")
    except (ValueError, EOFError, TypeError):
        raise RuntimeFailure(f"container {cid} has a corrupt state file") from None
    return Container(root, cid, data)


def list_ids(root):
    try:
        names = posix.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if exists(f"{root}/{n}/{STATE_FILE}")
                  or exists(f"{root}/{n}/{OLD_STATE_FILE}"))
