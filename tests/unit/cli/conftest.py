import os
import shutil
import subprocess
import sys

import pytest

from tests.unit.cli.recorder import Recorder

DOCKER = shutil.which("docker")
SKIFF = [sys.executable, "-c", "import sys; from skiff.cli.main import main; sys.exit(main())"]

needs_docker = pytest.mark.skipif(DOCKER is None, reason="docker CLI not installed")


@pytest.fixture
def recorder(tmp_path):
    made = []

    def make(routes=None, name="rec", api_version="1.51"):
        r = Recorder(str(tmp_path / f"{name}.sock"), routes, api_version)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def run_cli(tool, host, args, stdin=None, env=None):
    cmd = ([DOCKER] if tool == "docker" else SKIFF) + ["-H", host] + list(args)
    e = dict(os.environ)
    e.pop("DOCKER_HOST", None)
    e["SKIFF_NO_AUTOSTART"] = "1"
    e["HOME"] = e.get("HOME", "/root")
    e["DOCKER_CONFIG"] = "/nonexistent-docker-config"
    if env:
        e.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, env=e, timeout=60)


@pytest.fixture
def both(recorder):
    """Run the same command through docker and skiff, each against its own
    recorder with the same routes: returns {tool: (CompletedProcess, Recorder)}."""
    def go(args, routes, **kw):
        out = {}
        for tool in ("docker", "skiff"):
            r = recorder(routes, name=tool)
            p = run_cli(tool, r.host, args, **kw)
            out[tool] = (p, r)
        return out
    return go
