"""Port publishing specs: ``-p [ip:][host:]container[/proto]`` with ranges,
Docker's ``PortBindings`` / ``ExposedPorts`` and the ``Ports`` map of
NetworkSettings. Pure functions."""

import ipaddress

from skiff import errors

PROTOS = ("tcp", "udp", "sctp")


def _range(s, what):
    try:
        if "-" in s:
            lo, hi = s.split("-", 1)
            lo, hi = int(lo), int(hi)
        else:
            lo = hi = int(s)
    except ValueError:
        raise errors.InvalidArgument(f"invalid {what}: {s}") from None
    if not (0 < lo <= 65535 and 0 < hi <= 65535) or hi < lo:
        raise errors.InvalidArgument(f"invalid {what}: {s}")
    return lo, hi


def split_port_proto(key):
    """"80/tcp" → (80, 80, "tcp"); "8000-8002/udp" → (8000, 8002, "udp")."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise errors.InvalidArgument(f"invalid proto: {proto}")
    lo, hi = _range(port, "containerPort")
    return lo, hi, proto


def parse_publish(spec):
    """One ``-p`` argument → (ExposedPorts dict, PortBindings dict) exactly as
    the docker CLI sends them (ranges expanded port by port)."""
    rest, _, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
    proto = proto.lower()
    if proto not in PROTOS:
        raise errors.InvalidArgument(f"invalid proto: {proto}")
    host_ip = ""
    if rest.startswith("["):  # [::1]:80:80
        end = rest.index("]")
        host_ip, rest = rest[1:end], rest[end + 2:]
        parts = rest.split(":")
        host_port, container = (parts + [""])[:2] if len(parts) == 2 else ("", parts[0])
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            host_port, container = "", parts[0]
        elif len(parts) == 2:
            host_port, container = parts
        elif len(parts) == 3:
            host_ip, host_port, container = parts
        else:
            raise errors.InvalidArgument(f"invalid port format: {spec}")
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise errors.InvalidArgument(f"invalid IP address: {host_ip}") from None
    if not container:
        raise errors.InvalidArgument(f"no port specified: {spec}<empty>")
    clo, chi = _range(container, "containerPort")
    if host_port:
        hlo, hhi = _range(host_port, "hostPort")
    else:
        hlo = hhi = 0
    exposed, bindings = {}, {}
    n = chi - clo + 1
    if hlo and hhi - hlo + 1 != n and not (n == 1):
        raise errors.InvalidArgument(
            f"invalid ranges specified for container and host Ports: {container} and {host_port}")
    for i in range(n):
        key = f"{clo + i}/{proto}"
        exposed[key] = {}
        if not hlo:
            hp = ""
        elif n == 1:
            hp = str(hlo) if hlo == hhi else f"{hlo}-{hhi}"
        else:
            hp = str(hlo + i)
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": hp})
    return exposed, bindings


def requests(port_bindings=None, publish_all=False, exposed_ports=None):
    """Docker's PortBindings (+ -P over ExposedPorts) → a list of
    ``(proto, container_port, host_ip, host_lo, host_hi)``; host_lo 0 means
    "any free port from the ephemeral range"."""
    out = []
    seen = set()
    for key, binds in (port_bindings or {}).items():
        clo, chi, proto = split_port_proto(key)
        for b in binds or [{}]:
            b = b or {}
            hip = b.get("HostIp") or ""
            if hip:
                try:
                    if ipaddress.ip_address(hip).version != 4:
                        continue  # IPv6 bindings are not supported: skipped as with --ipv6=false
                except ValueError:
                    raise errors.InvalidArgument(f"invalid IP address: {hip}") from None
            hp = str(b.get("HostPort") or "")
            hlo, hhi = _range(hp, "hostPort") if hp else (0, 0)
            for cport in range(clo, chi + 1):
                out.append((proto, cport, hip or "0.0.0.0", hlo, hhi))
                seen.add((proto, cport))
    if publish_all:
        for key in exposed_ports or {}:
            clo, chi, proto = split_port_proto(key)
            for cport in range(clo, chi + 1):
                if (proto, cport) not in seen:
                    out.append((proto, cport, "0.0.0.0", 0, 0))
                    seen.add((proto, cport))
    return out


def ports_map(exposed_ports, rows):
    """NetworkSettings.Ports: every exposed or published port, with its
    bindings or None."""
    out = {}
    for key in exposed_ports or {}:
        clo, chi, proto = split_port_proto(key)
        for p in range(clo, chi + 1):
            out.setdefault(f"{p}/{proto}", None)
    for r in rows:
        key = f"{r['container_port']}/{r['proto']}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": r["host_ip"], "HostPort": str(r["host_port"])})
    return out
