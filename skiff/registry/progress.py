"""Docker's JSON progress messages, as dockerd streams them for pull/push.

Each message is a dict: ``status``, ``id`` (12 hex of a layer digest),
``progressDetail`` (``{}`` or ``{"current": n, "total": t}``) and
``progress`` (the bar Docker pre-renders: ``[==>   ] 1.2MB/3.4MB 2s``).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from skiff.humanize import human_size, json_progress  # noqa: F401 (human_size: API)

ProgressFn = Callable[[dict], None]


def render_bar(current: int, total: int, start: float | None = None,
               now: float | None = None, width: int = 200) -> str:
    """jsonmessage.JSONProgress.String() as the daemon renders it (no
    terminal there, so width 200: the bar box is always drawn)."""
    return json_progress(current, total, start or 0, now=now, width=width)


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class Progress:
    """Thread-safe emitter of Docker progress messages with per-id
    throttling of byte updates (about 10 a second, always the last one)."""

    INTERVAL = 0.1

    def __init__(self, fn: ProgressFn | None):
        self.fn = fn
        self._lock = threading.Lock()
        self._last: dict[tuple, float] = {}
        self._start: dict[tuple, float] = {}

    def _emit(self, msg: dict) -> None:
        if self.fn is None:
            return
        with self._lock:
            self.fn(msg)

    def message(self, status: str, id: str | None = None) -> None:
        msg = {"status": status}
        if id is not None:
            msg["id"] = id
        self._emit(msg)

    def update(self, id: str, status: str) -> None:
        """A per-layer status line without byte counts."""
        self._emit({"status": status, "progressDetail": {}, "id": id})

    def bytes(self, id: str, status: str, current: int, total: int, force: bool = False) -> None:
        key = (id, status)
        now = time.time()
        start = self._start.setdefault(key, now)
        if not force and current < total:
            last = self._last.get(key, 0.0)
            if now - last < self.INTERVAL:
                return
        self._last[key] = now
        detail = {"current": current, "total": total} if total > 0 else {"current": current}
        self._emit({"status": status, "progressDetail": detail,
                    "progress": render_bar(current, total, start, now), "id": id})

    def aux(self, aux: dict) -> None:
        self._emit({"progressDetail": {}, "aux": aux})
