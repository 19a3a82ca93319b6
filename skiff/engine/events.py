"""Docker-style events: a bounded history plus live subscribers."""

import asyncio
import collections
import time


class Events:
    def __init__(self, keep: int = 1000):
        self.history = collections.deque(maxlen=keep)
        self.subscribers: set[asyncio.Queue] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict | None = None):
        now = time.time_ns()
        ev = {
            "Type": type_, "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local", "time": now // 1_000_000_000, "timeNano": now,
        }
        if type_ == "container":
            ev["status"] = action
            ev["id"] = actor_id
            ev["from"] = ev["Actor"]["Attributes"].get("image", "")
        self.history.append(ev)
        for q in list(self.subscribers):
            q.put_nowait(ev)
        return ev

    def subscribe(self) -> asyncio.Queue:
        q = asyncio.Queue()
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q):
        self.subscribers.discard(q)


def match(ev: dict, filters: dict) -> bool:
    """Docker's event filters: type, event/action, container, image, label, network, volume."""
    if not filters:
        return True
    attrs = ev["Actor"]["Attributes"]
    for key, values in filters.items():
        values = list(values)
        if key == "type":
            if ev["Type"] not in values:
                return False
        elif key in ("event", "action"):
            act = ev["Action"]
            if not any(act == v or act.split(":")[0] == v for v in values):
                return False
        elif key in ("container", "network", "volume", "plugin", "daemon"):
            if ev["Type"] != key:
                return False
            aid = ev["Actor"]["ID"]
            if not any(aid.startswith(v) or attrs.get("name") == v for v in values):
                return False
        elif key == "image":
            img = attrs.get("image", ev["Actor"]["ID"] if ev["Type"] == "image" else "")
            if not any(img == v or img.split(":")[0] == v or img.startswith(v) for v in values):
                return False
        elif key == "label":
            ok = False
            for v in values:
                k, _, val = v.partition("=")
                if k in attrs and (not val or attrs[k] == val):
                    ok = True
            if not ok:
                return False
    return True
