"""The seed's networking scenario through the real docker CLI against a
skiffd that runs in this test's private "host" network namespace."""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from skiff.testing.images import make_busybox_archive

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="docker CLI not installed")

# the network layer is under test here, not the default seccomp profile
RUN = ["run", "--security-opt", "seccomp=unconfined"]


def fetch(url, wait=20):
    """GET ``url`` once the server in the container is up (it starts
    asynchronously after ``docker run -d``)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5).read().decode().strip()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def daemon(hostns):
    d = tempfile.mkdtemp(prefix="skn", dir="/tmp")  # short: unix socket paths below it
    # the daemon's own cgroup parent: made at its start, removed at its clean stop
    cgroup_parent = "skiff-net-" + os.path.basename(d)
    sock = os.path.join(d, "s.sock")
    with open(os.path.join(d, "daemon.json"), "w") as f:
        # upstream DNS only ever 127.0.0.1 of this namespace; no registry
        json.dump({"dns": ["127.0.0.1"], "default-registry": "127.0.0.1:1",
                   "cgroup-parent": cgroup_parent}, f)
    log = open(os.path.join(d, "log"), "w")
    procs = []

    def start():
        if os.path.exists(sock):
            os.unlink(sock)
        p = subprocess.Popen(["skiffd", "--config-file", os.path.join(d, "daemon.json"),
                              "--data-root", os.path.join(d, "data"),
                              "--exec-root", os.path.join(d, "r"), "-H", f"unix://{sock}"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert p.poll() is None and time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.1)
        return p

    def stop(p):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    env.pop("DOCKER_CONTEXT", None)

    def docker(*args, check=True, timeout=60):
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stdout}{r.stderr}")
        return r
    def restart():
        stop(procs[-1])
        start()
    try:
        start()
        archive = os.path.join(d, "busybox.tar")
        make_busybox_archive(archive)
        docker("load", "-i", archive)
        docker.dir = d
        docker.restart = restart
        yield docker
    finally:
        p = procs[-1] if procs else None
        if p is not None and p.poll() is None:
            r = docker("ps", "-aq", check=False)
            if r.stdout.split():
                docker("rm", "-f", *r.stdout.split(), check=False)
            stop(p)
        log.close()
        for parent in (glob.glob(f"/sys/fs/cgroup/*/{cgroup_parent}") +
                       glob.glob(f"/sys/fs/cgroup/{cgroup_parent}")):
            try:
                os.rmdir(parent)  # after a daemon that did not stop cleanly
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)


def test_seed_scenario_through_the_docker_cli(daemon):
    docker = daemon
    docker(*RUN, "-d", "--name", "c1", "busybox", "sleep", "300")
    c2 = docker(*RUN, "-d", "--name", "c2", "-p", "8080:80", "busybox",
                "httpd", "-f", "-p", "80", "-h", "/etc").stdout.strip()
    # exec C ip addr: lo 127.0.0.1/8 and eth0 in the bridge subnet
    out = docker("exec", "c1", "ip", "-4", "-o", "addr").stdout
    assert "lo    inet 127.0.0.1/8" in out or " lo " in out and "127.0.0.1/8" in out
    assert "eth0    inet 172.17.0." in out or ("eth0" in out and "inet 172.17.0." in out)
    # the host: skiff0 with one veth per container
    ports = subprocess.run(["ip", "-o", "link", "show", "master", "skiff0"],
                           capture_output=True, text=True).stdout.splitlines()
    assert len(ports) == 2
    # network inspect bridge lists both with their addresses
    info = json.loads(docker("network", "inspect", "bridge").stdout)[0]
    names = {c["Name"]: c["IPv4Address"] for c in info["Containers"].values()}
    assert set(names) == {"c1", "c2"} and all(a.startswith("172.17.0.") for a in names.values())
    ip2 = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "c2").stdout.strip()
    assert names["c2"] == ip2 + "/16"
    # two containers ping each other
    r = docker("exec", "c1", "ping", "-c", "1", "-W", "2", ip2)
    assert "1 packets received" in r.stdout
    # the published port serves a file to the host over its loopback
    assert fetch("http://127.0.0.1:8080/hostname") == c2[:12]
    assert docker("port", "c2").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    # a user network resolves names and aliases through the embedded DNS
    docker("network", "create", "appnet")
    docker(*RUN, "-d", "--network", "appnet", "--network-alias", "www", "--name", "web",
           "busybox", "sleep", "300")
    r = docker(*RUN, "--rm", "--network", "appnet", "busybox", "sh", "-c",
               "grep nameserver /etc/resolv.conf; ping -c1 -W2 web; ping -c1 -W2 www")
    assert "nameserver 127.0.0.11" in r.stdout and r.stdout.count("1 packets received") == 2
    r = docker("network", "rm", "appnet", check=False)
    assert r.returncode != 0 and "has active endpoints" in r.stderr
    docker("rm", "-f", "c1", "c2", "web")
    docker("network", "rm", "appnet")
    assert subprocess.run(["ip", "-o", "link", "show", "master", "skiff0"],
                          capture_output=True, text=True).stdout == ""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert "DNAT" not in rules


def test_30_containers_started_concurrently(daemon):
    from concurrent.futures import ThreadPoolExecutor
    docker = daemon
    names = [f"n{i:02d}" for i in range(30)]

    def run(name):
        return docker(*RUN, "-d", "--name", name, "-P", "--expose", "80", "busybox",
                      "sleep", "300", timeout=120).stdout.strip()
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(run, names))
    assert len(set(ids)) == 30
    ips = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}} {{json .NetworkSettings.Ports}}",
                 *names).stdout.splitlines()
    addrs = [line.split()[0] for line in ips]
    assert len(set(addrs)) == 30 and all(a.startswith("172.17.") for a in addrs)
    hostports = [json.loads(line.split(" ", 1)[1])["80/tcp"][0]["HostPort"] for line in ips]
    assert len(set(hostports)) == 30
    veths = subprocess.run(["ip", "-o", "link", "show", "master", "skiff0"],
                           capture_output=True, text=True).stdout.splitlines()
    assert len(veths) == 30
    assert subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                          text=True).stdout.count("DNAT") == 30
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda n: docker("rm", "-f", n, timeout=120), names))
    assert "veth" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                        text=True).stdout
    assert "DNAT" not in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                        text=True).stdout
    assert json.loads(docker("network", "inspect", "bridge").stdout)[0]["Containers"] == {}


def test_network_commands_through_the_docker_cli(daemon):
    docker = daemon
    nid = docker("network", "create", "--subnet", "10.9.0.0/24", "--gateway", "10.9.0.254",
                 "--ip-range", "10.9.0.128/25", "-o", "com.docker.network.bridge.name=br-skt",
                 "--label", "team=net", "--internal", "nw1").stdout.strip()
    info = json.loads(docker("network", "inspect", "nw1").stdout)[0]
    assert info["Id"] == nid and info["Internal"] is True and info["Labels"] == {"team": "net"}
    assert info["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/24", "IPRange": "10.9.0.128/25",
                                       "Gateway": "10.9.0.254"}]
    assert "br-skt" in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    ls = docker("network", "ls", "--filter", "label=team=net", "--format", "{{.Name}}").stdout
    assert ls.split() == ["nw1"]
    docker(*RUN, "-d", "--name", "c1", "--network", "nw1", "--ip", "10.9.0.200", "busybox",
           "sleep", "300")
    docker(*RUN, "-d", "--name", "c2", "busybox", "sleep", "300")
    docker("network", "connect", "--alias", "xx", "nw1", "c2")
    assert "eth1" in docker("exec", "c2", "ip", "-4", "-o", "addr").stdout
    ip2 = json.loads(docker("network", "inspect", "nw1").stdout)[0]["Containers"]
    assert {c["Name"] for c in ip2.values()} == {"c1", "c2"}
    r = docker("exec", "c1", "nslookup", "xx", "127.0.0.11")
    c2_ip = next(c["IPv4Address"] for c in ip2.values() if c["Name"] == "c2").split("/")[0]
    assert c2_ip.startswith("10.9.0.1") and c2_ip in r.stdout
    docker("network", "disconnect", "nw1", "c2")
    assert "eth1" not in docker("exec", "c2", "ip", "-4", "-o", "addr").stdout
    docker("network", "create", "unused")
    pruned = docker("network", "prune", "-f").stdout
    assert "unused" in pruned and "nw1" not in pruned
    r = docker("network", "rm", "bridge", check=False)
    assert r.returncode != 0 and "pre-defined network" in r.stderr
    docker("rm", "-f", "c1", "c2")
    docker("network", "rm", "nw1")
    assert "br-skt" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                          text=True).stdout


def test_running_containers_keep_their_network_across_a_daemon_restart(daemon):
    docker = daemon
    docker("network", "create", "appnet")
    web = docker(*RUN, "-d", "--name", "web", "--network", "appnet", "-p", "8080:80", "busybox",
                 "httpd", "-f", "-p", "80", "-h", "/etc").stdout.strip()
    docker(*RUN, "-d", "--name", "cli", "--network", "appnet", "busybox", "sleep", "300")
    docker.restart()
    assert docker("inspect", "-f", "{{.State.Running}}", "web", "cli").stdout.split() == \
        ["true", "true"]
    ip = docker("inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}",
                "web").stdout.strip()
    r = docker("exec", "cli", "nslookup", "web", "127.0.0.11")  # the DNS came back
    assert ip and ip in r.stdout
    assert fetch("http://127.0.0.1:8080/hostname") == web[:12]
