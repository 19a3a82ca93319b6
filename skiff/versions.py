"""What ``version`` reports about skiff's parts (``skiff version`` and the
daemon's GET /version): skiff's own build (git commit and its time, when
running from a checkout) and, where dockerd lists containerd, runc and
docker-init, the monitor, the default runtime and the init the daemon uses,
each with the version it reports itself. Each is asked once per process."""

import os

_cache: dict = {}


def _run(argv, timeout=5.0) -> str:
    import subprocess
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout if r.returncode == 0 else ""


def build_info_sync() -> tuple[str, str]:
    """→ (short git commit, commit time as RFC 3339 in UTC) of the source
    skiff runs from, or ("", "") when it is not a git checkout."""
    if "build" in _cache:
        return _cache["build"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    info = ("", "")
    if os.path.exists(os.path.join(root, ".git")):
        out = _run(["git", "-C", root, "log", "-1", "--format=%H %ct"]).split()
        if len(out) == 2 and out[1].isdigit():
            import time
            t = time.gmtime(int(out[1]))
            info = (out[0][:7], time.strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00", t))
    _cache["build"] = info
    return info


async def build_info() -> tuple[str, str]:
    if "build" not in _cache:
        import asyncio
        await asyncio.to_thread(build_info_sync)
    return _cache["build"]


def _parse(out: str) -> tuple[str, str]:
    """``<name> version <v>`` and ``commit: <c>`` lines → (v, c)."""
    version = commit = ""
    for line in out.splitlines():
        low = line.lower()
        if not version and " version " in f" {low} ":
            rest = line[low.index("version") + 7:].split()
            version = rest[0] if rest else ""
            if " - git." in line:
                commit = line.rsplit("git.", 1)[1].strip()
        elif low.startswith("commit:"):
            commit = line.split(":", 1)[1].strip()
    return version, commit


def components_sync(config) -> list:
    """[{Name, Version, Details: {GitCommit}}] for conmon, the default runtime
    and the init binary (those that answer ``--version``)."""
    if "components" in _cache:
        return _cache["components"]
    from skiff.engine.monitor import CONMON
    out = []
    v, c = _parse(_run([CONMON, "--version"]))
    if v:
        out.append({"Name": "conmon", "Version": v, "Details": {"GitCommit": c}})
    try:
        rt_name = config.default_runtime
        rt_path = config.runtime_path(None)
    except Exception:
        rt_name = rt_path = ""
    if rt_path:
        v, c = _parse(_run([rt_path, "--version"]))
        if v:
            if not c and os.path.basename(rt_path) == "skiff-runtime":
                c = build_info_sync()[0]
            out.append({"Name": rt_name, "Version": v, "Details": {"GitCommit": c}})
    init = getattr(config, "init_path", None)
    if init:
        text = _run([init, "--version"])
        v, c = _parse(text)
        if v:
            name = "tini"
            if "_catatonit" in v or "catatonit" in text.lower():
                name, v = "catatonit", v.replace("_catatonit", "")
            out.append({"Name": name, "Version": v, "Details": {"GitCommit": c}})
    _cache["components"] = out
    return out


async def components(config) -> list:
    if "components" not in _cache:
        import asyncio
        await asyncio.to_thread(components_sync, config)
    return _cache["components"]
