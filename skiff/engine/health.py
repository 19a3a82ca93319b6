"""Healthchecks run by the daemon (Docker's semantics: interval, timeout,
retries, start period; State.Health with a log of the last 5 probes)."""

import asyncio
import time

from skiff.engine.container import now_ts

NS = 1_000_000_000
DEFAULT_INTERVAL = 30 * NS
DEFAULT_TIMEOUT = 30 * NS
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


async def probe(engine, c, test, timeout_s) -> tuple[int, str]:
    from skiff.engine import exec as _exec
    if test[0] == "CMD-SHELL":
        cmd = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        cmd = list(test[1:])
    else:
        cmd = list(test)
    ex = _exec.create(engine, c.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
    buf = bytearray()

    class Conn:
        async def send(self, stream, data):
            if len(buf) < MAX_OUTPUT:
                buf.extend(data[:MAX_OUTPUT - len(buf)])

        async def read(self):
            await asyncio.Event().wait()

        async def closed(self):
            await asyncio.Event().wait()
    try:
        await asyncio.wait_for(_exec.start(engine, ex, Conn(), detach=False), timeout_s)
        code = ex.exit_code if ex.exit_code is not None else -1
    except asyncio.TimeoutError:
        if ex.proc and ex.proc.returncode is None:
            ex.proc.kill()
        return -1, f"Health check exceeded timeout ({timeout_s}s)"
    finally:
        engine.execs.pop(ex.id, None)
        ids = c.rec.get("ExecIDs") or []
        if ex.id in ids:
            ids.remove(ex.id)
    return code, buf.decode(errors="replace")


async def run(engine, c):
    hc = c.config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    interval = (hc.get("Interval") or DEFAULT_INTERVAL) / NS
    timeout = (hc.get("Timeout") or DEFAULT_TIMEOUT) / NS
    retries = hc.get("Retries") or DEFAULT_RETRIES
    start_period = (hc.get("StartPeriod") or 0) / NS
    start_interval = (hc.get("StartInterval") or 0) / NS or interval
    started = time.time()
    health = c.state.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
    while c.running:
        in_start = time.time() - started < start_period
        await asyncio.sleep(start_interval if in_start and health["Status"] == "starting" else interval)
        if not c.running:
            return
        t0 = now_ts()
        code, out = await probe(engine, c, test, timeout)
        entry = {"Start": t0, "End": now_ts(), "ExitCode": code, "Output": out}
        health["Log"] = (health.get("Log") or [])[-(MAX_LOG - 1):] + [entry]
        old = health["Status"]
        if code == 0:
            health["FailingStreak"] = 0
            health["Status"] = "healthy"
        else:
            in_start = time.time() - started < start_period
            if not in_start or old != "starting":
                health["FailingStreak"] = health.get("FailingStreak", 0) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = "unhealthy"
        engine.save(c)
        if health["Status"] != old:
            engine.emit(c, "health_status: " + health["Status"])
