"""The embedded DNS server of user-defined networks (Docker's 127.0.0.11).

For every container on a user-defined network, a UDP and a TCP socket are
opened *inside the container's network namespace* on 127.0.0.11 and a free
port (from a helper thread that setns()es there; a socket keeps its
namespace), and nat rules in that namespace send 127.0.0.11:53 to them — port
53 itself stays free for a DNS server of the container's own, as with Docker. One
selector thread of skiffd serves all of them. A query is answered from the
networks of the container it arrived from: container names, aliases and
short IDs of the containers on the same networks. Other names are forwarded
to the upstream servers (from the daemon's namespace) or answered SERVFAIL
when there are none.
"""

import ipaddress
import os
import selectors
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

from skiff.network import netns

ADDRESS = "127.0.0.11"
TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4
TTL = 600


def parse_query(msg):
    """(id, flags, qname, qtype, qclass, end_of_question) of a query."""
    if len(msg) < 12:
        raise ValueError("short message")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        raise ValueError("one question expected")
    pos, labels = 12, []
    while True:
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            raise ValueError("compressed question")
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return qid, flags, ".".join(labels), qtype, qclass, pos + 4


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("ascii", "replace")[:63]
            out += bytes([len(b)]) + b
    return out + b"\0"


def build_response(msg, rcode, answers=(), qtype=TYPE_A):
    """Response to query ``msg`` with ``answers`` (IPv4 strings for A, names
    for PTR)."""
    qid, flags, _qname, _qt, _qc, qend = parse_query(msg)
    rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + msg[12:qend]
    for a in answers:
        if qtype == TYPE_A:
            rdata = ipaddress.ip_address(a).packed
        else:
            rdata = encode_name(a)
        out += struct.pack("!HHHIH", 0xC00C, qtype, 1, TTL, len(rdata)) + rdata
    return out


def error_response(msg, rcode):
    try:
        return build_response(msg, rcode)
    except (ValueError, IndexError, struct.error):
        if len(msg) >= 2:
            return msg[:2] + struct.pack("!HHHHH", 0x8000 | rcode, 0, 0, 0, 0)
        return None


IPTABLES_RESTORE = "iptables-restore"
IPTABLES = "iptables"


HOOKS = (("OUTPUT", ["-d", f"{ADDRESS}/32", "-j", "SKIFF_DNS_OUTPUT"]),
         ("POSTROUTING", ["-d", f"{ADDRESS}/32", "-j", "SKIFF_DNS_POSTROUTING"]))


def redirect_rules(udp_port, tcp_port, hooks=False):
    """nat rules inside a container namespace: 127.0.0.11:53 → the server's
    ports, and replies rewritten back to :53 (Docker's DOCKER_OUTPUT and
    DOCKER_POSTROUTING)."""
    return "\n".join([
        "*nat",
        ":SKIFF_DNS_OUTPUT - [0:0]",
        ":SKIFF_DNS_POSTROUTING - [0:0]",
        f"-A SKIFF_DNS_OUTPUT -d {ADDRESS}/32 -p udp -m udp --dport 53 "
        f"-j DNAT --to-destination {ADDRESS}:{udp_port}",
        f"-A SKIFF_DNS_OUTPUT -d {ADDRESS}/32 -p tcp -m tcp --dport 53 "
        f"-j DNAT --to-destination {ADDRESS}:{tcp_port}",
        f"-A SKIFF_DNS_POSTROUTING -s {ADDRESS}/32 -p udp -m udp --sport {udp_port} "
        f"-j SNAT --to-source :53",
        f"-A SKIFF_DNS_POSTROUTING -s {ADDRESS}/32 -p tcp -m tcp --sport {tcp_port} "
        f"-j SNAT --to-source :53",
    ] + ([f"-A {chain} {' '.join(rule)}" for chain, rule in HOOKS] if hooks else []) + [
        "COMMIT", ""])


def redirect(netns_path, udp_port, tcp_port, fresh=True):
    """Load the redirect rules in the namespace (replacing older ones, e.g.
    from before a daemon restart) and hook them once: in the same load for a
    ``fresh`` namespace, else after a check."""
    import subprocess
    enter = ["nsenter", f"--net={netns_path}"]
    r = subprocess.run(enter + [IPTABLES_RESTORE, "-w", "5", "--noflush"],
                       input=redirect_rules(udp_port, tcp_port, hooks=fresh),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"embedded DNS rules in {netns_path}: {r.stderr.strip()}")
    if fresh:
        return
    for chain, rule in HOOKS:
        if subprocess.run(enter + [IPTABLES, "-w", "5", "-t", "nat", "-C", chain] + rule,
                          capture_output=True).returncode != 0:
            subprocess.run(enter + [IPTABLES, "-w", "5", "-t", "nat", "-A", chain] + rule,
                           capture_output=True, check=True)


class DNSServer:
    """``lookup(container_id, name) -> list[str] | None`` (None: not ours),
    ``reverse(container_id, ip) -> str | None``."""

    def __init__(self, lookup, reverse=None, upstreams=(), forward=True, upstreams_for=None):
        self.lookup = lookup
        self.reverse = reverse
        self.upstreams = [u for u in upstreams if u]
        self.upstreams_for = upstreams_for  # container id -> its own servers (--dns) or None
        self.forward = forward
        self._sel = None
        self._thread = None
        self._lock = threading.Lock()
        self._socks = {}  # container_id -> [udp, tcp]
        self._wake_r = self._wake_w = None
        self._pool = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------
    def start(self):
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._sel = selectors.DefaultSelector()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="skiff-dns")
            self._thread = threading.Thread(target=self._serve, name="skiff-dns", daemon=True)
            self._thread.start()

    def stop(self):
        with self._lock:
            if self._thread is None:
                return
            self._stopping = True
            os.write(self._wake_w, b"x")
            thread = self._thread
        thread.join(5)
        with self._lock:
            for cid in list(self._socks):
                for s in self._socks.pop(cid):
                    s.close()
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._pool.shutdown(wait=False)
            self._thread = None

    @property
    def running(self):
        return self._thread is not None

    def containers(self):
        with self._lock:
            return set(self._socks)

    # -- sockets in container namespaces ---------------------------------
    def add_container(self, container_id, netns_path, fresh=True):
        """Serve the container whose namespace is at ``netns_path``;
        ``fresh``: nothing of an earlier daemon is in that namespace."""
        if container_id in self._socks:
            return

        def open_sockets():
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                for s in (udp, tcp):
                    s.bind((ADDRESS, 0))  # a free port: port 53 stays the container's
                    s.setblocking(False)
                tcp.listen(16)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            return udp, tcp

        udp, tcp = netns.run_in_netns(netns_path, open_sockets)
        try:
            redirect(netns_path, udp.getsockname()[1], tcp.getsockname()[1], fresh)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        with self._lock:
            self._socks[container_id] = [udp, tcp]
            self._sel.register(udp, selectors.EVENT_READ, ("udp", container_id))
            self._sel.register(tcp, selectors.EVENT_READ, ("tcp", container_id))

    def remove_container(self, container_id):
        with self._lock:
            socks = self._socks.pop(container_id, [])
            for s in socks:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    # -- serving ---------------------------------------------------------
    def _serve(self):
        while not self._stopping:
            for key, _ in self._sel.select(1.0):
                kind, cid = key.data
                if kind == "wake":
                    try:
                        os.read(self._wake_r, 64)
                    except BlockingIOError:
                        pass
                    continue
                sock = key.fileobj
                try:
                    if kind == "udp":
                        msg, peer = sock.recvfrom(4096)
                        self._answer(cid, msg, lambda r, s=sock, p=peer: s.sendto(r, p))
                    else:
                        conn, _ = sock.accept()
                        self._pool.submit(self._tcp_conn, cid, conn)
                except OSError:
                    continue

    def _tcp_conn(self, cid, conn):
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    hdr = conn.recv(2)
                    if len(hdr) < 2:
                        return
                    n = struct.unpack("!H", hdr)[0]
                    msg = b""
                    while len(msg) < n:
                        chunk = conn.recv(n - len(msg))
                        if not chunk:
                            return
                        msg += chunk
                    done = threading.Event()
                    box = []
                    self._answer(cid, msg, lambda r: (box.append(r), done.set()), tcp=True)
                    done.wait(6)
                    if not box or box[0] is None:
                        return
                    conn.sendall(struct.pack("!H", len(box[0])) + box[0])
            except OSError:
                return

    def _answer(self, cid, msg, reply, tcp=False):
        try:
            _qid, flags, qname, qtype, qclass, _ = parse_query(msg)
        except (ValueError, IndexError, struct.error):
            r = error_response(msg, FORMERR)
            if r:
                reply(r)
            return
        if flags & 0x7800:  # not a standard query
            reply(error_response(msg, NOTIMP))
            return
        name = qname.rstrip(".").lower()
        ips = None
        if qclass == 1 and qtype in (TYPE_A, TYPE_AAAA):
            ips = self.lookup(cid, name)
        elif qclass == 1 and qtype == TYPE_PTR and self.reverse and name.endswith(".in-addr.arpa"):
            parts = name[:-len(".in-addr.arpa")].split(".")
            if len(parts) == 4:
                target = self.reverse(cid, ".".join(reversed(parts)))
                if target:
                    reply(build_response(msg, NOERROR, [target], TYPE_PTR))
                    return
        if ips is not None:
            if qtype == TYPE_A:
                reply(build_response(msg, NOERROR, ips, TYPE_A))
            else:  # the name exists, without IPv6 addresses
                reply(build_response(msg, NOERROR, [], qtype))
            return
        servers = (self.upstreams_for(cid) if self.upstreams_for else None) or self.upstreams
        if self.forward and servers:
            self._pool.submit(self._forward, msg, reply, tcp, servers)
        else:
            reply(error_response(msg, SERVFAIL))

    def _forward(self, msg, reply, tcp, servers):
        for server in servers:
            try:
                if tcp:
                    with socket.create_connection((server, 53), timeout=2) as s:
                        s.sendall(struct.pack("!H", len(msg)) + msg)
                        n = struct.unpack("!H", s.recv(2))[0]
                        data = b""
                        while len(data) < n:
                            chunk = s.recv(n - len(data))
                            if not chunk:
                                break
                            data += chunk
                else:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.settimeout(2)
                        # connected: answers from elsewhere are dropped, and an
                        # unreachable server fails at once (ECONNREFUSED)
                        s.connect((server, 53))
                        s.send(msg)
                        data = s.recv(65535)
                if data[:2] == msg[:2]:
                    reply(data)
                    return
            except OSError:
                continue
        reply(error_response(msg, SERVFAIL))
