"""skiff.runtime.warmup: which commands start the cgroup-lock warm-up."""

import pytest

from skiff.runtime import warmup


@pytest.mark.parametrize("argv,cmd", [
    (["skiff-runtime", "create", "--bundle", "b", "id"], "create"),
    (["skiff-runtime", "--root", "/run/x", "--log", "l", "--log-format", "json", "exec", "id",
      "true"], "exec"),
    (["skiff-runtime", "--root=/run/x", "--debug", "run", "id"], "run"),
    (["skiff-runtime", "--systemd-cgroup", "start", "id"], "start"),
    (["skiff-runtime", "--root", "create"], None),   # "create" is --root's value
    (["skiff-runtime", "--version"], None),
])
def test_command_skips_global_options_and_their_values(argv, cmd):
    assert warmup.command(argv) == cmd
