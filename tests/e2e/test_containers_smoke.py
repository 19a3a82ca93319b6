"""docker run end to end against skiffd, with the real docker CLI."""


def test_run_rm_echo(skiffd):
    r = skiffd.docker("run", "--rm", "busybox", "echo", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""


def test_run_exit_code_and_streams(skiffd):
    r = skiffd.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
