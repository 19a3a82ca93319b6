"""Pure parts of skiff.network: port specs, IPAM, rule rendering, resolv.conf
and hosts text, the DNS codec, and allocation under concurrency (SQLite)."""

import ipaddress
import json
import multiprocessing
import threading

import pytest

from skiff import errors
from skiff.network import dns, files, ipam, nat, ports
from skiff.network.store import Store


@pytest.mark.parametrize("spec,exposed,bindings", [
    ("80", {"80/tcp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": ""}]}),
    ("8080:80", {"80/tcp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}),
    ("127.0.0.1:8080:80/udp", {"80/udp": {}},
     {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}),
    ("127.0.0.1::80", {"80/tcp": {}}, {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}),
    ("8000-8001:80-81", {"80/tcp": {}, "81/tcp": {}},
     {"80/tcp": [{"HostIp": "", "HostPort": "8000"}], "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}),
    ("9000-9010:80", {"80/tcp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": "9000-9010"}]}),
])
def test_parse_publish_like_the_docker_cli(spec, exposed, bindings):
    assert ports.parse_publish(spec) == (exposed, bindings)


@pytest.mark.parametrize("bad", ["80/icmp", "70000:80", "a:b:c:d", "1.2.3:80:80", "8000-8002:80-81"])
def test_parse_publish_rejects_bad_specs(bad):
    with pytest.raises(errors.InvalidArgument):
        ports.parse_publish(bad)


def test_port_requests_and_publish_all():
    reqs = ports.requests({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                           "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]},
                          publish_all=True, exposed_ports={"80/tcp": {}, "443/tcp": {}})
    assert ("tcp", 80, "0.0.0.0", 8080, 8080) in reqs
    assert ("udp", 53, "127.0.0.1", 5353, 5353) in reqs
    assert ("tcp", 443, "0.0.0.0", 0, 0) in reqs and len(reqs) == 3
    pm = ports.ports_map({"80/tcp": {}, "443/tcp": {}},
                         [{"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0",
                           "host_port": 8080}])
    assert pm == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}


def test_ipam_allocation_rules():
    net = ipaddress.ip_network("10.0.0.0/29")
    gw = ipam.default_gateway(net)
    assert str(gw) == "10.0.0.1"
    used = set()
    got = []
    for _ in range(5):
        a = ipam.allocate(net, None, gw, used)
        used.add(a)
        got.append(str(a))
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(errors.Unavailable):
        ipam.allocate(net, None, gw, used)
    rng = ipaddress.ip_network("10.1.5.0/24")
    assert str(ipam.allocate(ipaddress.ip_network("10.1.0.0/16"), rng,
                             ipaddress.ip_address("10.1.0.1"), set())) == "10.1.5.1"
    with pytest.raises(errors.InvalidArgument, match="no configured subnet"):
        ipam.allocate(net, None, gw, set(), ipaddress.ip_address("10.9.9.9"))
    with pytest.raises(errors.Conflict):
        ipam.allocate(net, None, gw, set(), gw)
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def test_pick_subnet_skips_used_and_routed():
    used = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(ipam.pick_subnet(used)) == "172.19.0.0/16"
    every = [ipaddress.ip_network("172.16.0.0/12")]
    assert str(ipam.pick_subnet(every)) == "192.168.0.0/20"
    with pytest.raises(errors.InvalidArgument, match="it should be 10.1.0.0/16"):
        ipam.parse_subnet("10.1.2.3/16")


def test_rules_render_per_network():
    text = nat.render(
        [{"bridge": "skiff0", "subnet": "172.17.0.0/16", "internal": False, "icc": True,
          "masquerade": True},
         {"bridge": "br-x", "subnet": "10.5.0.0/16", "internal": True, "icc": False,
          "masquerade": True}],
        [{"bridge": "skiff0", "proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8080,
          "container_ip": "172.17.0.2", "container_port": 80}])
    assert "-A SKIFF-POSTROUTING -s 172.17.0.0/16 ! -o skiff0 -j MASQUERADE" in text
    assert "10.5.0.0/16 ! -o br-x -j MASQUERADE" not in text  # internal: no way out
    assert "-A SKIFF -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT " \
           "--to-destination 172.17.0.2:80" in text
    assert "-A SKIFF-FORWARD -i br-x -o br-x -j DROP" in text  # icc off
    assert "-A SKIFF-ISOLATION-STAGE-2 -o br-x -j DROP" in text
    assert "-A SKIFF-RAW -d 127.0.0.0/8 -i skiff0 -j DROP" in text
    assert text.count("COMMIT") == 3 and ":SKIFF-FORWARD - [0:0]" in text


def test_resolv_conf_rules():
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
    bridge = files.resolv(host, internal_dns=False)
    assert "127.0.0.53" not in bridge and "nameserver 10.0.0.2" in bridge
    assert "search corp.example" in bridge
    only_lo = files.resolv("nameserver 127.0.0.53\n", internal_dns=False)
    assert "nameserver 8.8.8.8" in only_lo and "nameserver 8.8.4.4" in only_lo
    user = files.resolv(host, internal_dns=True)
    assert [l for l in user.splitlines() if l.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    assert "ndots:0" in user and "edns0" in user
    custom = files.resolv(host, internal_dns=False, dns=["10.9.9.9"], dns_search=["a.b"])
    assert "nameserver 10.9.9.9" in custom and "10.0.0.2" not in custom and "search a.b" in custom


def test_systemd_resolved_stub_is_replaced_by_its_upstream_file(tmp_path):
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    upstream = tmp_path / "resolved.conf"
    upstream.write_text("nameserver 10.1.2.3\n")
    assert files.read_host_resolv(str(stub), str(upstream)) == "nameserver 10.1.2.3\n"
    assert files.read_host_resolv(str(stub), str(tmp_path / "missing")).startswith(
        "nameserver 127.0.0.53")
    plain = tmp_path / "plain.conf"
    plain.write_text("nameserver 10.9.9.9\n")
    assert files.read_host_resolv(str(plain), str(upstream)) == "nameserver 10.9.9.9\n"


def test_hosts_text():
    text = files.hosts([("172.17.0.2", ["web"])], extra_hosts=["db:10.0.0.5"])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-2:] == ["10.0.0.5\tdb", "172.17.0.2\tweb"]


def _query(name, qtype=dns.TYPE_A, qid=0x1234):
    import struct
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + \
        struct.pack("!HH", qtype, 1)


def test_dns_codec_and_answers():
    q = _query("Web.")
    qid, flags, name, qtype, qclass, _ = dns.parse_query(q)
    assert (qid, name, qtype, qclass) == (0x1234, "Web", 1, 1)
    answers = []
    srv = dns.DNSServer(lambda cid, n: ["10.0.0.2", "10.0.0.3"] if n == "web" else None,
                        forward=False)
    srv._answer("c", q, answers.append)
    r = answers[0]
    assert r[:2] == b"\x12\x34" and r[3] & 0x0F == 0 and r[6:8] == b"\x00\x02"
    assert r.endswith(bytes([10, 0, 0, 3]))
    srv._answer("c", _query("nothing"), answers.append)
    assert answers[1][3] & 0x0F == dns.SERVFAIL
    srv._answer("c", _query("web", dns.TYPE_AAAA), answers.append)
    assert answers[2][3] & 0x0F == 0 and answers[2][6:8] == b"\x00\x00"
    srv._answer("c", b"\x00\x01garbage", answers.append)
    assert answers[3][3] & 0x0F == dns.FORMERR


def _alloc_worker(path, n, out, tag):
    st = Store(path)
    net = ipaddress.ip_network("10.0.0.0/24")
    got = []
    for i in range(n):
        with st.tx() as db:
            used = {ipaddress.ip_address(r[0]) for r in db.execute("SELECT ip FROM endpoints")}
            a = ipam.allocate(net, None, ipaddress.ip_address("10.0.0.1"), used)
            cid = f"{tag}-{i}"
            db.execute("INSERT INTO endpoints (id, network_id, container_id, container_name, "
                       "ifname, ip) VALUES (?,?,?,?,?,?)", (cid, "n", cid, cid, "eth0", str(a)))
        got.append(str(a))
    out.put(got) if hasattr(out, "put") else out.extend(got)


def test_allocation_is_unique_across_processes_and_threads(tmp_path):
    path = str(tmp_path / "state")
    st = Store(path)
    st.read().execute("INSERT INTO networks (id, name, driver, created) VALUES "
                      "('n', 'net', 'bridge', 'now')")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    ps = [ctx.Process(target=_alloc_worker, args=(path, 15, q, f"p{k}")) for k in range(3)]
    for p in ps:
        p.start()
    local = []
    ts = [threading.Thread(target=_alloc_worker, args=(path, 15, local, f"t{k}"))
          for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    got = local + [ip for _ in ps for ip in q.get(timeout=60)]
    for p in ps:
        p.join()
    assert len(got) == 90 and len(set(got)) == 90
    assert json.dumps(sorted(got))  # all plain strings


def test_network_mode_and_endpoints_config_parsing():
    from skiff.network.manager import NetworkManager as NM
    assert NM._parse_networks(None) == ("bridge", [("bridge", {})])
    assert NM._parse_networks("default") == ("bridge", [("bridge", {})])
    assert NM._parse_networks("host") == ("host", [])
    assert NM._parse_networks("container:abc") == ("container:abc", [])
    assert NM._parse_networks({"default": {}}) == ("bridge", [("bridge", {})])
    mode, nets = NM._parse_networks({"app": {"Aliases": ["a"]}, "db": None})
    assert mode == "app" and nets == [("app", {"Aliases": ["a"]}), ("db", {})]
    with pytest.raises(errors.InvalidArgument):
        NM._parse_networks({"host": {}, "app": {}})
    assert NM._endpoint_cfg({"IPAMConfig": {"IPv4Address": "10.0.0.5"}, "Aliases": ["x"]}) == \
        ("10.0.0.5", ["x"])
    assert NM._mac_cfg({"MacAddress": "02:AA:bb:cc:dd:ee"}) == "02:aa:bb:cc:dd:ee"
    with pytest.raises(errors.InvalidArgument):
        NM._mac_cfg({"MacAddress": "nope"})


def test_until_filter_values():
    from skiff.network.manager import NetworkManager as NM
    assert NM._until("1700000000") == "2023-11-14T22:13:20Z"
    assert NM._until("2024-01-01T00:00:00Z") == "2024-01-01T00:00:00Z"
    assert NM._until("90m") < NM._until("1m")
    with pytest.raises(errors.InvalidArgument):
        NM._until("yesterday")


def test_embedded_dns_redirect_rules():
    text = dns.redirect_rules(40001, 40002, hooks=True)
    assert "-A SKIFF_DNS_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT " \
           "--to-destination 127.0.0.11:40001" in text
    assert "--sport 40002 -j SNAT --to-source :53" in text
    assert "-A OUTPUT -d 127.0.0.11/32 -j SKIFF_DNS_OUTPUT" in text
    assert "-A OUTPUT" not in dns.redirect_rules(1, 2, hooks=False)
