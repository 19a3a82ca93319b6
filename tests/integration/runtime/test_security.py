"""The runtime must not hand the container a way out (runc CVE-2019-5736 and
CVE-2024-21626 classes), on skiff-runtime, runc and crun alike.

The attack is played from inside the container: while the runtime's own
processes are visible in the container's pid namespace (the init waiting
for `start`, and the stage that `exec` runs inside), a container process
tries to open each visible process's /proc/<pid>/exe and its mapped files
(the interpreter and its libraries, for skiff-runtime) for writing. Opening
with O_APPEND and writing nothing changes no file even if it succeeded."""

import os
import time

from tests.integration.runtime.conftest import edit_config

ATTACK = r"""
me=$$
end=$(( $(date +%s) + {secs} ))
while [ $(date +%s) -lt $end ]; do
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$me" ] && continue
    exe=$(readlink $p/exe 2>/dev/null) && echo "SEEN $pid $exe" >> /out/log
    if ( : >> $p/exe ) 2>/dev/null; then echo "WROTE $p/exe $exe" >> /out/log; fi
    for f in $p/map_files/*; do
      [ -e "$f" ] || continue
      if ( : >> "$f" ) 2>/dev/null; then echo "WROTE $f" >> /out/log; fi
    done
    # a directory fd (CVE-2024-21626: host /sys/fs/cgroup leaked into runc init)
    if ls $p/fd/ >/dev/null 2>&1; then
      for f in $p/fd/*; do
        [ -d "$f" ] && echo "HOSTDIR $f $(readlink $f)" >> /out/log
      done
    fi
  done
done
echo done >> /out/log
"""


def _bundle_with_out(make_bundle, tmp_path, args, caps=None):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    bundle = make_bundle(args)

    def f(s):
        s["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                            "options": ["rbind", "rw"]})
        if caps:
            s["process"]["capabilities"] = {k: list(caps) for k in
                                            ("bounding", "effective", "permitted")}
    edit_config(bundle, f)
    return bundle, out


def _fd_list(text):
    return sorted(text.split())


def test_only_stdio_fds_reach_the_container(runtime, make_bundle):
    p = runtime.run(make_bundle(["sh", "-c", "ls /proc/$$/fd; true"]))
    assert p.returncode == 0, p.stderr
    assert _fd_list(p.stdout) == ["0", "1", "2"]


def test_only_stdio_fds_reach_an_exec(runtime, make_bundle):
    cid = runtime.create(make_bundle(["sleep", "30"]))
    runtime.start(cid)
    p = runtime.exec(cid, "sh", "-c", "ls /proc/$$/fd; pwd")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[-1] == "/"
    assert _fd_list(" ".join(lines[:-1])) == ["0", "1", "2"]
    runtime.delete(cid, force=True)


def test_preserve_fds(runtime, make_bundle, tmp_path):
    import shlex
    import subprocess
    bundle = make_bundle(["sh", "-c", "ls /proc/$$/fd; echo via-fd3 >&3; true"])
    argv = runtime.argv("run", "--preserve-fds", "1", "--bundle", bundle, runtime.new_id())
    # fd 3 of the runtime is a file; the shell sets it up (never touch our own fd 3)
    script = f"exec 3>{shlex.quote(str(tmp_path / 'extra'))}; exec {shlex.join(argv)}"
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, p.stderr
    assert _fd_list(p.stdout) == ["0", "1", "2", "3"]
    assert (tmp_path / "extra").read_text() == "via-fd3\n"


def test_cwd_through_leaked_fd_is_refused(runtime, make_bundle):
    # CVE-2024-21626: process.cwd = /proc/self/fd/N pointing at a host directory
    bundle = make_bundle(["sh", "-c", "pwd; ls"])
    for n in range(3, 10):
        edit_config(bundle, lambda s: s["process"].update(cwd=f"/proc/self/fd/{n}"))
        p = runtime.run(bundle)
        assert p.returncode != 0 or "bin" not in p.stdout.split(), (n, p.stdout)


def _attack_during(runtime, make_bundle, tmp_path, caps=None):
    secs = 3
    bundle, out = _bundle_with_out(make_bundle, tmp_path, ["sleep", "60"], caps)
    # the victim container: created, its init waits for `start`
    cid = runtime.create(bundle)
    # the attacker runs inside it (exec into the created container)
    atk = runtime.exec(cid, "sh", "-c", ATTACK.replace("{secs}", str(secs)), opts=("-d",))
    assert atk.returncode == 0, atk.stderr
    # meanwhile the runtime runs more execs inside the container
    deadline = time.monotonic() + secs - 1
    n = 0
    while time.monotonic() < deadline:
        runtime.exec(cid, "true", check=False)
        n += 1
    time.sleep(1.5)
    runtime.start(cid)
    runtime.delete(cid, force=True)
    log = (out / "log").read_text() if (out / "log").exists() else ""
    return log, n


def test_runtime_executable_not_writable_from_inside(runtime, make_bundle, tmp_path):
    log, n = _attack_during(runtime, make_bundle, tmp_path)
    assert n > 0
    assert "done" in log, "the attacker did not run to its end"
    bad = [ln for ln in log.splitlines() if ln.startswith(("WROTE", "HOSTDIR"))]
    assert not bad, bad


def test_runtime_executable_not_writable_with_ptrace_cap(runtime, make_bundle, tmp_path):
    """Even with CAP_SYS_PTRACE (which passes the non-dumpable check), what
    /proc/<pid>/exe leads to cannot be written."""
    caps = ["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_AUDIT_WRITE"]
    log, n = _attack_during(runtime, make_bundle, tmp_path, caps)
    assert "done" in log
    bad = [ln for ln in log.splitlines() if ln.startswith(("WROTE", "HOSTDIR"))]
    assert not bad, bad


def test_callers_fds_do_not_reach_the_waiting_init(runtime, make_bundle, tmp_path):
    """An fd the caller left open (not passed with --preserve-fds) must not
    be held by the container's init, nor reach the container's process."""
    import shlex
    import subprocess
    marker = tmp_path / "marker"
    marker.write_text("secret")
    bundle = make_bundle(["sh", "-c", "ls /proc/$$/fd; true"])
    cid = runtime.new_id()
    argv = runtime.argv("create", "--bundle", bundle, cid)
    script = f"exec 9<{shlex.quote(str(marker))}; exec {shlex.join(argv)}"
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run(["sh", "-c", script], stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0
    pid = runtime.state(cid)["pid"]
    held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    if runtime.name != "crun":
        # crun 1.8 (observed here) keeps the caller's fds in its waiting init
        # and closes them only before execve; runc and skiff-runtime never
        # let them in (CloseExecFrom(3) before the init starts)
        assert str(marker) not in held
    runtime.start(cid)
    runtime.wait_exit(cid)
    runtime.delete(cid)
    assert _fd_list((tmp_path / "out").read_text()) == ["0", "1", "2"]
