"""The bridge driver on bare network namespaces, in a private "host"
namespace per test (see conftest.py): no daemon, no container runtime."""

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from skiff import errors
from skiff.network import netns as nsmod

from .conftest import in_ns, run_in

CID = [f"{i:02d}" * 32 for i in range(100)]


def _addrs(path):
    out = in_ns(path, ["ip", "-4", "-o", "addr", "show"]).stdout
    return {line.split()[1]: line.split()[3] for line in out.splitlines()}


def _links():
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def _iptables_save():
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def _wait_port(path, port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = in_ns(path, ["busybox", "netstat", "-ltn"])
        if f":{port} " in r.stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_container_namespace_addresses_and_host_bridge(manager):
    s1 = manager.setup_container(CID[1], "c1")
    s2 = manager.setup_container(CID[2], "/c2", networks={"default": {}})  # docker run's shape
    assert list(s2["Networks"]) == ["bridge"]
    addrs = _addrs(s1["SandboxKey"])
    assert addrs["lo"] == "127.0.0.1/8"
    assert ipaddress.ip_interface(addrs["eth0"]).network == ipaddress.ip_network("172.17.0.0/16")
    assert "inet6" not in in_ns(s1["SandboxKey"], ["ip", "-o", "addr", "show", "eth0"]).stdout
    assert s1["IPAddress"] == "172.17.0.2" and s2["IPAddress"] == "172.17.0.3"
    assert s1["MacAddress"] == "02:42:ac:11:00:02"
    assert s1["Gateway"] == "172.17.0.1"
    assert s1["SandboxKey"] == os.path.join(manager.exec_root, "netns", CID[1])
    assert nsmod.is_netns(s1["SandboxKey"])
    route = in_ns(s1["SandboxKey"], ["ip", "route", "show", "default"]).stdout
    assert "via 172.17.0.1 dev eth0" in route
    mac = in_ns(s1["SandboxKey"], ["cat", "/sys/class/net/eth0/address"])
    # /sys shows the mounter's namespace: read the MAC through ip instead
    link = in_ns(s1["SandboxKey"], ["ip", "-o", "link", "show", "eth0"]).stdout
    assert "02:42:ac:11:00:02" in link, (link, mac.stdout)
    # host side: skiff0 with one veth per container
    host = _links()
    assert "skiff0:" in host
    ports = subprocess.run(["ip", "-o", "link", "show", "master", "skiff0"],
                           capture_output=True, text=True).stdout.splitlines()
    assert len(ports) == 2 and all(": veth" in p for p in ports)
    # network inspect bridge lists them
    info = manager.inspect_json("bridge")
    assert info["Driver"] == "bridge" and info["Options"]["com.docker.network.bridge.name"] == "skiff0"
    assert info["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert {c["Name"]: c["IPv4Address"] for c in info["Containers"].values()} == \
        {"c1": "172.17.0.2/16", "c2": "172.17.0.3/16"}
    assert info["Containers"][CID[1]]["MacAddress"] == "02:42:ac:11:00:02"
    assert info["Containers"][CID[1]]["EndpointID"] == s1["EndpointID"]
    assert [n["Name"] for n in manager.list_json()] == ["bridge", "host", "none"]


def test_two_containers_ping_each_other(manager):
    manager.setup_container(CID[1], "c1")
    # a second start without teardown (daemon crash) replaces the stale network
    s1 = manager.setup_container(CID[1], "c1")
    assert len(manager.inspect_json("bridge")["Containers"]) == 1
    s2 = manager.setup_container(CID[2], "c2")
    for a, b in ((s1, s2), (s2, s1)):
        r = in_ns(a["SandboxKey"], ["busybox", "ping", "-c", "1", "-W", "2", b["IPAddress"]])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 packets received" in r.stdout


def test_published_port_serves_file_over_host_loopback(manager, procs, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from skiff\n")
    s = manager.setup_container(CID[1], "web",
                                ports={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                                publish_all=True, exposed_ports={"80/tcp": {}, "81/tcp": {}})
    path = s["SandboxKey"]
    procs(["nsenter", f"--net={path}", "busybox", "httpd", "-f", "-p", "80", "-h", str(www)])
    procs(["nsenter", f"--net={path}", "busybox", "httpd", "-f", "-p", "81", "-h", str(www)])
    _wait_port(path, 80)
    _wait_port(path, 81)
    assert s["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    eph = int(s["Ports"]["81/tcp"][0]["HostPort"])
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert lo <= eph <= hi
    # the (namespaced) host reaches both through its own loopback: DNAT in OUTPUT
    for port in (8080, eph):
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read()
        assert body == b"hello from skiff\n"
    assert "--to-destination 172.17.0.2:80" in _iptables_save()
    # through a host address from containers: another one, and itself (hairpin)
    other = manager.setup_container(CID[3], "other")
    for src in (other["SandboxKey"], path):
        body = run_in(src, lambda: urllib.request.urlopen("http://172.17.0.1:8080/",
                                                          timeout=5).read())
        assert body == b"hello from skiff\n"
    # a second container cannot take the same host port
    with pytest.raises(errors.Internal, match="port is already allocated"):
        manager.setup_container(CID[2], "web2",
                                ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]})
    assert not nsmod.is_netns(manager.netns_path(CID[2]))  # nothing left of the failed one
    # nor one that a host process listens on
    with socket.socket() as held:
        held.bind(("0.0.0.0", 9090))
        held.listen(1)
        with pytest.raises(errors.Internal, match="address already in use"):
            manager.setup_container(CID[2], "web2",
                                    ports={"80/tcp": [{"HostIp": "", "HostPort": "9090"}]})
    assert "9090" not in _iptables_save()
    manager.teardown_container(CID[1])
    assert "172.17.0.2" not in _iptables_save()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2)


def _resolv_mounted(path, resolv_text, tmp_path, cmd):
    """Run ``cmd`` in the container namespace with the resolv.conf skiff
    generated bind-mounted over /etc/resolv.conf (a private mount ns)."""
    f = tmp_path / f"resolv-{os.urandom(3).hex()}"
    f.write_text(resolv_text)
    script = f'mount --bind "{f}" /etc/resolv.conf && exec nsenter --net="{path}" "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           *cmd], capture_output=True, text=True, timeout=20)


def test_user_network_resolves_names_and_aliases(manager, tmp_path):
    manager.create("appnet")
    web = manager.setup_container(CID[1], "web", networks={"appnet": {"Aliases": ["www"]}})
    cli = manager.setup_container(CID[2], "client", networks="appnet")
    other = manager.setup_container(CID[3], "elsewhere")  # default bridge
    resolv = manager.resolv_conf(CID[2])
    assert "nameserver 127.0.0.11" in resolv and "ndots:0" in resolv
    web_ip = web["Networks"]["appnet"]["IPAddress"]
    r = _resolv_mounted(cli["SandboxKey"], resolv, tmp_path, ["busybox", "ping", "-c1", "-W2", "web"])
    assert r.returncode == 0 and f"({web_ip})" in r.stdout, r.stdout + r.stderr
    r = in_ns(cli["SandboxKey"], ["busybox", "nslookup", "www", "127.0.0.11"])
    assert r.returncode == 0 and web_ip in r.stdout, r.stdout + r.stderr
    r = in_ns(cli["SandboxKey"], ["busybox", "nslookup", CID[1][:12], "127.0.0.11"])
    assert web_ip in r.stdout
    # a container of another network is not known on this one
    r = in_ns(cli["SandboxKey"], ["busybox", "nslookup", "elsewhere", "127.0.0.11"])
    assert r.returncode != 0 and other["IPAddress"] not in r.stdout
    # port 53 stays the container's own (a DNS server of its own can bind it),
    # and the embedded server answers over TCP too
    from skiff.network import dns

    def own_server_and_tcp_query():
        own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        own.bind(("0.0.0.0", 53))
        try:
            import struct
            msg = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + dns.encode_name("web") + \
                struct.pack("!HH", dns.TYPE_A, 1)
            with socket.create_connection(("127.0.0.11", 53), timeout=5) as c:
                c.sendall(struct.pack("!H", len(msg)) + msg)
                n = struct.unpack("!H", c.recv(2))[0]
                data = b""
                while len(data) < n:
                    data += c.recv(n - len(data))
            return data
        finally:
            own.close()
    answer = run_in(cli["SandboxKey"], own_server_and_tcp_query)
    assert answer[:2] == b"\x00\x07" and answer.endswith(ipaddress.ip_address(web_ip).packed)
    # the default bridge has no embedded DNS: host servers, loopback ones dropped
    assert "127.0.0.11" not in manager.resolv_conf(CID[3])
    assert web["Networks"]["appnet"]["DNSNames"] == ["web", CID[1][:12], "www"]
    assert web["Networks"]["appnet"]["Aliases"] == ["www"]


def test_masquerade_outside_sees_host_address(manager_factory, outside):
    m = manager_factory()
    m.ensure_default()
    subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)  # as dockerd leaves it
    c = m.setup_container(CID[1], "c1")
    m.create("sealed", internal=True)
    sealed = m.setup_container(CID[2], "sealed", networks="sealed")

    def listen():
        s = socket.socket()
        s.bind((outside.address, 9000))
        s.listen(4)
        return s
    server = run_in(outside.path, listen)
    server.settimeout(5)

    def listen_on(addr):
        s = socket.socket()
        s.bind(addr)
        s.listen(4)
        return s

    def connect(addr, timeout):
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect(addr)
            s.sendall(b"hi")
            return True
        except OSError:
            return False
        finally:
            s.close()
    try:
        assert run_in(c["SandboxKey"], connect, (outside.address, 9000), 5)
        conn, peer = server.accept()
        conn.close()
        assert peer[0] == "10.200.0.1"  # the host's address, not 172.17.0.2
        # the other way: an outside client reaches a published port, and the
        # container sees the client's real address (DNAT, no proxy)
        p = m.setup_container(CID[3], "pub", ports={"7000/tcp": [{"HostPort": "7070"}]})
        srv = run_in(p["SandboxKey"], listen_on, ("0.0.0.0", 7000))
        srv.settimeout(5)
        try:
            assert run_in(outside.path, connect, ("10.200.0.1", 7070), 5)
            conn, peer = srv.accept()
            conn.close()
            assert peer[0] == outside.address
        finally:
            srv.close()
        # an --internal network has no way out, not even a default route
        assert not run_in(sealed["SandboxKey"], connect, (outside.address, 9000), 1)
        assert in_ns(sealed["SandboxKey"], ["ip", "route", "show", "default"]).stdout == ""
    finally:
        server.close()


def test_embedded_dns_forwards_unknown_names_to_upstream(manager_factory, outside, tmp_path):
    """The upstream is a fake DNS server in the "outside" namespace."""
    from skiff.network import dns

    def fake_upstream():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((outside.address, 53))
        return s
    up = run_in(outside.path, fake_upstream)
    up.settimeout(10)
    m = manager_factory()  # daemon-wide upstream: 127.0.0.1, where nothing answers
    m.ensure_default()
    m.create("fwdnet")
    c = m.setup_container(CID[1], "c1", networks="fwdnet")
    # docker run --dns <outside>: the container's own upstream
    resolv = m.resolv_conf(CID[1], dns=[outside.address])
    assert "nameserver 127.0.0.11" in resolv and f"ExtServers: [{outside.address}]" in resolv
    p = subprocess.Popen(["nsenter", f"--net={c['SandboxKey']}", "busybox", "nslookup",
                          "outer.test", "127.0.0.11"], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(2):  # busybox nslookup asks A and AAAA
            msg, peer = up.recvfrom(4096)
            _, _, qname, qtype, _, _ = dns.parse_query(msg)
            assert qname == "outer.test"
            up.sendto(dns.build_response(msg, 0, ["198.51.100.7"] if qtype == dns.TYPE_A else [],
                                         qtype), peer)
        out, _ = p.communicate(timeout=10)
        assert "198.51.100.7" in out
    finally:
        p.kill()
        p.wait()
        up.close()


def test_isolation_between_networks_and_icc_off(manager):
    manager.create("neta")
    manager.create("netb")
    manager.create("noicc", options={"com.docker.network.bridge.enable_icc": "false"})
    a = manager.setup_container(CID[1], "a", networks="neta")
    b = manager.setup_container(CID[2], "b", networks="netb")
    a2 = manager.setup_container(CID[3], "a2", networks="neta")
    n1 = manager.setup_container(CID[4], "n1", networks="noicc")
    n2 = manager.setup_container(CID[5], "n2", networks="noicc")

    def ping(src, dst, wait=3):
        return in_ns(src["SandboxKey"], ["busybox", "ping", "-c1", f"-W{wait}",
                                         list(dst["Networks"].values())[0]["IPAddress"]]).returncode
    assert ping(a, a2) == 0
    assert ping(a, b, 1) != 0
    assert ping(n1, n2, 1) != 0
    # connect a to netb: now it reaches b there
    ep = manager.connect(CID[1], "netb", aliases=["alpha"])
    assert ep["Aliases"] == ["alpha"] and ep["IPAddress"].startswith(
        b["Networks"]["netb"]["IPAddress"].rsplit(".", 1)[0])
    assert "eth1" in _addrs(a["SandboxKey"])
    assert ping(a, b) == 0
    manager.disconnect(CID[1], "netb")
    assert "eth1" not in _addrs(a["SandboxKey"])
    with pytest.raises(errors.Internal, match=f"container {CID[1]} is not connected to network netb"):
        manager.disconnect(CID[1], "netb")


def test_network_create_inspect_rm_prune(manager):
    r = manager.create("custom", subnet="10.55.0.0/16", gateway="10.55.0.254",
                       ip_range="10.55.7.0/24", labels={"team": "net"},
                       options={"com.docker.network.bridge.name": "skt-br0"})
    info = manager.inspect_json("custom")
    assert info["Id"] == r["Id"] and manager.inspect_json(r["Id"][:10])["Name"] == "custom"
    assert info["IPAM"]["Config"] == [{"Subnet": "10.55.0.0/16", "Gateway": "10.55.0.254",
                                       "IPRange": "10.55.7.0/24"}]
    assert info["Labels"] == {"team": "net"}
    assert "skt-br0:" in _links()
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "skt-br0"], capture_output=True,
                           text=True).stdout
    assert "10.55.0.254/16" in addrs
    s = manager.setup_container(CID[1], "c1", networks="custom")
    assert s["Networks"]["custom"]["IPAddress"] == "10.55.7.1"
    s2 = manager.setup_container(CID[2], "c2",
                                 networks={"custom": {"IPAMConfig": {"IPv4Address": "10.55.0.9"},
                                                      "MacAddress": "02:aa:bb:cc:dd:ee"}})
    assert "02:aa:bb:cc:dd:ee" in in_ns(s2["SandboxKey"], ["ip", "-o", "link", "show",
                                                           "eth0"]).stdout
    assert s2["Networks"]["custom"]["MacAddress"] == "02:aa:bb:cc:dd:ee"
    assert s2["Networks"]["custom"]["IPAddress"] == "10.55.0.9"
    assert s2["Networks"]["custom"]["IPAMConfig"] == {"IPv4Address": "10.55.0.9"}
    with pytest.raises(errors.Conflict, match="Address already in use"):
        manager.setup_container(CID[3], "c3",
                                networks={"custom": {"IPAMConfig": {"IPv4Address": "10.55.0.9"}}})
    with pytest.raises(errors.Conflict, match="network with name custom already exists"):
        manager.create("custom")
    with pytest.raises(errors.PermissionDenied, match="Pool overlaps"):
        manager.create("clash", subnet="10.55.3.0/24")
    with pytest.raises(errors.PermissionDenied, match="no matching subnet for gateway"):
        manager.create("badgw", subnet="10.66.0.0/16", gateway="10.67.0.1")
    with pytest.raises(errors.InvalidArgument, match="invalid CIDR"):
        manager.create("badnet", subnet="10.66.0.0/33")
    with pytest.raises(errors.Conflict, match="is not a bridge"):
        manager.create("onlo", options={"com.docker.network.bridge.name": "lo"})
    assert "onlo" not in [n["Name"] for n in manager.list_json()]
    assert "10." not in subprocess.run(["ip", "-4", "-o", "addr", "show", "lo"],
                                       capture_output=True, text=True).stdout
    with pytest.raises(errors.InvalidArgument, match="invalid MTU"):
        manager.create("badmtu", options={"com.docker.network.driver.mtu": "big"})
    with pytest.raises(errors.NotFound, match='plugin "overlay" not found'):
        manager.create("ov", driver="overlay")
    assert [n["Name"] for n in manager.list_json()] == ["bridge", "host", "none", "custom"]
    with pytest.raises(errors.PermissionDenied, match="has active endpoints"):
        manager.remove("custom")
    with pytest.raises(errors.PermissionDenied, match="pre-defined network"):
        manager.remove("bridge")
    with pytest.raises(errors.NotFound, match="network nope not found"):
        manager.inspect_json("nope")
    req = manager.create_from_request({"Name": "fromapi", "Driver": "bridge", "IPAM": {
        "Driver": "default", "Config": [{"Subnet": "10.56.0.0/24"}]}, "Labels": {"x": "1"}})
    assert manager.inspect_json(req["Id"])["IPAM"]["Config"][0] == \
        {"Subnet": "10.56.0.0/24", "Gateway": "10.56.0.1"}
    stopped = manager.network_settings(CID[9], {"fromapi": {"Aliases": ["db"]}})
    assert stopped["Networks"]["fromapi"]["IPAddress"] == "" and \
        stopped["Networks"]["fromapi"]["NetworkID"] == req["Id"]
    manager.remove("fromapi")
    manager.create("unused", labels={"x": "1"})
    assert [n["Name"] for n in manager.list_json({"label": ["x=1"]})] == ["unused"]
    assert [n["Name"] for n in manager.list_json({"type": ["custom"]})] == ["custom", "unused"]
    assert manager.prune({"until": ["1h"]}) == {"NetworksDeleted": []}  # too recent
    assert manager.prune() == {"NetworksDeleted": ["unused"]}
    manager.teardown_container(CID[1])
    manager.teardown_container(CID[2])
    manager.remove("custom")
    assert "skt-br0" not in _links()
    assert "10.55.0.0/16" not in _iptables_save()


def test_default_bridge_takes_next_pool_when_172_17_is_routed(manager_factory):
    subprocess.run(["ip", "link", "add", "docker0", "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "172.17.0.1/16", "dev", "docker0"], check=True)
    subprocess.run(["ip", "link", "set", "docker0", "up"], check=True)
    m = manager_factory()
    m.ensure_default()
    assert m.inspect_json("bridge")["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
    r = m.create("next")
    assert m.inspect_json(r["Id"])["IPAM"]["Config"][0]["Subnet"] == "172.19.0.0/16"


def test_none_host_and_container_modes(manager):
    none = manager.setup_container(CID[1], "isolated", networks="none")
    assert set(_addrs(none["SandboxKey"])) == {"lo"}
    assert list(none["Networks"]) == ["none"]
    assert manager.inspect_json("none")["Containers"][CID[1]]["Name"] == "isolated"
    base = manager.setup_container(CID[2], "base")
    assert manager.netns_for_mode(f"container:{CID[2]}") == base["SandboxKey"]
    joined = manager.setup_container(CID[3], "joined", networks=f"container:{CID[2]}")
    assert joined["SandboxKey"] == base["SandboxKey"] and joined["Networks"] == {}
    host = manager.setup_container(CID[4], "onhost", networks="host")
    assert manager.netns_for_mode("host") is None and list(host["Networks"]) == ["host"]
    assert CID[4] in manager.inspect_json("host")["Containers"]
    hosts = manager.hosts_file(CID[2], hostname="base")
    assert "127.0.0.1\tlocalhost" in hosts and f"{base['IPAddress']}\tbase" in hosts
    manager.teardown_container(CID[3])
    assert nsmod.is_netns(base["SandboxKey"])  # the owner's namespace stays
    with pytest.raises(errors.Conflict):
        manager.netns_for_mode("container:missing")


HELPER = r"""
import json, sys
from skiff.network import NetworkManager
m = NetworkManager(sys.argv[1], sys.argv[2], {"dns-forward": False})
out = {}
for cid in sys.argv[3:]:
    s = m.setup_container(cid, "p" + cid[:6], networks="bulk", publish_all=True,
                          exposed_ports={"80/tcp": {}})
    out[cid] = [s["Networks"]["bulk"]["IPAddress"], s["Ports"]["80/tcp"][0]["HostPort"]]
m.close()
print(json.dumps(out))
"""


def test_30_concurrent_endpoints_distinct_and_nothing_left(manager, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    manager.create("bulk", subnet="10.77.0.0/24")
    before_rules = _iptables_save()
    ids = [f"{i:064x}" for i in range(1, 31)]
    # 15 from another process, 15 from 6 threads of this one, all at once
    proc = subprocess.Popen([sys.executable, "-c", HELPER, manager.state_dir, manager.exec_root,
                             *ids[:15]], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.dirname(os.path.abspath(__file__))))))

    def one(cid):
        s = manager.setup_container(cid, "t" + cid[-6:], networks="bulk", publish_all=True,
                                    exposed_ports={"80/tcp": {}})
        return cid, [s["Networks"]["bulk"]["IPAddress"], s["Ports"]["80/tcp"][0]["HostPort"]]
    with ThreadPoolExecutor(6) as pool:
        mine = dict(pool.map(one, ids[15:]))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    got = {**json.loads(out), **mine}
    ips = [v[0] for v in got.values()]
    hostports = [v[1] for v in got.values()]
    assert len(got) == 30 and len(set(ips)) == 30 and len(set(hostports)) == 30
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.77.0.0/24") for ip in ips)
    assert len(manager.inspect_json("bulk")["Containers"]) == 30
    br = manager.get("bulk")["bridge"]
    veths = subprocess.run(["ip", "-o", "link", "show", "master", br], capture_output=True,
                           text=True).stdout.splitlines()
    assert len(veths) == 30
    for cid in ids:  # each namespace really holds its address
        if cid in (ids[0], ids[29]):
            assert got[cid][0] + "/24" == _addrs(manager.netns_path(cid))["eth0"]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(manager.teardown_container, ids))
    assert "veth" not in _links()
    assert _iptables_save().count("DNAT") == 0
    assert os.listdir(os.path.join(manager.exec_root, "netns")) == []
    assert manager.inspect_json("bulk")["Containers"] == {}
    with open("/proc/self/mountinfo") as f:
        assert manager.exec_root not in f.read()
    manager.remove("bulk")
    assert br not in _links()
    # a rule of the user's in SKIFF-USER survives the daemon's shutdown
    subprocess.run(["iptables", "-I", "SKIFF-USER", "-s", "10.66.0.0/16", "-j", "DROP"],
                   check=True)
    assert manager.cleanup() is True
    after = _iptables_save()
    assert [l for l in after.splitlines() if "SKIFF" in l] == [
        ":SKIFF-USER - [0:0]", "-A FORWARD -j SKIFF-USER",
        "-A SKIFF-USER -s 10.66.0.0/16 -j DROP", "-A SKIFF-USER -j RETURN"]
    assert "skiff0" not in _links()
    assert before_rules.count("SKIFF") > 0
    # the next daemon start keeps it first in FORWARD
    manager._ipt = type(manager._ipt)()
    manager.ensure_default()
    forward = [l for l in _iptables_save().splitlines() if l.startswith("-A FORWARD")]
    assert forward == ["-A FORWARD -j SKIFF-USER", "-A FORWARD -j SKIFF-FORWARD"]
    subprocess.run(["iptables", "-D", "SKIFF-USER", "-s", "10.66.0.0/16", "-j", "DROP"],
                   check=True)
    manager.cleanup()
    assert "SKIFF" not in _iptables_save()


def test_restore_after_restart_and_cleanup_refuses_with_containers(manager_factory, tmp_path):
    m = manager_factory()
    m.ensure_default()
    m.create("keep")
    c = m.setup_container(CID[1], "kept", networks="keep")
    m.dns.stop()  # the daemon goes away; the namespace stays
    subprocess.run(["iptables", "-t", "nat", "-F", "SKIFF-POSTROUTING"], check=True)
    m2 = manager_factory()
    m2.restore(running={CID[1]})
    assert "-s 172.17.0.0/16 ! -o skiff0 -j MASQUERADE" in _iptables_save()
    r = in_ns(c["SandboxKey"], ["busybox", "nslookup", "kept", "127.0.0.11"])
    assert c["Networks"]["keep"]["IPAddress"] in r.stdout, r.stdout + r.stderr
    assert m2.cleanup() is False and "SKIFF" in _iptables_save()
    m2.restore(running=set())  # the container died meanwhile
    assert not nsmod.is_netns(c["SandboxKey"])
    assert m2.inspect_json("keep")["Containers"] == {}


@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_runc_joins_the_namespace_by_path(manager, make_bundle, tmp_path):
    """What the engine does: the OCI spec names skiff's namespace file."""
    s = manager.setup_container(CID[1], "viaruntime")
    bundle = make_bundle(["ip", "-4", "-o", "addr", "show"])
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        spec = json.load(f)
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = s["SandboxKey"]
    with open(cfg_path, "w") as f:
        json.dump(spec, f)
    root = tmp_path / "runc-root"
    r = subprocess.run(["runc", "--root", str(root), "run", "-b", bundle, f"skt-{CID[1][:8]}"],
                       capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "--root", str(root), "delete", "-f", f"skt-{CID[1][:8]}"],
                   capture_output=True)
    assert r.returncode == 0, r.stderr
    assert "lo    inet 127.0.0.1/8" in r.stdout.replace("  ", " ") or "127.0.0.1/8" in r.stdout
    assert "eth0" in r.stdout and f"{s['IPAddress']}/16" in r.stdout
