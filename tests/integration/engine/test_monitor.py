"""The engine's monitor layer against real conmon + runc: pid reporting,
attach socket framing, stdin, exit files, k8s-file logs read back with
Docker's semantics, runtime error reporting."""

import asyncio
import json
import os
import shutil
import socket

import pytest

from skiff import errors
from skiff.engine import logs
from skiff.engine.monitor import Monitor, attach_socket

pytestmark = pytest.mark.skipif(not shutil.which("conmon") or not shutil.which("runc"),
                                reason="needs conmon and runc")


RUNC = shutil.which("runc") or "/usr/sbin/runc"


def _spec_fixup(bundle, cid):
    p = os.path.join(bundle, "config.json")
    with open(p) as f:
        spec = json.load(f)
    spec["linux"]["cgroupsPath"] = f"/skiff-test/{cid}"
    with open(p, "w") as f:
        json.dump(spec, f)


def _rm_cgroups():
    for ctrl in [""] + os.listdir("/sys/fs/cgroup"):
        p = os.path.join("/sys/fs/cgroup", ctrl, "skiff-test")
        if os.path.isdir(p):
            for sub in os.listdir(p):
                if os.path.isdir(os.path.join(p, sub)):
                    try:
                        os.rmdir(os.path.join(p, sub))
                    except OSError:
                        pass
            try:
                os.rmdir(p)
            except OSError:
                pass


@pytest.fixture
def mon(tmp_path):
    m = Monitor(str(tmp_path / "exec"), str(tmp_path / "exec" / "runtime"))
    made = []
    yield m, made
    async def cleanup():
        for cid in made:
            await m.kill(RUNC, cid, 9)
            await m.delete(RUNC, cid)
    asyncio.run(cleanup())
    _rm_cgroups()


def test_run_attach_exit_and_logs(mon, make_bundle, tmp_path):
    m, made = mon
    cid = "mon1"
    bundle = make_bundle(["sh", "-c", "echo out; echo err >&2; read x; echo got:$x; exit 3"])
    _spec_fixup(bundle, cid)
    log = str(tmp_path / "ctr.log")

    async def go():
        made.append(cid)
        pid = await m.create(cid, name=cid, bundle=bundle, runtime=RUNC, log_path=log,
                             terminal=False, stdin=True)
        assert pid > 0 and os.path.exists(f"/proc/{pid}")
        s = await attach_socket(bundle)
        exited = asyncio.get_running_loop().create_future()
        assert m.watch(cid, lambda: exited.set_result(True))
        await m.start(RUNC, cid)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(s, b"hello\n")
        got = {2: b"", 3: b""}
        while True:
            pkt = await loop.sock_recv(s, 8193)
            if not pkt:
                break
            got[pkt[0]] += pkt[1:]
        s.close()
        await asyncio.wait_for(exited, 10)
        return got
    got = asyncio.run(go())
    assert got[2] == b"out\ngot:hello\n" and got[3] == b"err\n"
    assert m.read_exit(cid) == 3
    entries = asyncio.run(_collect(log))
    # order across the two pipes is the kernel's; within a stream it is kept
    assert [e.data for e in entries if e.stream == "stdout"] == [b"out\n", b"got:hello\n"]
    assert [e.data for e in entries if e.stream == "stderr"] == [b"err\n"]
    assert len(logs.select(entries, tail=1)) == 1 and entries[-1] == logs.select(entries, tail=1)[0]


async def _collect(path):
    return [e async for e in logs.stream_logs(path, follow=False)]


def test_create_failure_reports_runtime_error(mon, make_bundle, tmp_path):
    m, made = mon
    cid = "mon2"
    bundle = make_bundle(["/no/such/binary"])
    _spec_fixup(bundle, cid)

    async def go():
        made.append(cid)
        await m.create(cid, name=cid, bundle=bundle, runtime=RUNC,
                       log_path=str(tmp_path / "l"), terminal=False, stdin=False)
    with pytest.raises(errors.SkiffError) as ei:
        asyncio.run(go())
    assert "no such file or directory" in ei.value.message.lower()


def test_log_parsing_partial_lines_and_timestamps(tmp_path):
    p = tmp_path / "k8s.log"
    p.write_bytes(b"2024-01-01T00:00:00.000000001+00:00 stdout P par\n"
                  b"2024-01-01T00:00:00.000000002+00:00 stdout F tial\n"
                  b"2024-01-01T00:00:01.5+00:00 stderr F e\n"
                  b"garbage line\n")
    entries = asyncio.run(_collect(str(p)))
    assert [(e.stream, e.data) for e in entries] == [("stdout", b"partial\n"), ("stderr", b"e\n")]
    assert logs.format_ts(entries[0].ns) == "2024-01-01T00:00:00.000000001Z"
    since = logs.parse_since("1704067201")
    assert [e.data for e in logs.select(entries, since=since)] == [b"e\n"]
    assert logs.parse_ts("2024-01-01T01:00:00+01:00") == logs.parse_ts("2024-01-01T00:00:00Z")
