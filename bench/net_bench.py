#!/opt/skiff/venv/bin/python
"""skiff's network data path, measured in a private network namespace.

    /opt/skiff/venv/bin/python bench/net_bench.py [--seconds 3] [--requests 2000] [--json]
    /opt/skiff/venv/bin/python bench/net_bench.py --engines [--rounds 3] [--seconds 3]

``--engines``: skiffd against a private dockerd (bench/dockerd.py), end to
end through both daemons, each in its own network namespace: real
containers made with ``docker run -p``, container→container and
host(engine namespace)→published-port throughput and connection rate,
alternating engine by engine; prints skiff/docker ratios. See
engines_main(). Without it:

Everything runs inside a throw-away "host" namespace (created and deleted
here): skiff0, the SKIFF chains, two containers (bare namespaces, no
runtime needed) with iperf3 and busybox httpd started in them by nsenter.

Figures:
- throughput container→container over skiff0 (iperf3),
- throughput host→published port through 127.0.0.1 (DNAT in OUTPUT +
  MASQUERADE, no userland proxy),
- connection rate (ab, one TCP connection per request, busybox httpd) for
  container→container and host→published port,
- network setup+teardown latency per container (veth, address, DNAT),
each beside a baseline that has no bridge and no NAT: the same server on
the namespace's own loopback. The ratios are skiff / baseline.

Without --engines dockerd is not run; skiff's data path (veth + Linux bridge + iptables DNAT/MASQUERADE) is
dockerd's with "userland-proxy": false. Docker's *default* path from the
host's loopback to a published port is its userland proxy: when the
docker-proxy binary is available (``--docker-proxy PATH``; it comes in
Debian's docker.io package, e.g. ``apt-get download docker.io && dpkg-deb -x
docker.io_*.deb /tmp/dk`` → /tmp/dk/usr/sbin/docker-proxy, nothing
installed, no daemon started) the host→published figures are also taken
through docker-proxy in front of the same container, as dockerd runs it.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skiff import sys as ksys  # noqa: E402


def sh(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def ns_cmd(path, cmd):
    return ["nsenter", f"--net={path}"] + cmd if path else cmd


def wait_listen(path, port, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in sh(ns_cmd(path, ["busybox", "netstat", "-ltn"])).stdout:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def iperf(client_ns, host, port, seconds):
    r = sh(ns_cmd(client_ns, ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J"]),
           timeout=seconds + 30)
    data = json.loads(r.stdout)
    if "error" in data:
        raise RuntimeError(data["error"])
    return data["end"]["sum_received"]["bits_per_second"] / 1e9


def ab(client_ns, url, n):
    r = sh(ns_cmd(client_ns, ["ab", "-q", "-n", str(n), "-c", "4", url]), timeout=120)
    m = re.search(r"Requests per second:\s+([\d.]+)", r.stdout)
    if not m or "Failed requests:        0" not in r.stdout:
        raise RuntimeError(f"ab failed: {r.stdout[-500:]} {r.stderr[-500:]}")
    return float(m.group(1))


def engines_main(args):
    """skiffd and a private dockerd, each in its own network namespace; in
    each, a server container (-p 15201:5201 -p 18080:80) and a client
    container (busybox sleep). iperf3 and busybox httpd are the host's
    binaries started by nsenter in the server container's namespace (busybox
    has neither), the clients in the client container's namespace
    (container→container) or in the engine's own namespace, on 127.0.0.1
    (host→published port). Same servers, same commands for both engines; the
    measurements alternate engine by engine, round by round."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tests.e2e.conftest import Daemon
    from dockerd import Dockerd
    import statistics
    root = tempfile.mkdtemp(prefix="skiff-netbench-")
    www = os.path.join(root, "www")
    os.makedirs(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("x" * 612)  # nginx's default page size
    procs = []
    engines = {}
    sk = dd = None
    versions = {}
    try:
        sk = Daemon(os.path.join(root, "skiff"), runtime="runc")
        os.makedirs(sk.root, exist_ok=True)
        sk.preload()
        sk.start()
        env = sk.env()
        engines["skiff"] = (["docker", "-H", sk.host], env, f"/run/netns/{sk.netns}")
        dd = Dockerd().start()
        dd.load_busybox()
        versions["docker"] = "dockerd " + dd.version() + " (--userland-proxy=false)"
        engines["docker"] = (dd.cli(), env, f"/run/netns/{dd.netns}")
        info = {}
        for name, (cli, e, hostns) in engines.items():
            def dk(*a):
                r = subprocess.run(cli + list(a), env=e, capture_output=True, text=True)
                if r.returncode:
                    raise RuntimeError(f"{name}: {' '.join(a)}: {r.stderr[-400:]}")
                return r.stdout.strip()
            dk("run", "-d", "--name", "srv", "-p", "15201:5201", "-p", "18080:80",
               "busybox", "sleep", "3000")
            dk("run", "-d", "--name", "cli", "busybox", "sleep", "3000")
            spid = dk("inspect", "-f", "{{.State.Pid}}", "srv")
            cpid = dk("inspect", "-f", "{{.State.Pid}}", "cli")
            ip = dk("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv")
            sp, cp = f"/proc/{spid}/ns/net", f"/proc/{cpid}/ns/net"
            for ns, cmd in ((sp, ["iperf3", "-s", "-p", "5201"]),
                            (sp, ["busybox", "httpd", "-f", "-p", "80", "-h", www]),
                            (hostns, ["iperf3", "-s", "-p", "25201"]),   # loopback baseline
                            (hostns, ["busybox", "httpd", "-f", "-p", "28080", "-h", www])):
                procs.append(subprocess.Popen(ns_cmd(ns, cmd), stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))
            for ns, port in ((sp, 5201), (sp, 80), (hostns, 25201), (hostns, 28080)):
                wait_listen(ns, port)
            info[name] = (sp, cp, ip, hostns)
        res = {name: {} for name in engines}

        def add(name, key, v):
            res[name].setdefault(key, []).append(v)
        s, n = args.seconds, args.requests
        for r in range(args.rounds):
            order = list(engines) if r % 2 == 0 else list(engines)[::-1]
            for name in order:
                sp, cp, ip, hostns = info[name]
                add(name, "c2c_gbit", iperf(cp, ip, 5201, s))
                add(name, "host_to_published_gbit", iperf(hostns, "127.0.0.1", 15201, s))
                add(name, "loopback_gbit", iperf(hostns, "127.0.0.1", 25201, s))
                add(name, "c2c_conn_per_s", ab(cp, f"http://{ip}:80/index.html", n))
                add(name, "host_to_published_conn_per_s",
                    ab(hostns, "http://127.0.0.1:18080/index.html", n))
                add(name, "loopback_conn_per_s", ab(hostns, "http://127.0.0.1:28080/index.html", n))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        if dd:
            dd.stop()
        if sk:
            sk.destroy()
        shutil.rmtree(root, ignore_errors=True)

    med = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in res.items()}
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"runs": res, "median": med, "versions": versions, "loadavg": load},
                         indent=2))
        return
    print(f"network, skiffd vs dockerd, median of {args.rounds} alternating rounds "
          f"(iperf3 {s}s, ab -n {n} -c 4); load average {load:.2f}")
    for k, v in versions.items():
        print(f"  {k}: {v}")
    print(f"{'':34}{'skiff':>10}{'docker':>10}{'skiff/docker':>14}")
    for label, key, fmt in (("c2c throughput (Gbit/s)", "c2c_gbit", ".2f"),
                            ("host->published (Gbit/s)", "host_to_published_gbit", ".2f"),
                            ("  loopback baseline (Gbit/s)", "loopback_gbit", ".2f"),
                            ("c2c connections/s", "c2c_conn_per_s", ".0f"),
                            ("host->published connections/s", "host_to_published_conn_per_s", ".0f"),
                            ("  loopback baseline conn/s", "loopback_conn_per_s", ".0f")):
        a, b = med["skiff"][key], med["docker"][key]
        print(f"{label:34}{a:10{fmt}}{b:10{fmt}}{a / b:14.2f}")
    print("higher is better; ratio > 1: skiff faster")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--setups", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--engines", action="store_true",
                    help="skiffd against a private dockerd (bench/dockerd.py), end to end")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docker-proxy", default=shutil.which("docker-proxy") or next(
        (p for p in ("/usr/sbin/docker-proxy", "/usr/libexec/docker/docker-proxy")
         if os.path.exists(p)), None))
    args = ap.parse_args()
    for tool in ("iperf3", "ab", "busybox", "nsenter"):
        if not shutil.which(tool):
            sys.exit(f"net_bench: {tool} is missing (./install.sh --dev)")
    if os.geteuid() != 0:
        sys.exit("net_bench: run as root")
    if args.engines:
        if not shutil.which("dockerd"):
            sys.exit("net_bench --engines: dockerd missing (apt-get install docker.io)")
        return engines_main(args)

    from skiff.network import netns as nsmod
    nsdir = tempfile.mkdtemp(prefix="skiff-bench-ns-")
    nspath = nsmod.create(os.path.join(nsdir, "net"))
    orig = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(nspath, os.O_RDONLY)
    ksys.setns(fd, ksys.CLONE_NEWNET)
    os.close(fd)
    sh(["ip", "link", "set", "lo", "up"], check=True)
    tmp = tempfile.mkdtemp(prefix="skiff-netbench-")
    procs = []
    results = {}
    from skiff.network import NetworkManager
    m = NetworkManager(os.path.join(tmp, "state"), os.path.join(tmp, "run"),
                       {"dns-forward": False})
    try:
        m.ensure_default()
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("x" * 612)  # nginx's default page size
        srv = m.setup_container("a" * 64, "server",
                                ports={"5201/tcp": [{"HostIp": "", "HostPort": "15201"}],
                                       "80/tcp": [{"HostIp": "", "HostPort": "18080"}]})
        cli = m.setup_container("b" * 64, "client")
        sp, cp, ip = srv["SandboxKey"], cli["SandboxKey"], srv["IPAddress"]

        def start(cmd):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            procs.append(p)
            return p
        start(ns_cmd(sp, ["iperf3", "-s", "-p", "5201"]))
        start(ns_cmd(sp, ["busybox", "httpd", "-f", "-p", "80", "-h", www]))
        start(["iperf3", "-s", "-p", "25201"])  # baseline on the namespace's loopback
        start(["busybox", "httpd", "-f", "-p", "28080", "-h", www])
        for path, port in ((sp, 5201), (sp, 80), (None, 25201), (None, 28080)):
            wait_listen(path, port)
        if args.docker_proxy:  # dockerd's userland proxy, as dockerd starts it
            for hport, cport in ((16201, 5201), (16080, 80)):
                # it reports readiness on fd 3, as dockerd expects
                start(["sh", "-c", 'exec "$@" 3>/dev/null', "sh", args.docker_proxy,
                       "-proto", "tcp", "-host-ip", "127.0.0.1",
                       "-host-port", str(hport), "-container-ip", ip,
                       "-container-port", str(cport)])
                wait_listen(None, hport)

        s = args.seconds
        results["throughput_gbit"] = {
            "container_to_container": iperf(cp, ip, 5201, s),
            "host_to_published_port": iperf(None, "127.0.0.1", 15201, s),
            "baseline_loopback": iperf(None, "127.0.0.1", 25201, s),
        }
        if args.docker_proxy:
            results["throughput_gbit"]["docker_proxy_to_container"] = \
                iperf(None, "127.0.0.1", 16201, s)
        n = args.requests
        results["connections_per_s"] = {
            "container_to_container": ab(cp, f"http://{ip}:80/index.html", n),
            "host_to_published_port": ab(None, "http://127.0.0.1:18080/index.html", n),
            "baseline_loopback": ab(None, "http://127.0.0.1:28080/index.html", n),
        }
        if args.docker_proxy:
            results["connections_per_s"]["docker_proxy_to_container"] = \
                ab(None, "http://127.0.0.1:16080/index.html", n)
        t0 = time.perf_counter()
        for i in range(args.setups):
            cid = f"{i + 16:064x}"
            m.setup_container(cid, f"c{i}", publish_all=True, exposed_ports={"80/tcp": {}})
            m.teardown_container(cid)
        results["setup_teardown_ms"] = (time.perf_counter() - t0) * 1000 / args.setups
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for cid in ("a" * 64, "b" * 64):
            m.teardown_container(cid)
        m.cleanup()
        m.close()
        ksys.setns(orig, ksys.CLONE_NEWNET)
        os.close(orig)
        nsmod.delete(nspath)
        shutil.rmtree(nsdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    t, c = results["throughput_gbit"], results["connections_per_s"]
    print(f"{'':32}{'skiff':>12}{'baseline':>12}{'ratio':>8}")
    for label, key in (("c2c throughput (Gbit/s)", "container_to_container"),
                       ("host->published (Gbit/s)", "host_to_published_port")):
        print(f"{label:32}{t[key]:12.2f}{t['baseline_loopback']:12.2f}"
              f"{t[key] / t['baseline_loopback']:8.2f}")
    for label, key in (("c2c connections/s", "container_to_container"),
                       ("host->published connections/s", "host_to_published_port")):
        print(f"{label:32}{c[key]:12.0f}{c['baseline_loopback']:12.0f}"
              f"{c[key] / c['baseline_loopback']:8.2f}")
    if "docker_proxy_to_container" in t:
        dt, dc = t["docker_proxy_to_container"], c["docker_proxy_to_container"]
        print(f"\n{'host->published, 127.0.0.1':32}{'skiff DNAT':>12}{'docker-proxy':>14}"
              f"{'ratio':>8}")
        print(f"{'  throughput (Gbit/s)':32}{t['host_to_published_port']:12.2f}{dt:14.2f}"
              f"{t['host_to_published_port'] / dt:8.2f}")
        print(f"{'  connections/s':32}{c['host_to_published_port']:12.0f}{dc:14.0f}"
              f"{c['host_to_published_port'] / dc:8.2f}")
    print(f"{'network setup+teardown (ms)':32}{results['setup_teardown_ms']:12.1f}")
    print("baseline: same server on the namespace's loopback (no bridge, no NAT)")


if __name__ == "__main__":
    main()
