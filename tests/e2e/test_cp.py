"""docker cp in and out, also past hostile symlinks inside the container
(CVE-2018-15664 class): nothing may be read from or written to the host."""

import io
import os
import tarfile

import pytest


@pytest.fixture
def box(skiffd):
    r = skiffd.docker("run", "-d", "--network", "none", "--name", "h5b-cp", "busybox",
                      "sleep", "300")
    assert r.returncode == 0, r.stderr
    yield "h5b-cp"
    skiffd.docker("rm", "-f", "h5b-cp")


def test_cp_in_and_out(skiffd, box, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("copied in\n")
    os.chmod(src, 0o640)
    skiffd.docker("cp", str(src), f"{box}:/tmp/in.txt", check=True)
    r = skiffd.docker("exec", box, "stat", "-c", "%a %s", "/tmp/in.txt", check=True)
    assert r.stdout.split() == ["640", "10"]
    assert skiffd.docker("exec", box, "cat", "/tmp/in.txt").stdout == "copied in\n"
    # a directory, out again
    skiffd.docker("exec", box, "sh", "-c",
                  "mkdir -p /srv/d/sub && echo a > /srv/d/a && echo b > /srv/d/sub/b "
                  "&& ln -s a /srv/d/link", check=True)
    dst = tmp_path / "out"
    skiffd.docker("cp", f"{box}:/srv/d", str(dst), check=True)
    assert (dst / "a").read_text() == "a\n" and (dst / "sub/b").read_text() == "b\n"
    assert os.readlink(dst / "link") == "a"
    # "dir/." copies the directory's content into an existing directory
    dst2 = tmp_path / "out2"
    dst2.mkdir()
    skiffd.docker("cp", f"{box}:/srv/d/.", str(dst2), check=True)
    assert sorted(os.listdir(dst2)) == ["a", "link", "sub"]
    # to stdout as a tar
    r = skiffd.docker("cp", f"{box}:/srv/d/a", "-", text=False, check=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert tf.getnames() == ["a"]
        assert tf.extractfile("a").read() == b"a\n"
    # from stdin as a tar
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("from-stdin.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"xyz"))
    skiffd.docker("cp", "-", f"{box}:/tmp", input=buf.getvalue(), text=False, check=True)
    assert skiffd.docker("exec", box, "cat", "/tmp/from-stdin.txt").stdout == "xyz"
    # -L follows a link (the CLI asks for the stat's linkTarget)
    skiffd.docker("exec", box, "ln", "-s", "/srv/d/a", "/alink", check=True)
    skiffd.docker("cp", "-L", f"{box}:/alink", str(tmp_path / "followed"), check=True)
    assert (tmp_path / "followed").read_text() == "a\n"
    skiffd.docker("cp", f"{box}:/alink", str(tmp_path / "notfollowed"), check=True)
    assert os.readlink(tmp_path / "notfollowed") == "/srv/d/a"
    r = skiffd.docker("cp", f"{box}:/no/such/file", str(tmp_path))
    assert r.returncode == 1 and "Could not find the file /no/such/file" in r.stderr


def test_cp_hostile_symlinks_stay_inside(skiffd, box, tmp_path):
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret\n")
    skiffd.docker("exec", box, "sh", "-c",
                  f"ln -s / /evil && ln -s {host_dir} /escape && "
                  "ln -s ../../../../../../.. /up && echo inside > /etc/h5b-marker",
                  check=True)
    # reading through a link to / reads the container's files
    r = skiffd.docker("cp", f"{box}:/evil/etc/h5b-marker", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m").read_text() == "inside\n"
    # a link naming a host path: that path inside the container does not exist
    for path in (f"/escape/secret", f"/up{host_dir}/secret"):
        r = skiffd.docker("cp", f"{box}:{path}", str(tmp_path / "leak"))
        assert r.returncode != 0
        assert not (tmp_path / "leak").exists()
    # writing through the links must land inside the container or fail
    payload = tmp_path / "payload"
    payload.write_text("pwned\n")
    skiffd.docker("cp", str(payload), f"{box}:/evil/tmp/")
    skiffd.docker("cp", str(payload), f"{box}:/escape/")
    skiffd.docker("cp", str(payload), f"{box}:/up{host_dir}/")
    assert sorted(os.listdir(host_dir)) == ["secret"]
    assert (host_dir / "secret").read_text() == "host secret\n"
    assert not os.path.exists("/tmp/payload") or \
        open("/tmp/payload").read() != "pwned\n"
    assert skiffd.docker("exec", box, "cat", "/tmp/payload").stdout == "pwned\n"


def test_cp_stopped_container(skiffd, tmp_path):
    r = skiffd.docker("create", "--name", "h5b-cp-stopped", "--network", "none", "busybox",
                      "cat", "/data/in.txt")
    assert r.returncode == 0, r.stderr
    try:
        src = tmp_path / "in.txt"
        src.write_text("before start\n")
        skiffd.docker("exec", "h5b-cp-stopped", "true")  # not running: refused
        r = skiffd.docker("cp", str(src), "h5b-cp-stopped:/data/in.txt")
        assert r.returncode != 0  # /data does not exist yet
        r = skiffd.docker("cp", str(tmp_path), "h5b-cp-stopped:/data")
        assert r.returncode == 0, r.stderr
        r = skiffd.docker("start", "-a", "h5b-cp-stopped")
        assert r.stdout == "before start\n", r.stderr
        out = tmp_path / "back.txt"
        skiffd.docker("cp", "h5b-cp-stopped:/data/in.txt", str(out), check=True)
        assert out.read_text() == "before start\n"
    finally:
        skiffd.docker("rm", "-f", "h5b-cp-stopped")


def test_cp_into_volume_of_running_container(skiffd, tmp_path):
    r = skiffd.docker("run", "-d", "--network", "none", "--name", "h5b-cp-vol", "-v",
                      "h5b-cpvol:/vol", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        src = tmp_path / "v.txt"
        src.write_text("into the volume\n")
        skiffd.docker("cp", str(src), "h5b-cp-vol:/vol/v.txt", check=True)
        mp = os.path.join(skiffd.data_root, "volumes/h5b-cpvol/_data/v.txt")
        with open(mp) as f:
            assert f.read() == "into the volume\n"
    finally:
        skiffd.docker("rm", "-f", "h5b-cp-vol")
        skiffd.docker("volume", "rm", "-f", "h5b-cpvol")


def test_cp_symlink_swap_race(skiffd, box, tmp_path):
    """CVE-2018-15664: a component swapped between a directory and a link to a
    host path while cp runs must never expose the host file."""
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "secret").write_text("HOST\n")
    skiffd.docker("exec", box, "sh", "-c",
                  f"mkdir -p /w/real && echo CONTAINER > /w/real/secret && "
                  f"ln -s {host_dir} /w/evil-link", check=True)
    skiffd.docker("exec", "-d", box, "sh", "-c",
                  "cd /w; while true; do mv -f real x 2>/dev/null; mv -f x real 2>/dev/null;"
                  " ln -sfn evil-link x; rm -f x; done", check=True)
    seen = set()
    for i in range(15):
        out = tmp_path / f"o{i}"
        r = skiffd.docker("cp", f"{box}:/w/x/secret", str(out))
        if r.returncode == 0:
            seen.add(out.read_text())
        w = tmp_path / "w.txt"
        w.write_text("PWN\n")
        skiffd.docker("cp", str(w), f"{box}:/w/x/")
    assert "HOST\n" not in seen
    assert sorted(os.listdir(host_dir)) == ["secret"]
    assert (host_dir / "secret").read_text() == "HOST\n"
