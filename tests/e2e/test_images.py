"""docker images / inspect / history / tag / rmi / save / load / import /
pull / push with the real docker CLI against skiffd."""

import json

import pytest

from tests.e2e.h5b_helpers import NetnsRegistry, rootfs_tar


def _rmi_quiet(skiffd, *refs):
    skiffd.docker("rmi", "-f", *refs, timeout=60)


def test_images_inspect_history(skiffd):
    r = skiffd.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True)
    lines = dict(l.split() for l in r.stdout.splitlines())
    assert "busybox:latest" in lines
    short = lines["busybox:latest"]
    assert len(short) == 12
    info = json.loads(skiffd.docker("image", "inspect", "busybox", check=True).stdout)[0]
    assert info["Id"].startswith("sha256:") and info["Id"][7:19] == short
    assert "busybox:latest" in info["RepoTags"]
    assert info["Os"] == "linux" and info["RootFS"]["Type"] == "layers"
    assert info["RootFS"]["Layers"] and info["Config"]["Cmd"]
    h = skiffd.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.Size}}", "busybox",
                      check=True)
    rows = h.stdout.splitlines()
    assert rows and rows[0].split("|")[0] == info["Id"]
    r = skiffd.docker("image", "inspect", "no-such-image-h5b")
    assert r.returncode == 1 and "No such image: no-such-image-h5b" in r.stderr


def test_tag_and_rmi(skiffd):
    skiffd.docker("tag", "busybox", "h5b/tagged:v1", check=True)
    try:
        ids = skiffd.docker("images", "-q", "h5b/tagged", check=True).stdout.split()
        assert ids == skiffd.docker("images", "-q", "busybox:latest").stdout.split()
        r = skiffd.docker("run", "--rm", "--network", "none", "h5b/tagged:v1", "echo", "ok")
        assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
        r = skiffd.docker("rmi", "h5b/tagged:v1", check=True)
        assert r.stdout.strip() == "Untagged: h5b/tagged:v1"
        # the image is still there under its other name
        assert skiffd.docker("image", "inspect", "busybox").returncode == 0
        r = skiffd.docker("image", "inspect", "h5b/tagged:v1")
        assert r.returncode == 1 and "No such image" in r.stderr
        r = skiffd.docker("tag", "busybox", "Bad:Name:x")
        assert r.returncode != 0
    finally:
        _rmi_quiet(skiffd, "h5b/tagged:v1")


def test_import_save_load_roundtrip(skiffd, tmp_path):
    src = rootfs_tar(str(tmp_path / "rootfs.tar"), {"/marker": "imported-h5b\n"})
    with open(src, "rb") as f:
        r = skiffd.docker("import", "-c", "CMD [\"cat\", \"/marker\"]", "-m", "from h5b",
                          "-", "h5b/imported:1", input=f.read(), text=False)
    assert r.returncode == 0, r.stderr
    iid = r.stdout.decode().strip()
    assert iid.startswith("sha256:")
    try:
        r = skiffd.docker("run", "--rm", "--network", "none", "h5b/imported:1")
        assert r.returncode == 0 and r.stdout == "imported-h5b\n", r.stderr
        h = skiffd.docker("history", "--format", "{{.Comment}}", "h5b/imported:1", check=True)
        assert "from h5b" in h.stdout
        # a stopped container keeps the image: rmi is refused, then -f untags
        skiffd.docker("create", "--name", "h5b-user", "h5b/imported:1", check=True)
        r = skiffd.docker("rmi", "h5b/imported:1")
        assert r.returncode == 1 and "container" in r.stderr and "is using" in r.stderr
        skiffd.docker("rm", "h5b-user", check=True)

        out = tmp_path / "saved.tar"
        skiffd.docker("save", "-o", str(out), "h5b/imported:1", check=True)
        assert out.stat().st_size > 100_000
        r = skiffd.docker("rmi", "h5b/imported:1", check=True)
        assert "Deleted: " + iid in r.stdout
        assert skiffd.docker("image", "inspect", iid).returncode == 1
        r = skiffd.docker("load", "-i", str(out), check=True)
        assert "Loaded image: h5b/imported:1" in r.stdout
        info = json.loads(skiffd.docker("image", "inspect", "h5b/imported:1",
                                        check=True).stdout)[0]
        assert info["Id"] == iid
        r = skiffd.docker("run", "--rm", "--network", "none", "h5b/imported:1")
        assert r.stdout == "imported-h5b\n", r.stderr
        # save to stdout streams the same archive
        r = skiffd.docker("save", "h5b/imported:1", text=False, check=True)
        assert len(r.stdout) > 100_000 and b"manifest.json" in r.stdout
    finally:
        skiffd.docker("rm", "-f", "h5b-user")
        _rmi_quiet(skiffd, "h5b/imported:1")


def test_prune_dangling(skiffd, tmp_path):
    src = rootfs_tar(str(tmp_path / "r.tar"), {"/p": "x"})
    with open(src, "rb") as f:
        r = skiffd.docker("import", "-", input=f.read(), text=False)
    assert r.returncode == 0, r.stderr
    iid = r.stdout.decode().strip()
    r = skiffd.docker("images", "-q", "--no-trunc", "-f", "dangling=true", check=True)
    assert iid in r.stdout.split()
    r = skiffd.docker("image", "prune", "-f", check=True)
    assert iid in r.stdout
    assert skiffd.docker("image", "inspect", iid).returncode == 1
    assert skiffd.docker("image", "inspect", "busybox").returncode == 0


@pytest.fixture
def netns_registry(skiffd, tmp_path):
    reg = NetnsRegistry(skiffd, str(tmp_path / "registry")).start()
    yield reg
    reg.stop()


def test_push_pull_local_registry(skiffd, netns_registry):
    host = netns_registry.host
    ref = f"{host}/h5b/bb:1"
    skiffd.docker("tag", "busybox", ref, check=True)
    try:
        r = skiffd.docker("push", ref, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "digest: sha256:" in r.stdout
        skiffd.docker("rmi", ref, check=True)
        r = skiffd.docker("pull", ref, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"Status: " in r.stdout and "Digest: sha256:" in r.stdout
        r = skiffd.docker("run", "--rm", "--network", "none", ref, "echo", "pulled")
        assert r.stdout == "pulled\n", r.stderr
        # short names resolve to the daemon's default registry, never docker.io
        skiffd.docker("tag", "busybox", f"{host}/library/h5bshort:latest", check=True)
        skiffd.docker("push", f"{host}/library/h5bshort:latest", check=True, timeout=120)
        r = skiffd.docker("pull", "h5bshort", timeout=120)
        assert r.returncode == 0, r.stderr
        assert "h5bshort:latest" in r.stdout
        # -a: every tag of the repository
        skiffd.docker("tag", "busybox", f"{host}/h5b/bb:2", check=True)
        skiffd.docker("push", f"{host}/h5b/bb:2", check=True, timeout=120)
        skiffd.docker("rmi", ref, f"{host}/h5b/bb:2", check=True)
        r = skiffd.docker("pull", "-a", f"{host}/h5b/bb", timeout=120)
        assert r.returncode == 0, r.stderr
        for t in ("1", "2"):
            assert skiffd.docker("image", "inspect", f"{host}/h5b/bb:{t}").returncode == 0
        r = skiffd.docker("pull", f"{host}/h5b/missing:1", timeout=120)
        assert r.returncode != 0
        assert "not found" in r.stderr or "manifest unknown" in r.stderr
    finally:
        _rmi_quiet(skiffd, ref, f"{host}/h5b/bb:2", f"{host}/library/h5bshort:latest",
                   "h5bshort:latest")


def test_login_and_authenticated_push(skiffd, tmp_path):
    import shutil

    if not shutil.which("htpasswd"):
        pytest.skip("htpasswd (apache2-utils) not installed")
    reg = NetnsRegistry(skiffd, str(tmp_path / "authreg"))
    reg.reg.htpasswd = {"h5b": "s3cret"}
    reg.start()
    host = reg.host
    ref = f"{host}/h5b/private:1"
    try:
        r = skiffd.docker("login", "-u", "h5b", "--password-stdin", host, input="wrong\n")
        assert r.returncode == 1 and "401 Unauthorized" in r.stderr, r.stderr
        skiffd.docker("tag", "busybox", ref, check=True)
        r = skiffd.docker("push", ref, timeout=120)
        out = (r.stdout + r.stderr).lower()
        assert r.returncode != 0
        assert "no basic auth credentials" in out or "unauthorized" in out
        r = skiffd.docker("login", "-u", "h5b", "--password-stdin", host, input="s3cret\n")
        assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
        r = skiffd.docker("push", ref, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        skiffd.docker("rmi", ref, check=True)
        r = skiffd.docker("pull", ref, timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        skiffd.docker("logout", host)
        reg.stop()
        _rmi_quiet(skiffd, ref)


def test_export_then_import(skiffd, tmp_path):
    r = skiffd.docker("run", "--name", "h5b-exp", "--network", "none", "busybox", "sh", "-c",
                      "echo exported-h5b > /exported")
    assert r.returncode == 0, r.stderr
    try:
        out = tmp_path / "exp.tar"
        skiffd.docker("export", "-o", str(out), "h5b-exp", check=True)
        import tarfile
        with tarfile.open(out) as tf:
            names = set(tf.getnames())
            assert "exported" in names or "./exported" in names
            assert any(n.endswith("bin/busybox") for n in names)
        with open(out, "rb") as f:
            r = skiffd.docker("import", "-", "h5b/exported:1", input=f.read(), text=False)
        assert r.returncode == 0, r.stderr
        r = skiffd.docker("run", "--rm", "--network", "none", "h5b/exported:1", "cat",
                          "/exported")
        assert r.stdout == "exported-h5b\n", r.stderr
    finally:
        skiffd.docker("rm", "-f", "h5b-exp")
        _rmi_quiet(skiffd, "h5b/exported:1")


def test_push_after_pull_and_untag_of_same_image(skiffd, netns_registry, tmp_path):
    """Push a loaded (uncompressed) image, pull it back, let an unrelated rmi
    garbage-collect, push to another repository: the compressed blobs the
    recorded manifest names must still exist (or be made again)."""
    from skiff.testing import busybox
    from skiff.testing.images import make_image_archive

    host = netns_registry.host
    # loaded from a docker archive: uncompressed layers, so the push makes
    # compressed blobs of its own
    d = busybox.make_rootfs(str(tmp_path / "regr-rootfs"))
    with open(f"{d}/regr", "w") as f:
        f.write("1")
    make_image_archive(str(tmp_path / "regr.tar"), [d], repo_tags=("h5b/regr:src",))
    skiffd.docker("load", "-i", str(tmp_path / "regr.tar"), check=True)
    # b is another repository: the registry lacks the blobs, the push reads them
    a, b = f"{host}/h5b/regr:a", f"{host}/h5b/regr-elsewhere:b"
    try:
        skiffd.docker("tag", "h5b/regr:src", a, check=True)
        skiffd.docker("push", a, check=True, timeout=120)
        skiffd.docker("rmi", a, check=True)
        skiffd.docker("pull", a, check=True, timeout=120)
        skiffd.docker("rmi", a, check=True)
        # deleting any other image garbage-collects unreferenced blobs
        other = rootfs_tar(str(tmp_path / "o.tar"), {"/other": "2"})
        with open(other, "rb") as f:
            skiffd.docker("import", "-", "h5b/regr-other:1", input=f.read(), text=False,
                          check=True)
        skiffd.docker("rmi", "h5b/regr-other:1", check=True)
        # a registry that has nothing yet: every blob is read from the store
        netns_registry.stop()
        fresh = NetnsRegistry(skiffd, str(tmp_path / "fresh-registry")).start()
        try:
            skiffd.docker("tag", "h5b/regr:src", b, check=True)
            r = skiffd.docker("push", b, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
        finally:
            fresh.stop()
    finally:
        _rmi_quiet(skiffd, a, b, "h5b/regr:src", "h5b/regr-other:1")


def test_images_reference_lists_only_matching_tags(skiffd):
    for t in ("lsref/a:1", "lsref/a:2", "lsref/b:1"):
        skiffd.docker("tag", "busybox", t, check=True)
    try:
        fmt = ["--format", "{{.Repository}}:{{.Tag}}"]
        r = skiffd.docker("images", *fmt, "lsref/a", check=True)
        assert sorted(r.stdout.split()) == ["lsref/a:1", "lsref/a:2"]
        r = skiffd.docker("images", *fmt, "lsref/a:2", check=True)
        assert r.stdout.split() == ["lsref/a:2"]
        r = skiffd.docker("images", *fmt, "lsref/*", check=True)
        assert sorted(r.stdout.split()) == ["lsref/a:1", "lsref/a:2", "lsref/b:1"]
        # as Docker's path.Match: * does not cross "/"
        assert skiffd.docker("images", "-q", "lsref*", check=True).stdout.strip() == ""
        (img,) = skiffd.client.api.images(name="lsref/b")
        assert img["RepoTags"] == ["lsref/b:1"]
    finally:
        _rmi_quiet(skiffd, "lsref/a:1", "lsref/a:2", "lsref/b:1")


def test_rmi_of_last_tag_of_a_repository_drops_its_digests(skiffd, netns_registry):
    host = netns_registry.host
    ref = f"{host}/h5b/dropdigest:1"
    skiffd.docker("tag", "busybox", ref, check=True)
    try:
        skiffd.docker("push", ref, check=True, timeout=120)
        digests = json.loads(skiffd.docker("image", "inspect", "busybox").stdout)[0]["RepoDigests"]
        assert any(d.startswith(f"{host}/h5b/dropdigest@sha256:") for d in digests)
        r = skiffd.docker("rmi", ref, check=True)
        assert f"Untagged: {host}/h5b/dropdigest@sha256:" in r.stdout
        digests = json.loads(skiffd.docker("image", "inspect", "busybox").stdout)[0]["RepoDigests"]
        assert not any(d.startswith(f"{host}/h5b/dropdigest@") for d in digests)
        r = skiffd.docker("images", "--digests", "--format", "{{.Repository}}", check=True)
        assert f"{host}/h5b/dropdigest" not in r.stdout.split()
    finally:
        _rmi_quiet(skiffd, ref)


def test_import_from_url(skiffd, tmp_path):
    """`docker import http://...`: skiffd fetches the tar itself (a file
    server on 127.0.0.1 inside the daemon's own network namespace)."""
    import socket
    import subprocess
    import time

    serve = tmp_path / "www"
    serve.mkdir()
    rootfs_tar(str(serve / "rootfs.tar"), {"/marker": "from-url\n"})
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]  # free on the host; the daemon's netns is empty
    probe.close()
    srv = subprocess.Popen(["nsenter", f"--net=/run/netns/{skiffd.netns}", "--",
                            "/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                            str(port), "--directory", str(serve)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        check = f"import socket; socket.create_connection(('127.0.0.1', {port}), 0.5)"
        deadline = time.monotonic() + 20
        while skiffd.nsexec("/usr/bin/python3", "-c", check).returncode != 0:
            assert time.monotonic() < deadline, "file server did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        r = skiffd.docker("import", "-c", 'CMD ["cat", "/marker"]', f"{url}/rootfs.tar",
                          "h5b/from-url:1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == f"Downloading from {url}/rootfs.tar"
        assert r.stdout.splitlines()[-1].startswith("sha256:")
        try:
            r = skiffd.docker("run", "--rm", "--network", "none", "h5b/from-url:1")
            assert r.returncode == 0 and r.stdout == "from-url\n", r.stderr
        finally:
            _rmi_quiet(skiffd, "h5b/from-url:1")
        r = skiffd.docker("import", f"{url}/missing.tar", "h5b/from-url:2")
        assert r.returncode == 1
        assert f"failed to GET {url}/missing.tar with status 404" in r.stderr
        r = skiffd.docker("image", "inspect", "h5b/from-url:2")
        assert r.returncode == 1
    finally:
        srv.terminate()
        srv.wait()
