"""A process that cannot be executed: where the failure surfaces and with
which exit code, on runc, crun and skiff-runtime alike.

An engine maps these to Docker's 126 ("permission denied") / 127
("executable file not found in $PATH"): for the container's entrypoint from
the failed ``create`` (runc's init resolves and checks the executable before
it reports create done), for ``exec`` from exit status 255 plus the
error-level entry in ``--log``.
"""

import json
import subprocess
import tempfile

import pytest

# (argv[0], runc's words after "exec: ", crun's words (lower case))
BAD = [
    ("nosuchcmd", '"nosuchcmd": executable file not found in $PATH', "not found"),
    ("/nosuch/cmd", '"/nosuch/cmd": stat /nosuch/cmd: no such file or directory', "not found"),
    ("/etc", '"/etc": permission denied', "operation not permitted"),
    ("/etc/passwd", '"/etc/passwd": permission denied', "permission denied"),
]


def _create_raw(runtime, bundle, cid, *global_opts):
    """create, with the runtime's stderr captured in a file (never a pipe)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.run([*runtime.base, "--root", runtime.root, *global_opts,
                            "create", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           timeout=60)
        err.seek(0)
        return p.returncode, err.read()


def _log_errors(path):
    entries = []
    with open(path) as f:
        for line in f:
            if line.strip():
                entries.append(json.loads(line))
    return [e["msg"] for e in entries if e.get("level") in ("error", "fatal")]


@pytest.mark.parametrize("argv0,words,crun_words", BAD, ids=[b[0] for b in BAD])
def test_create_fails_for_a_process_that_cannot_be_executed(runtime, make_bundle, tmp_path,
                                                            argv0, words, crun_words):
    bundle = make_bundle([argv0])
    log = tmp_path / "create.log"
    cid = runtime.new_id()
    code, err = _create_raw(runtime, bundle, cid, "--log", str(log), "--log-format", "json")
    # the failure is create's (not start's), and create leaves nothing behind
    assert code == 1, err
    assert cid not in runtime.list_ids()
    assert runtime.cmd("state", cid).returncode != 0
    msgs = _log_errors(log)
    assert msgs, "no error-level entry in --log"
    if runtime.name == "crun":
        assert crun_words in msgs[-1].lower()
    else:
        assert msgs[-1] == f"runc create failed: unable to start container process: exec: {words}"


def test_create_ok_then_start_runs_an_executable_by_path(runtime, make_bundle):
    # the check is no false alarm: an absolute path and a $PATH lookup both pass
    assert runtime.run(make_bundle(["/bin/sh", "-c", "exit 4"])).returncode == 4
    assert runtime.run(make_bundle(["sh", "-c", "exit 5"])).returncode == 5


@pytest.mark.parametrize("argv0,words,crun_words", BAD, ids=[b[0] for b in BAD])
def test_exec_of_a_process_that_cannot_be_executed_exits_255(runtime, make_bundle, tmp_path,
                                                             argv0, words, crun_words):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    runtime.start(cid)
    log = tmp_path / "exec.log"
    p = runtime.cmd("--log", str(log), "--log-format", "json", "exec", cid, argv0)
    assert p.returncode == 255, p.stderr
    msgs = _log_errors(log)
    assert msgs, "no error-level entry in --log"
    if runtime.name == "crun":
        assert crun_words in msgs[-1].lower()
    else:
        assert msgs[-1] == f"exec failed: unable to start container process: exec: {words}"
    # the container goes on; a good exec still works afterwards
    assert runtime.state(cid)["status"] == "running"
    assert runtime.exec(cid, "sh", "-c", "exit 6").returncode == 6
    runtime.kill(cid, "KILL")
    runtime.wait_exit(cid)
    runtime.delete(cid)


def test_exec_in_a_missing_container_exits_255(runtime):
    p = runtime.cmd("exec", "nosuchcontainer", "true")
    if runtime.name == "crun":
        # crun checks the container before its exec proper: exit 1
        assert p.returncode == 1
    else:
        assert p.returncode == 255
        assert "exec failed: container does not exist" in p.stderr


def test_exec_with_a_missing_cwd_exits_255(runtime, make_bundle, tmp_path):
    cid = runtime.create(make_bundle(["sleep", "100"]))
    runtime.start(cid)
    log = tmp_path / "exec.log"
    p = runtime.cmd("--log", str(log), "--log-format", "json", "exec", "--cwd", "/nosuchdir",
                    cid, "true")
    assert p.returncode == 255, p.stderr
    msgs = _log_errors(log)
    assert msgs, "no error-level entry in --log"
    if runtime.name == "crun":
        assert "/nosuchdir" in msgs[-1]
    else:
        assert msgs[-1] == ('exec failed: unable to start container process: chdir to cwd '
                            '("/nosuchdir") set in config.json failed: no such file or directory')
    runtime.delete(cid, force=True)
