"""docker network create/ls/inspect/connect/disconnect/rm/prune through the
Engine API routes (networking itself is skiff.network's)."""

import json


def _net(skiffd, *args, **kw):
    return skiffd.docker("network", *args, **kw)


def test_network_create_inspect_rm(skiffd):
    r = _net(skiffd, "create", "--subnet", "10.231.7.0/24", "--gateway", "10.231.7.1",
             "--label", "owner=h5b", "h5b-net")
    assert r.returncode == 0, r.stderr
    nid = r.stdout.strip()
    assert len(nid) == 64
    try:
        ls = _net(skiffd, "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout
        assert "h5b-net bridge local" in ls.splitlines()
        assert _net(skiffd, "ls", "-q", "-f", "label=owner=h5b").stdout.split() == [nid[:12]]
        info = json.loads(_net(skiffd, "inspect", "h5b-net").stdout)[0]
        assert info["Id"] == nid and info["Name"] == "h5b-net"
        assert info["Driver"] == "bridge" and info["Scope"] == "local"
        assert info["IPAM"]["Config"][0]["Subnet"] == "10.231.7.0/24"
        assert info["IPAM"]["Config"][0]["Gateway"] == "10.231.7.1"
        assert info["Labels"] == {"owner": "h5b"}
        r = _net(skiffd, "create", "h5b-net")
        assert r.returncode == 1 and "already exists" in r.stderr
    finally:
        _net(skiffd, "rm", "h5b-net")
    r = _net(skiffd, "inspect", "h5b-net")
    assert r.returncode == 1 and "not found" in r.stderr
    r = _net(skiffd, "rm", "bridge")
    assert r.returncode == 1 and "pre-defined" in r.stderr


def test_network_connect_disconnect(skiffd):
    _net(skiffd, "create", "--subnet", "10.231.8.0/24", "h5b-net2", check=True)
    try:
        r = skiffd.docker("run", "-d", "--name", "h5b-netc", "busybox", "sleep", "300")
        assert r.returncode == 0, r.stderr
        r = _net(skiffd, "connect", "--ip", "10.231.8.77", "h5b-net2", "h5b-netc")
        assert r.returncode == 0, r.stderr
        info = json.loads(_net(skiffd, "inspect", "h5b-net2").stdout)[0]
        conts = info["Containers"]
        assert len(conts) == 1
        (ep,) = conts.values()
        assert ep["Name"] == "h5b-netc" and ep["IPv4Address"] == "10.231.8.77/24"
        r = skiffd.docker("exec", "h5b-netc", "ip", "-4", "-o", "addr")
        assert "10.231.8.77/24" in r.stdout, r.stdout + r.stderr
        c = json.loads(skiffd.docker("inspect", "h5b-netc").stdout)[0]
        assert c["NetworkSettings"]["Networks"]["h5b-net2"]["IPAddress"] == "10.231.8.77"
        r = _net(skiffd, "rm", "h5b-net2")
        assert r.returncode == 1 and "active endpoints" in r.stderr
        _net(skiffd, "disconnect", "h5b-net2", "h5b-netc", check=True)
        r = skiffd.docker("exec", "h5b-netc", "ip", "-4", "-o", "addr")
        assert "10.231.8.77" not in r.stdout
        c = json.loads(skiffd.docker("inspect", "h5b-netc").stdout)[0]
        assert "h5b-net2" not in c["NetworkSettings"]["Networks"]
    finally:
        skiffd.docker("rm", "-f", "h5b-netc")
        _net(skiffd, "rm", "h5b-net2")


def test_network_prune(skiffd):
    _net(skiffd, "create", "h5b-prune-me", check=True)
    r = _net(skiffd, "prune", "-f")
    assert r.returncode == 0 and "h5b-prune-me" in r.stdout, r.stderr
    assert "h5b-prune-me" not in _net(skiffd, "ls").stdout
    assert "bridge" in _net(skiffd, "ls").stdout


def test_connect_stopped_container_applies_at_start(skiffd):
    _net(skiffd, "create", "--subnet", "10.231.9.0/24", "h5b-net3", check=True)
    try:
        skiffd.docker("create", "--name", "h5b-late", "busybox", "sleep", "300", check=True)
        r = _net(skiffd, "connect", "--alias", "late", "h5b-net3", "h5b-late")
        assert r.returncode == 0, r.stderr
        c = json.loads(skiffd.docker("inspect", "h5b-late").stdout)[0]
        assert "h5b-net3" in c["NetworkSettings"]["Networks"]
        skiffd.docker("start", "h5b-late", check=True)
        r = skiffd.docker("exec", "h5b-late", "ip", "-4", "-o", "addr")
        assert "10.231.9." in r.stdout, r.stdout + r.stderr
        c = json.loads(skiffd.docker("inspect", "h5b-late").stdout)[0]
        assert c["NetworkSettings"]["Networks"]["h5b-net3"]["IPAddress"].startswith("10.231.9.")
    finally:
        skiffd.docker("rm", "-f", "h5b-late")
        _net(skiffd, "rm", "h5b-net3")


def test_connect_default_bridge_container_switches_resolv_conf_to_embedded_dns(skiffd):
    _net(skiffd, "create", "--subnet", "10.231.10.0/24", "h5b-dnsnet", check=True)
    try:
        skiffd.docker("run", "-d", "--name", "h5b-dnsa", "busybox", "sleep", "300", check=True)
        skiffd.docker("run", "-d", "--name", "h5b-dnsb", "--network", "h5b-dnsnet", "busybox",
                      "sleep", "300", check=True)
        before = skiffd.docker("exec", "h5b-dnsa", "cat", "/etc/resolv.conf", check=True).stdout
        assert "127.0.0.11" not in before
        _net(skiffd, "connect", "h5b-dnsnet", "h5b-dnsa", check=True)
        after = skiffd.docker("exec", "h5b-dnsa", "cat", "/etc/resolv.conf", check=True).stdout
        assert "nameserver 127.0.0.11" in after.splitlines(), after
        # the embedded DNS answers for the user network's other container
        ip_b = json.loads(skiffd.docker("inspect", "h5b-dnsb").stdout)[0][
            "NetworkSettings"]["Networks"]["h5b-dnsnet"]["IPAddress"]
        r = skiffd.docker("exec", "h5b-dnsa", "nslookup", "h5b-dnsb")
        assert ip_b in r.stdout, r.stdout + r.stderr
    finally:
        skiffd.docker("rm", "-f", "h5b-dnsa", "h5b-dnsb")
        _net(skiffd, "rm", "h5b-dnsnet")
