"""Containers as objects: the inspect-shaped record plus live runtime state
(waiters, pending attaches) that never goes to disk."""

import asyncio
import time

from skiff.engine.logs import format_ts
from skiff.humanize import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_ts() -> str:
    return format_ts(time.time_ns())


def ts_seconds(ts: str) -> float:
    from skiff.engine.logs import parse_ts
    if not ts or ts.startswith("0001-"):
        return 0.0
    return parse_ts(ts) / 1e9


class Container:
    def __init__(self, rec: dict):
        self.rec = rec
        self.exit_waiters: list[asyncio.Future] = []
        self.remove_waiters: list[asyncio.Future] = []
        self.pending_attach: list = []   # callables awaited between create and start
        self.lock = asyncio.Lock()
        self.stop_requested = False
        self.health_task = None
        self.restart_task = None
        self.removing = False
        self.running_event = asyncio.Event()

    # convenient accessors
    @property
    def id(self) -> str:
        return self.rec["Id"]

    @property
    def name(self) -> str:
        return self.rec["Name"].lstrip("/")

    @property
    def state(self) -> dict:
        return self.rec["State"]

    @property
    def config(self) -> dict:
        return self.rec["Config"]

    @property
    def host_config(self) -> dict:
        return self.rec["HostConfig"]

    @property
    def private(self) -> dict:
        return self.rec.setdefault("_skiff", {})

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def paused(self) -> bool:
        return bool(self.state.get("Paused"))

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    def status_word(self) -> str:
        st = self.state
        if self.removing:
            return "removing"
        if st.get("Dead"):
            return "dead"
        if st.get("Restarting"):
            return "restarting"
        if st.get("Paused"):
            return "paused"
        if st.get("Running"):
            return "running"
        if self.private.get("HasBeenStarted"):
            return "exited"
        return "created"

    def sync_status(self):
        self.state["Status"] = self.status_word()

    def status_string(self) -> str:
        st = self.state
        now = time.time()
        if self.removing:
            return "Removal In Progress"
        if st.get("Dead"):
            return "Dead"
        if st.get("Restarting"):
            return f"Restarting ({st.get('ExitCode', 0)}) {human_duration(now - ts_seconds(st.get('FinishedAt')))} ago"
        if st.get("Running"):
            s = "Up " + human_duration(now - ts_seconds(st.get("StartedAt")))
            if st.get("Paused"):
                return s + " (Paused)"
            h = st.get("Health")
            if h:
                hs = h.get("Status")
                s += " (health: starting)" if hs == "starting" else f" ({hs})"
            return s
        if self.private.get("HasBeenStarted") and not st.get("FinishedAt", ZERO_TIME).startswith("0001"):
            return f"Exited ({st.get('ExitCode', 0)}) {human_duration(now - ts_seconds(st.get('FinishedAt')))} ago"
        return "Created"

    def inspect(self) -> dict:
        self.sync_status()
        out = {k: v for k, v in self.rec.items() if not k.startswith("_")}
        out["Mounts"] = [{k: v for k, v in m.items() if not k.startswith("_")}
                         for m in self.rec.get("Mounts") or []]
        return out

    def list_json(self, size: bool = False) -> dict:
        self.sync_status()
        r = self.rec
        cfg = r["Config"]
        path, args = r.get("Path", ""), r.get("Args") or []
        command = " ".join([path] + list(args)) if path else ""
        ports = []
        ns = r.get("NetworkSettings") or {}
        for key, binds in (ns.get("Ports") or {}).items():
            port, _, proto = key.partition("/")
            if binds:
                for b in binds:
                    ports.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                                  "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
            else:
                ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        out = {
            "Id": r["Id"],
            "Names": ["/" + self.name],
            "Image": cfg.get("Image", ""),
            "ImageID": r.get("Image", ""),
            "Command": command,
            "Created": int(ts_seconds(r.get("Created"))),
            "Ports": ports,
            "Labels": cfg.get("Labels") or {},
            "State": self.state["Status"],
            "Status": self.status_string(),
            "HostConfig": {"NetworkMode": r["HostConfig"].get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": ns.get("Networks") or {}},
            "Mounts": [{k: v for k, v in m.items() if not k.startswith("_")}
                       for m in (r.get("Mounts") or [])],
        }
        if size:
            out["SizeRw"] = self.private.get("SizeRw", 0)
            out["SizeRootFs"] = self.private.get("SizeRootFs", 0)
        return out

    def resolve_exit_waiters(self, code: int, error: str | None = None):
        waiters, self.exit_waiters = self.exit_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result((code, error))

    def resolve_remove_waiters(self, code: int, error: str | None = None):
        waiters, self.remove_waiters = self.remove_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result((code, error))


def new_state() -> dict:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}
