import json
import os


def test_bundle_has_applets_and_users(make_bundle):
    b = make_bundle(["echo", "hi"])
    root = os.path.join(b, "rootfs")
    assert os.readlink(os.path.join(root, "bin/sh")) == "/bin/busybox"
    assert os.access(os.path.join(root, "bin/busybox"), os.X_OK)
    assert "user:x:1000:1000" in open(os.path.join(root, "etc/passwd")).read()
    spec = json.load(open(os.path.join(b, "config.json")))
    assert spec["process"]["args"] == ["echo", "hi"]
    assert spec["root"]["path"] == "rootfs"
