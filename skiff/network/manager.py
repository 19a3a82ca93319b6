"""NetworkManager: the seam the engine and the API call (docs/CONTRACTS.md).

Networks and endpoints live in SQLite (skiff.network.store); the kernel state
(bridges, veth pairs, namespaces, iptables chains) is derived from it and can
be rebuilt by ``restore()``. All work happens in the calling process's
current network namespace — the host's for skiffd; tests run the manager in a
namespace of their own.
"""

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import threading

from skiff import errors
from skiff.network import files, ipam, nat, netns, ports as portspec
from skiff.network.store import Store, endpoint_row, network_row

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PREDEFINED = ("bridge", "host", "none")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
OPT_MTU = "com.docker.network.driver.mtu"
DRIVERS = {"bridge": "bridge", "host": "host", "null": "null"}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def _truthy(v, default=True):
    if v is None or v == "":
        return default
    return str(v).lower() in ("1", "true", "yes", "on")


def _veth_name(container_id, network_id):
    return "veth" + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:10]


class NetworkManager:
    def __init__(self, state_dir, exec_root, config=None):
        config = config or {}
        self.state_dir = state_dir
        self.exec_root = exec_root
        self.netns_dir = os.path.join(exec_root, "netns")
        self.store = Store(state_dir)
        self.iptables = bool(config.get("iptables", True))
        self.ip_forward = bool(config.get("ip-forward", True))
        self.icc = bool(config.get("icc", True))
        self.bridge_name = config.get("bridge") or "skiff0"
        self.bip = config.get("bip")
        self.pools = config.get("default-address-pools") or ipam.DEFAULT_POOLS
        self.mtu = int(config.get("mtu") or 1500)
        self.dns_servers = list(config.get("dns") or [])
        self.resolv_path = config.get("resolv-conf") or "/etc/resolv.conf"
        self._lockfile = os.path.join(state_dir, "kernel.lock")
        self._tlock = threading.RLock()
        self._ipt = nat.Iptables()
        from skiff.network.dns import DNSServer
        self._ext_dns = {}  # container id -> its --dns servers (embedded DNS upstreams)
        self.dns = DNSServer(self._dns_lookup, self._dns_reverse,
                             upstreams=self._upstreams(),
                             forward=bool(config.get("dns-forward", True)),
                             upstreams_for=self._ext_dns.get)

    # ------------------------------------------------------------------
    # locking and lookup helpers
    @contextlib.contextmanager
    def _kernel_lock(self):
        """Serialises kernel changes (netlink + iptables) across threads and
        processes sharing this state dir."""
        with self._tlock:
            fd = os.open(self._lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _upstreams(self):
        if self.dns_servers:
            return self.dns_servers
        ns, _, _, _ = files.parse_resolv(self._host_resolv())
        return ns

    def _host_resolv(self):
        default = self.resolv_path == "/etc/resolv.conf"
        return files.read_host_resolv(self.resolv_path,
                                      files.SYSTEMD_RESOLVED_UPSTREAM if default else None)

    def _get(self, db, ref):
        row = db.execute("SELECT * FROM networks WHERE id=?", (ref,)).fetchone()
        if row is None:
            row = db.execute("SELECT * FROM networks WHERE name=?", (ref,)).fetchone()
        if row is None and ref:
            rows = db.execute("SELECT * FROM networks WHERE id LIKE ?",
                              (ref.replace("%", "").replace("_", "") + "%",)).fetchall()
            if len(rows) > 1:
                raise errors.InvalidArgument(
                    f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
            row = rows[0] if rows else None
        if row is None:
            raise errors.NotFound(f"network {ref} not found")
        return network_row(row)

    def get(self, ref):
        return self._get(self.store.read(), ref)

    def netns_path(self, container_id):
        return os.path.join(self.netns_dir, container_id)

    # ------------------------------------------------------------------
    # networks
    def _used_subnets(self, db, exclude_bridges=()):
        used = [ipaddress.ip_network(r["subnet"]) for r in
                db.execute("SELECT subnet FROM networks WHERE subnet IS NOT NULL")]
        try:
            from skiff.network import bridge
            used += bridge.host_routes(exclude_links=exclude_bridges)
        except OSError:
            pass
        return used

    def ensure_default(self):
        """The predefined networks (bridge, host, none) exist, and every
        bridge network's bridge and rules are in place."""
        with self.store.tx() as db:
            have = {r["name"] for r in db.execute("SELECT name FROM networks WHERE predefined=1")}
            if "bridge" not in have and self.bridge_name != "none":  # "bridge": "none" disables it
                bridges = [r["bridge"] for r in db.execute("SELECT bridge FROM networks")]
                if self.bip:
                    iface = ipaddress.ip_interface(self.bip)
                    subnet, gateway = iface.network, iface.ip
                else:
                    used = self._used_subnets(db, exclude_bridges=[self.bridge_name] + bridges)
                    first = ipaddress.ip_network("172.17.0.0/16")
                    subnet = first if not any(first.overlaps(u) for u in used) \
                        else ipam.pick_subnet(used, self.pools)
                    gateway = ipam.default_gateway(subnet)
                opts = {"com.docker.network.bridge.default_bridge": "true",
                        OPT_ICC: "true" if self.icc else "false",
                        OPT_MASQ: "true", OPT_HOST_IP: "0.0.0.0",
                        OPT_BRIDGE_NAME: self.bridge_name, OPT_MTU: str(self.mtu)}
                self._insert(db, "bridge", "bridge", str(subnet), str(gateway), None,
                             self.bridge_name, False, False, True, {}, opts)
            for name, driver in (("host", "host"), ("none", "null")):
                if name not in have:
                    self._insert(db, name, driver, None, None, None, None, False, False, True,
                                 {}, {})
        self._realize_all()

    def _insert(self, db, name, driver, subnet, gateway, ip_range, bridge, internal,
                attachable, predefined, labels, options):
        nid = secrets.token_hex(32)
        db.execute("INSERT INTO networks (id, name, driver, created, subnet, gateway, ip_range, "
                   "bridge, internal, attachable, predefined, labels, options) VALUES "
                   "(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (nid, name, driver, _now(), subnet, gateway, ip_range, bridge, int(internal),
                    int(attachable), int(predefined), json.dumps(labels), json.dumps(options)))
        return nid

    def _realize_all(self):
        from skiff.network import bridge
        with self._kernel_lock():
            for n in self._bridge_networks():
                net = ipaddress.ip_network(n["subnet"])
                bridge.ensure_bridge(n["bridge"], n["gateway"], net.prefixlen,
                                     int(n["options"].get(OPT_MTU) or self.mtu))
            self._sysctls()
            self._apply_rules_locked()

    def _sysctls(self):
        if self.ip_forward:
            nat.set_sysctl("net/ipv4/ip_forward", 1)
        if self.iptables:  # bridged traffic through FORWARD: icc=false and isolation work
            nat.set_sysctl("net/bridge/bridge-nf-call-iptables", 1)

    def _bridge_networks(self, db=None):
        db = db or self.store.read()
        return [network_row(r) for r in
                db.execute("SELECT * FROM networks WHERE driver='bridge' ORDER BY created, name")]

    def _apply_rules_locked(self):
        if not self.iptables:
            return
        db = self.store.read()
        nets = []
        for n in self._bridge_networks(db):
            nets.append({"bridge": n["bridge"], "subnet": n["subnet"], "internal": n["internal"],
                         "icc": _truthy(n["options"].get(OPT_ICC), True),
                         "masquerade": _truthy(n["options"].get(OPT_MASQ), True)})
        rows = db.execute("SELECT p.*, n.bridge FROM ports p JOIN networks n "
                          "ON p.network_id = n.id ORDER BY p.rowid").fetchall()
        row = db.execute("SELECT value FROM kv WHERE key='iptables'").fetchone()
        loaded = json.loads(row[0]) if row else {}
        digests = self._ipt.apply(nat.render(nets, [dict(r) for r in rows]), loaded)
        if digests != loaded:
            with self.store.tx() as tx:
                tx.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('iptables', ?)",
                           (json.dumps(digests),))

    def apply_rules(self):
        with self._kernel_lock():
            self._apply_rules_locked()

    def create(self, name, driver="bridge", subnet=None, gateway=None, ip_range=None,
               internal=False, labels=None, options=None, attachable=False,
               enable_ipv6=False, ipam_driver=None, ipam_options=None, check_duplicate=True):
        """``docker network create``: returns {"Id": ..., "Warning": ""}."""
        if not name or not NAME_RE.match(name):
            raise errors.InvalidArgument(
                f"invalid name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        driver = driver or "bridge"
        if driver in ("host", "null"):
            raise errors.PermissionDenied(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise errors.NotFound(f'plugin "{driver}" not found')
        if ipam_driver not in (None, "", "default"):
            raise errors.NotFound(f'plugin "{ipam_driver}" not found')
        if enable_ipv6:
            raise errors.InvalidArgument("IPv6 networks are not supported by skiff")
        if name in PREDEFINED:
            raise errors.PermissionDenied(f"operation is not permitted on predefined {name} network")
        options = {str(k): str(v) for k, v in (options or {}).items()}
        labels = dict(labels or {})
        if options.get(OPT_MTU):
            try:
                mtu = int(options[OPT_MTU])
                if not 68 <= mtu <= 65535:
                    raise ValueError
            except ValueError:
                raise errors.InvalidArgument(
                    f"invalid MTU {options[OPT_MTU]!r}: it must be an integer from 68 to "
                    f"65535") from None
        for key in (OPT_ICC, OPT_MASQ):
            if key in options and options[key].lower() not in ("true", "false", "1", "0"):
                raise errors.InvalidArgument(f"invalid value for {key}: {options[key]!r}")
        if (gateway or ip_range) and not subnet:
            raise errors.PermissionDenied("every ip-range or gateway must have a corresponding subnet")
        net = ipam.parse_subnet(subnet) if subnet else None
        gw = ipam.parse_ip(gateway, "gateway") if gateway else None
        rng = ipam.parse_subnet(ip_range) if ip_range else None
        if net is not None:
            if gw is not None and gw not in net:
                raise errors.PermissionDenied(f"no matching subnet for gateway {gateway}")
            if rng is not None and not rng.subnet_of(net):
                raise errors.PermissionDenied(f"no matching subnet for range {ip_range}")
            if net.prefixlen > 30:
                raise errors.InvalidArgument(f"invalid subnet {subnet}: too small for a network")
        with self.store.tx() as db:
            if db.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone():
                raise errors.Conflict(f"network with name {name} already exists")
            bridges = [r["bridge"] for r in db.execute("SELECT bridge FROM networks")]
            if net is None:
                net = ipam.pick_subnet(self._used_subnets(db, exclude_bridges=bridges), self.pools)
            else:
                for r in db.execute("SELECT subnet FROM networks WHERE subnet IS NOT NULL"):
                    if net.overlaps(ipaddress.ip_network(r["subnet"])):
                        raise errors.PermissionDenied(
                            "Pool overlaps with other one on this address space")
            gw = gw or ipam.default_gateway(net)
            nid = self._insert(db, name, "bridge", str(net), str(gw),
                               str(rng) if rng else None, None, internal, attachable, False,
                               labels, options)
            br = options.get(OPT_BRIDGE_NAME) or f"br-{nid[:12]}"
            if len(br) > 15 or not re.match(r"^[a-zA-Z0-9_.-]+$", br):
                raise errors.InvalidArgument(f"invalid bridge name {br!r}")
            if br in bridges:
                raise errors.Conflict(f"bridge name {br} is already in use by another network")
            db.execute("UPDATE networks SET bridge=? WHERE id=?", (br, nid))
        from skiff.network import bridge
        existed = bridge.link_exists(br)
        try:
            with self._kernel_lock():
                bridge.ensure_bridge(br, str(gw), net.prefixlen,
                                     int(options.get(OPT_MTU) or self.mtu))
                self._sysctls()
                self._apply_rules_locked()
        except BaseException:
            with self.store.tx() as db:
                db.execute("DELETE FROM networks WHERE id=?", (nid,))
            with self._kernel_lock():
                if not existed:
                    bridge.delete_bridge(br)
                try:
                    self._apply_rules_locked()
                except errors.SkiffError:
                    pass
            raise
        return {"Id": nid, "Warning": ""}

    def create_from_request(self, body):
        """POST /networks/create body (Docker's shape) → create(...)."""
        body = body or {}
        ipam_body = body.get("IPAM") or {}
        cfgs = ipam_body.get("Config") or []
        if len(cfgs) > 1:
            raise errors.InvalidArgument("skiff supports one IPAM config (one IPv4 subnet) "
                                         "per network")
        cfg = cfgs[0] if cfgs else {}
        return self.create(body.get("Name") or "", driver=body.get("Driver") or "bridge",
                           subnet=cfg.get("Subnet") or None, gateway=cfg.get("Gateway") or None,
                           ip_range=cfg.get("IPRange") or None,
                           internal=bool(body.get("Internal")), labels=body.get("Labels"),
                           options=body.get("Options"), attachable=bool(body.get("Attachable")),
                           enable_ipv6=bool(body.get("EnableIPv6")),
                           ipam_driver=ipam_body.get("Driver"),
                           ipam_options=ipam_body.get("Options"))

    def remove(self, ref):
        """``docker network rm``."""
        with self.store.tx() as db:
            n = self._get(db, ref)
            if n["predefined"]:
                raise errors.PermissionDenied(
                    f"{n['name']} is a pre-defined network and cannot be removed")
            eps = db.execute("SELECT container_id, container_name FROM endpoints WHERE "
                             "network_id=?", (n["id"],)).fetchall()
            if eps:
                desc = ", ".join(f'name:"{e["container_name"]}" id:"{e["container_id"][:12]}"'
                                 for e in eps)
                raise errors.PermissionDenied(
                    f"error while removing network: network {n['name']} has active endpoints "
                    f"({desc})")
            db.execute("DELETE FROM networks WHERE id=?", (n["id"],))
        from skiff.network import bridge
        with self._kernel_lock():
            self._apply_rules_locked()
            if n["bridge"]:
                bridge.delete_bridge(n["bridge"])
        return n["id"]

    def prune(self, filters=None):
        """``docker network prune``: user networks without endpoints."""
        deleted = []
        for n in self._filtered(filters, prune=True):
            if n["predefined"]:
                continue
            try:
                self.remove(n["id"])
                deleted.append(n["name"])
            except (errors.PermissionDenied, errors.NotFound):
                continue
        return {"NetworksDeleted": deleted}

    # ------------------------------------------------------------------
    # JSON
    def _filtered(self, filters, prune=False):
        filters = filters or {}
        if isinstance(filters, str):
            filters = json.loads(filters) if filters else {}
        norm = {}
        for k, v in filters.items():
            norm[k] = list(v.keys()) if isinstance(v, dict) else list(v)
        out = []
        for n in [network_row(r) for r in
                  self.store.read().execute("SELECT * FROM networks ORDER BY created, name")]:
            if "name" in norm and not any(re.search(p, n["name"]) for p in norm["name"]):
                continue
            if "id" in norm and not any(n["id"].startswith(p) for p in norm["id"]):
                continue
            if "driver" in norm and n["driver"] not in norm["driver"]:
                continue
            if "scope" in norm and "local" not in norm["scope"]:
                continue
            if "type" in norm:
                kind = "builtin" if n["predefined"] else "custom"
                if kind not in norm["type"]:
                    continue
            if "label" in norm and not all(self._label_match(n["labels"], l)
                                           for l in norm["label"]):
                continue
            if "label!" in norm and any(self._label_match(n["labels"], l)
                                        for l in norm["label!"]):
                continue
            if "until" in norm and not all(_parse_ts(n["created"]) <= _parse_ts(self._until(u))
                                           for u in norm["until"]):
                continue
            out.append(n)
        return out

    @staticmethod
    def _label_match(labels, expr):
        k, eq, v = expr.partition("=")
        return k in labels and (not eq or labels[k] == v)

    @staticmethod
    def _until(u):
        """until=<unix ts>|<RFC 3339>|<Go duration like 24h, 90m> → RFC 3339 (UTC)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        m = re.fullmatch(r"((?:\d+(?:\.\d+)?[hms])+)", u.strip())
        if m:
            secs = sum(float(v) * {"h": 3600, "m": 60, "s": 1}[unit]
                       for v, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", u))
            t = now - datetime.timedelta(seconds=secs)
        else:
            try:
                t = datetime.datetime.fromtimestamp(float(u), datetime.timezone.utc)
            except ValueError:
                try:
                    t = datetime.datetime.fromisoformat(u.replace("Z", "+00:00"))
                except ValueError:
                    raise errors.InvalidArgument(f"invalid filter 'until={u}'") from None
                if t.tzinfo is None:
                    t = t.replace(tzinfo=datetime.timezone.utc)
        return t.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")

    def _json(self, n, containers):
        ipam_cfg = []
        if n["subnet"]:
            c = {"Subnet": n["subnet"], "Gateway": n["gateway"]}
            if n["ip_range"]:
                c["IPRange"] = n["ip_range"]
            ipam_cfg.append(c)
        return {
            "Name": n["name"], "Id": n["id"], "Created": n["created"], "Scope": "local",
            "Driver": n["driver"], "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if n["predefined"] else {},
                     "Config": ipam_cfg},
            "Internal": n["internal"], "Attachable": n["attachable"], "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers, "Options": n["options"], "Labels": n["labels"],
        }

    def list_json(self, filters=None):
        """GET /networks (Containers is left empty, as Docker does)."""
        return [self._json(n, {}) for n in self._filtered(filters)]

    def inspect_json(self, ref, verbose=False):
        """GET /networks/{id}."""
        db = self.store.read()
        n = self._get(db, ref)
        containers = {}
        for e in db.execute("SELECT * FROM endpoints WHERE network_id=? ORDER BY seq",
                            (n["id"],)):
            plen = ipaddress.ip_network(n["subnet"]).prefixlen
            containers[e["container_id"]] = {
                "Name": e["container_name"], "EndpointID": e["id"], "MacAddress": e["mac"],
                "IPv4Address": f"{e['ip']}/{plen}", "IPv6Address": ""}
        if n["driver"] in ("host", "null"):
            mode = "host" if n["driver"] == "host" else "none"
            for s in db.execute("SELECT * FROM sandboxes WHERE mode=?", (mode,)):
                containers[s["container_id"]] = {"Name": s["name"], "EndpointID": "",
                                                 "MacAddress": "", "IPv4Address": "",
                                                 "IPv6Address": ""}
        return self._json(n, containers)

    # ------------------------------------------------------------------
    # containers
    @staticmethod
    def _parse_networks(networks):
        """str mode | {name: EndpointSettings} | [names] → (mode, [(name, cfg)])."""
        if networks is None or networks == "" or networks == "default":
            return "bridge", [("bridge", {})]
        if isinstance(networks, str):
            if networks in ("host", "none") or networks.startswith("container:"):
                return networks, []
            return networks, [(networks, {})]
        if isinstance(networks, dict):
            items = [(k, dict(v or {})) for k, v in networks.items()]
        else:
            items = [(k, {}) for k in networks]
        # NetworkMode "default" is the default bridge (Docker on Linux)
        items = [("bridge" if k == "default" else k, v) for k, v in items]
        if not items:
            return "bridge", [("bridge", {})]
        first = items[0][0]
        if first in ("host", "none") or first.startswith("container:"):
            if len(items) > 1:
                raise errors.InvalidArgument(
                    "Container cannot be connected to network endpoints: "
                    + ", ".join(k for k, _ in items))
            return first, []
        return first, items

    @staticmethod
    def _endpoint_cfg(cfg):
        ip = cfg.get("ip") or (cfg.get("IPAMConfig") or {}).get("IPv4Address") or None
        aliases = list(cfg.get("aliases") or cfg.get("Aliases") or [])
        return ip, aliases

    def netns_for_mode(self, mode):
        """Path of the namespace a container with network mode ``mode`` must
        join: None for host, the other container's for container:<id>."""
        if mode == "host":
            return None
        if mode.startswith("container:"):
            other = mode.split(":", 1)[1]
            row = self.store.read().execute(
                "SELECT netns FROM sandboxes WHERE container_id=? OR name=? OR "
                "container_id LIKE ?", (other, other.lstrip("/"), other + "%")).fetchone()
            if row is None or not row["netns"]:
                raise errors.Conflict(f"cannot join network namespace of a non running "
                                      f"container: {other}")
            return row["netns"]
        return None

    def setup_container(self, container_id, name, netns_path=None, networks=None, ports=None,
                        *, publish_all=False, exposed_ports=None, hostname=None):
        """Give a container its network: namespace (created here when it does
        not exist yet), one veth/endpoint per network, published ports.
        Returns the NetworkSettings dict of container inspect. On failure
        nothing is left behind."""
        name = name.lstrip("/")
        mode, nets = self._parse_networks(networks)
        if self.store.read().execute("SELECT 1 FROM sandboxes WHERE container_id=?",
                                     (container_id,)).fetchone():
            # left over from a start that never got its teardown (a crash)
            self.teardown_container(container_id)
        if mode == "host" or mode.startswith("container:"):
            path = self.netns_for_mode(mode)
            with self.store.tx() as db:
                db.execute("INSERT OR REPLACE INTO sandboxes (container_id, name, netns, mode, "
                           "hostname, ports) VALUES (?,?,?,?,?,?)",
                           (container_id, name, path, mode, hostname, "{}"))
            return self.network_settings(container_id)
        # resolve every network before touching the kernel
        db = self.store.read()
        resolved = [(self._get(db, ref), cfg) for ref, cfg in nets]
        for n, _ in resolved:
            if n["driver"] == "host":
                raise errors.InvalidArgument(
                    "container cannot be disconnected from host network or connected to host network")
        reqs = portspec.requests(ports, publish_all, exposed_ports) if nets else []
        path = netns_path or self.netns_path(container_id)
        own_ns = not netns.is_netns(path)
        if own_ns:
            netns.create(path)
        try:
            with self.store.tx() as db:
                db.execute("INSERT OR REPLACE INTO sandboxes (container_id, name, netns, mode, "
                           "hostname, ports) VALUES (?,?,?,?,?,?)",
                           (container_id, name, path, mode, hostname,
                            json.dumps({"exposed": exposed_ports or {}})))
            from skiff.network import bridge
            netns.run_in_netns(path, bridge._container_side_lo)
            first = True
            for n, cfg in resolved:
                if n["driver"] == "null":
                    if len(resolved) > 1:
                        raise errors.InvalidArgument(
                            "container cannot be connected to multiple networks with one of the "
                            "networks in private (none) mode")
                    continue
                ip, aliases = self._endpoint_cfg(cfg)
                # an --internal network gives no default route (no way out)
                self._add_endpoint(container_id, name, path, n, ip, aliases,
                                   default_route=first and not n["internal"],
                                   mac=self._mac_cfg(cfg))
                if not n["internal"]:
                    first = False
            if reqs:
                self._publish(container_id, resolved, reqs)
        except BaseException:
            self.teardown_container(container_id)
            raise
        return self.network_settings(container_id)

    @staticmethod
    def _mac_cfg(cfg):
        mac = cfg.get("MacAddress") or None
        if mac and not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", mac):
            raise errors.InvalidArgument(f"invalid MAC address: {mac}")
        return mac.lower() if mac else None

    def _add_endpoint(self, container_id, name, path, n, ip, aliases, default_route, mac=None):
        from skiff.network import bridge
        subnet = ipaddress.ip_network(n["subnet"])
        gw = ipaddress.ip_address(n["gateway"])
        rng = ipaddress.ip_network(n["ip_range"]) if n["ip_range"] else None
        if ip and n["predefined"]:
            raise errors.InvalidArgument(
                "user specified IP address is supported on user defined networks only")
        if aliases and n["predefined"]:
            raise errors.InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks")
        requested = ipam.parse_ip(ip) if ip else None
        with self.store.tx() as db:
            if db.execute("SELECT 1 FROM endpoints WHERE network_id=? AND container_id=?",
                          (n["id"], container_id)).fetchone():
                raise errors.PermissionDenied(
                    f"endpoint with name {name} already exists in network {n['name']}")
            used = {ipaddress.ip_address(r["ip"]) for r in
                    db.execute("SELECT ip FROM endpoints WHERE network_id=?", (n["id"],))}
            addr = ipam.allocate(subnet, rng, gw, used, requested)
            count = db.execute("SELECT COUNT(*) FROM endpoints WHERE container_id=?",
                               (container_id,)).fetchone()[0]
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM endpoints").fetchone()[0]
            eid = secrets.token_hex(32)
            veth = _veth_name(container_id, n["id"])
            ifname = f"eth{count}"
            mac = mac or ipam.mac_for(addr)
            db.execute("INSERT INTO endpoints (id, network_id, container_id, container_name, "
                       "ifname, host_veth, ip, mac, aliases, ipam_ip, seq) VALUES "
                       "(?,?,?,?,?,?,?,?,?,?,?)",
                       (eid, n["id"], container_id, name, ifname, veth, str(addr), mac,
                        json.dumps(aliases), ip, seq))
        try:
            with self._kernel_lock():
                bridge.attach(path, n["bridge"], veth, ifname, str(addr), subnet.prefixlen, mac,
                              str(gw), default_route=default_route,
                              mtu=int(n["options"].get(OPT_MTU) or self.mtu))
            if not n["predefined"]:
                self.dns.start()
                self.dns.add_container(container_id, path)
        except BaseException:
            with self.store.tx() as db:
                db.execute("DELETE FROM endpoints WHERE id=?", (eid,))
            with self._kernel_lock():
                bridge.detach(path, veth, ifname)
            raise
        return eid

    def _publish(self, container_id, resolved, reqs):
        """Allocate host ports (unique per proto and host address across
        every container) and load the DNAT rules."""
        db = self.store.read()
        ep = None
        for n, _ in resolved:
            ep = db.execute("SELECT e.*, n.bridge FROM endpoints e JOIN networks n ON "
                            "e.network_id=n.id WHERE e.container_id=? AND n.id=?",
                            (container_id, n["id"])).fetchone()
            if ep:
                break
        if ep is None:
            return
        lo_e, hi_e = self._ephemeral_range()
        with self.store.tx() as db:
            for proto, cport, hip, lo, hi in reqs:
                taken = {(r["host_ip"], r["host_port"]) for r in
                         db.execute("SELECT host_ip, host_port FROM ports WHERE proto=?", (proto,))}

                def free(p, hip=hip, taken=taken, proto=proto):
                    for tip, tport in taken:
                        if tport == p and (tip == hip or "0.0.0.0" in (tip, hip)):
                            return False
                    return True
                if lo == 0:
                    cands = range(lo_e, hi_e + 1)
                else:
                    cands = range(lo, hi + 1)
                chosen = None
                for p in cands:
                    if free(p) and self._bindable(proto, hip, p):
                        chosen = p
                        break
                if chosen is None and lo and lo == hi and free(lo):
                    # a process of the host holds it (Docker's userland-proxy wording)
                    raise errors.Internal(
                        f"driver failed programming external connectivity on endpoint "
                        f"{ep['container_name']} ({ep['id']}): failed to bind port "
                        f"{hip}:{lo}/{proto}: Error starting userland proxy: listen {proto}4 "
                        f"{hip}:{lo}: bind: address already in use")
                if chosen is None:
                    what = f"{hip}:{lo}" if lo == hi else f"{hip}:{lo}-{hi}" if lo else hip
                    raise errors.Internal(
                        f"driver failed programming external connectivity on endpoint "
                        f"{ep['container_name']} ({ep['id']}): Bind for {what} failed: "
                        f"port is already allocated")
                taken.add((hip, chosen))
                db.execute("INSERT INTO ports (container_id, network_id, proto, host_ip, "
                           "host_port, container_ip, container_port) VALUES (?,?,?,?,?,?,?)",
                           (container_id, ep["network_id"], proto, hip, chosen, ep["ip"], cport))
        self.apply_rules()

    @staticmethod
    def _ephemeral_range():
        v = nat.get_sysctl("net/ipv4/ip_local_port_range")
        try:
            lo, hi = (int(x) for x in v.split())
            return lo, hi
        except (AttributeError, ValueError):
            return 49153, 65535

    @staticmethod
    def _bindable(proto, hip, port):
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        if proto == "sctp":
            return True
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((hip, port))
                return True
            except OSError:
                return False

    def connect(self, container_id, network, ip=None, aliases=()):
        """``docker network connect`` for a running container (one that went
        through setup_container); a stopped container's networks are kept by
        the engine and passed to setup_container at start."""
        db = self.store.read()
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        n = self._get(db, network)
        if sb is None:
            raise errors.Conflict(f"container {container_id} is not running")
        if sb["mode"] == "host" or n["driver"] == "host":
            raise errors.PermissionDenied(
                "container cannot be disconnected from host network or connected to host network")
        if sb["mode"] == "none" or n["driver"] == "null" or sb["mode"].startswith("container:"):
            raise errors.PermissionDenied(
                "container cannot be connected to multiple networks with one of the networks in "
                "private (none) mode")
        first = db.execute("SELECT COUNT(*) FROM endpoints e JOIN networks n ON "
                           "e.network_id=n.id WHERE e.container_id=? AND n.internal=0",
                           (container_id,)).fetchone()[0] == 0 and not n["internal"]
        self._add_endpoint(container_id, sb["name"], sb["netns"], n, ip, list(aliases or ()),
                           default_route=first)
        return self.network_settings(container_id)["Networks"][n["name"]]

    def disconnect(self, container_id, network, force=False):
        """``docker network disconnect``."""
        from skiff.network import bridge
        db = self.store.read()
        n = self._get(db, network)
        if n["driver"] == "host":
            raise errors.PermissionDenied(
                "container cannot be disconnected from host network or connected to host network")
        ep = db.execute("SELECT * FROM endpoints WHERE network_id=? AND container_id=?",
                        (n["id"], container_id)).fetchone()
        if ep is None:
            raise errors.Internal(
                f"container {container_id} is not connected to network {n['name']}")
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        with self.store.tx() as db:
            db.execute("DELETE FROM ports WHERE container_id=? AND network_id=?",
                       (container_id, n["id"]))
            db.execute("DELETE FROM endpoints WHERE id=?", (ep["id"],))
        with self._kernel_lock():
            self._apply_rules_locked()
            bridge.detach(sb["netns"] if sb else None, ep["host_veth"], ep["ifname"])
        if not self._has_user_endpoints(container_id):
            self.dns.remove_container(container_id)

    def _has_user_endpoints(self, container_id):
        return self.store.read().execute(
            "SELECT 1 FROM endpoints e JOIN networks n ON e.network_id=n.id WHERE "
            "e.container_id=? AND n.predefined=0", (container_id,)).fetchone() is not None

    def teardown_container(self, container_id):
        """Undo setup_container: DNAT rules, veth pairs, addresses, DNS
        sockets, and the namespace mount when skiff created it."""
        from skiff.network import bridge
        db = self.store.read()
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        eps = [endpoint_row(r) for r in
               db.execute("SELECT * FROM endpoints WHERE container_id=?", (container_id,))]
        had_ports = db.execute("SELECT 1 FROM ports WHERE container_id=?",
                               (container_id,)).fetchone() is not None
        self.dns.remove_container(container_id)
        self._ext_dns.pop(container_id, None)
        with self.store.tx() as db:
            db.execute("DELETE FROM ports WHERE container_id=?", (container_id,))
            db.execute("DELETE FROM endpoints WHERE container_id=?", (container_id,))
            db.execute("DELETE FROM sandboxes WHERE container_id=?", (container_id,))
        path = sb["netns"] if sb else self.netns_path(container_id)
        with self._kernel_lock():
            if had_ports:
                self._apply_rules_locked()
            for e in eps:
                bridge.detach(None, e["host_veth"], e["ifname"])
        if path and (sb is None or not sb["mode"].startswith("container:")) \
                and os.path.dirname(path) == self.netns_dir:
            netns.delete(path)

    # ------------------------------------------------------------------
    # NetworkSettings, hosts, resolv.conf
    def _endpoint_json(self, e, n):
        plen = ipaddress.ip_network(n["subnet"]).prefixlen if n["subnet"] else 0
        user = not n["predefined"]
        dns_names = None
        if user:
            dns_names = [e["container_name"], e["container_id"][:12]] + \
                [a for a in e["aliases"] if a]
        return {
            "IPAMConfig": {"IPv4Address": e["ipam_ip"]} if e["ipam_ip"] else None,
            "Links": None, "Aliases": e["aliases"] or None, "MacAddress": e["mac"],
            "DriverOpts": None, "GwPriority": 0, "NetworkID": n["id"], "EndpointID": e["id"],
            "Gateway": n["gateway"] or "", "IPAddress": e["ip"], "IPPrefixLen": plen,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": dns_names,
        }

    @staticmethod
    def _empty_endpoint(n):
        return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                "DriverOpts": None, "GwPriority": 0, "NetworkID": n["id"], "EndpointID": "",
                "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}

    def network_settings(self, container_id, networks=None):
        """NetworkSettings of ``docker inspect`` for a container. For a
        container whose network is not set up (created or exited), pass the
        ``networks`` it is configured with (mode string or EndpointsConfig
        dict): they are listed with empty addresses, as Docker does."""
        db = self.store.read()
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        if sb is None and networks is not None:
            out = self.network_settings(container_id)
            mode, nets = self._parse_networks(networks)
            names = [mode] if mode in ("host", "none") else [k for k, _ in nets]
            for ref in names:
                try:
                    n = self._get(db, ref)
                except errors.NotFound:
                    continue
                ep = self._empty_endpoint(n)
                cfg = dict(nets).get(ref) or {} if nets else {}
                ip, aliases = self._endpoint_cfg(cfg)
                if ip:
                    ep["IPAMConfig"] = {"IPv4Address": ip}
                ep["Aliases"] = aliases or None
                out["Networks"][n["name"]] = ep
            return out
        out = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
               "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
               "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
               "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
               "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
               "MacAddress": "", "Networks": {}}
        if sb is None:
            return out
        out["SandboxID"] = hashlib.sha256(container_id.encode()).hexdigest()
        out["SandboxKey"] = sb["netns"] or ""
        mode = sb["mode"]
        if mode == "host":
            n = self._get(db, "host")
            out["Networks"]["host"] = self._empty_endpoint(n)
            return out
        if mode.startswith("container:"):
            return out
        if mode == "none":
            n = self._get(db, "none")
            out["Networks"]["none"] = self._empty_endpoint(n)
        for r in db.execute("SELECT * FROM endpoints WHERE container_id=? ORDER BY seq",
                            (container_id,)):
            e = endpoint_row(r)
            n = self._get(db, e["network_id"])
            ej = self._endpoint_json(e, n)
            out["Networks"][n["name"]] = ej
            if n["name"] == "bridge":
                for k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
                    out[k] = ej[k]
        rows = db.execute("SELECT * FROM ports WHERE container_id=? ORDER BY rowid",
                          (container_id,)).fetchall()
        exposed = json.loads(sb["ports"] or "{}").get("exposed") or {}
        out["Ports"] = portspec.ports_map(exposed, rows)
        return out

    def port_bindings(self, container_id):
        """[(container_port, proto, host_ip, host_port)] for ``docker port``."""
        return [(r["container_port"], r["proto"], r["host_ip"], r["host_port"]) for r in
                self.store.read().execute("SELECT * FROM ports WHERE container_id=? ORDER BY "
                                          "rowid", (container_id,))]

    def hosts_file(self, container_id, hostname=None, domainname=None, extra_hosts=()):
        """Text of the container's /etc/hosts (the host's own for --network host)."""
        db = self.store.read()
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        if sb is not None and sb["mode"] == "host":
            try:
                with open("/etc/hosts") as f:
                    return f.read()
            except OSError:
                return files.HOSTS_HEADER
        hostname = hostname or (sb["hostname"] if sb else None) or container_id[:12]
        names = [f"{hostname}.{domainname}", hostname] if domainname else [hostname]
        entries = []
        for r in db.execute("SELECT ip FROM endpoints WHERE container_id=? ORDER BY seq",
                            (container_id,)):
            entries.append((r["ip"], names))
        return files.hosts(entries, extra_hosts)

    def resolv_conf(self, container_id, dns=None, dns_search=None, dns_options=None):
        """Text of the container's /etc/resolv.conf (Docker's rules)."""
        host_text = self._host_resolv()
        db = self.store.read()
        sb = db.execute("SELECT * FROM sandboxes WHERE container_id=?", (container_id,)).fetchone()
        if sb is not None and sb["mode"] == "host" and not (dns or dns_search or dns_options):
            return host_text
        internal = self._has_user_endpoints(container_id)
        if dns:
            self._ext_dns[container_id] = list(dns)
        return files.resolv(host_text, internal, dns or self.dns_servers or None,
                            dns_search, dns_options)

    # ------------------------------------------------------------------
    # embedded DNS
    def _dns_lookup(self, container_id, name):
        db = self.store.read()
        nets = [r["network_id"] for r in db.execute(
            "SELECT e.network_id FROM endpoints e JOIN networks n ON e.network_id=n.id "
            "WHERE e.container_id=? AND n.predefined=0", (container_id,))]
        if not nets:
            return None
        ips = []
        marks = ",".join("?" * len(nets))
        for r in db.execute(f"SELECT * FROM endpoints WHERE network_id IN ({marks}) ORDER BY seq",
                            nets):
            aliases = [a.lower() for a in json.loads(r["aliases"])]
            if name == r["container_name"].lower() or name in aliases or \
                    (len(name) >= 12 and r["container_id"].startswith(name)):
                if r["ip"] not in ips:
                    ips.append(r["ip"])
        return ips or None

    def _dns_reverse(self, container_id, ip):
        db = self.store.read()
        row = db.execute(
            "SELECT e.container_name, n.name FROM endpoints e JOIN networks n ON "
            "e.network_id=n.id WHERE e.ip=? AND n.predefined=0 AND e.network_id IN "
            "(SELECT network_id FROM endpoints WHERE container_id=?)",
            (ip, container_id)).fetchone()
        return f"{row[0]}.{row[1]}" if row else None

    def start(self):
        """Daemon start hook: serve the embedded DNS."""
        self.dns.start()

    def stop(self):
        """Daemon stop hook."""
        self.dns.stop()

    # ------------------------------------------------------------------
    # daemon restart / shutdown
    def restore(self, running=None):
        """After a daemon restart: rebuild bridges and rules from the
        database, tear down containers that are gone (``running``: the ids
        still alive, when the engine knows them), reopen DNS sockets."""
        self.ensure_default()
        db = self.store.read()
        for sb in db.execute("SELECT * FROM sandboxes").fetchall():
            cid = sb["container_id"]
            alive = running is None or cid in running
            if sb["mode"] not in ("host",) and not sb["mode"].startswith("container:"):
                alive = alive and bool(sb["netns"]) and netns.is_netns(sb["netns"])
            if not alive:
                self.teardown_container(cid)
            elif self._has_user_endpoints(cid):
                self.dns.start()
                self.dns.add_container(cid, sb["netns"], fresh=False)

    def cleanup(self):
        """Daemon shutdown: stop DNS; when no container is left, remove
        skiff's chains, hooks and bridges (ensure_default brings them back)."""
        from skiff.network import bridge
        self.dns.stop()
        db = self.store.read()
        if db.execute("SELECT 1 FROM endpoints LIMIT 1").fetchone():
            return False
        with self._kernel_lock():
            if self.iptables:
                self._ipt.remove_all()
                with self.store.tx() as tx:
                    tx.execute("DELETE FROM kv WHERE key='iptables'")
            for n in self._bridge_networks(db):
                bridge.delete_bridge(n["bridge"])
        return True

    def close(self):
        self.dns.stop()
        self.store.close()
