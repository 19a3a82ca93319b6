"""The bridge driver's netlink work (pyroute2): bridges, veth pairs and the
container side of each pair (eth0, address, MAC, default route, lo)."""

import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from skiff import errors
from skiff.network import nat, netns

EEXIST, ENODEV, ESRCH = 17, 19, 3


def _index(ip, name):
    idx = ip.link_lookup(ifname=name)
    return idx[0] if idx else None


def _kind(ip, idx):
    link = ip.get_links(idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def link_exists(name):
    with IPRoute() as ip:
        return _index(ip, name) is not None


def host_routes(exclude_links=()):
    """IPv4 networks routed in this namespace (except on ``exclude_links``)."""
    out = []
    with IPRoute() as ip:
        skip = {i for n in exclude_links for i in ip.link_lookup(ifname=n)}
        for r in ip.get_routes(family=2):
            if r.get("dst_len", 0) == 0 or r.get("table") not in (254, None):
                continue
            if r.get_attr("RTA_OIF") in skip:
                continue
            dst = r.get_attr("RTA_DST")
            if dst:
                out.append(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def ensure_bridge(name, gateway, prefixlen, mtu=1500):
    """Create (or adopt) bridge ``name`` with ``gateway/prefixlen``, up."""
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None:
            try:
                ip.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as e:
                if e.code != EEXIST:
                    raise
            idx = _index(ip, name)
        elif _kind(ip, idx) != "bridge":
            raise errors.Conflict(f"cannot use {name} as the network's bridge: an interface "
                                  f"of that name exists and is not a bridge")
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ip.get_addr(index=idx, family=2)}
        if (str(gateway), prefixlen) not in have:
            try:
                ip.addr("add", index=idx, address=str(gateway), prefixlen=prefixlen)
            except NetlinkError as e:
                if e.code != EEXIST:
                    raise
        ip.link("set", index=idx, state="up")
    # published ports reached from 127.0.0.1: DNAT keeps the loopback source,
    # which the kernel drops as martian on a non-loopback device unless:
    nat.set_sysctl(f"net/ipv4/conf/{name}/route_localnet", 1)
    nat.set_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", 1)


def delete_bridge(name):
    """Delete bridge ``name``; anything that is not a bridge is left alone."""
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None or _kind(ip, idx) != "bridge":
            return False
        try:
            ip.link("del", index=idx)
        except NetlinkError as e:
            if e.code != ENODEV:
                raise
        return True


def delete_link(name):
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None:
            return False
        try:
            ip.link("del", index=idx)
        except NetlinkError as e:
            if e.code not in (ENODEV,):
                raise
        return True


def bridge_ports(name):
    """Names of the interfaces enslaved to bridge ``name``."""
    with IPRoute() as ip:
        idx = _index(ip, name)
        if idx is None:
            return []
        return [l.get_attr("IFLA_IFNAME") for l in ip.get_links() if l.get_attr("IFLA_MASTER") == idx]


def _container_side(tmp_name, ifname, address, prefixlen, mac, gateway, default_route, mtu):
    with IPRoute() as ip:
        lo = _index(ip, "lo")
        ip.link("set", index=lo, state="up")
        idx = _index(ip, tmp_name)
        ip.link("set", index=idx, ifname=ifname, address=mac, mtu=mtu)
        ip.addr("add", index=idx, address=address, prefixlen=prefixlen)
        # IPv4-only network: no IPv6 (link-local) address on the interface,
        # as Docker does; /proc/sys/net is this thread's namespace
        nat.set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", 1)
        ip.link("set", index=idx, state="up")
        if default_route and gateway:
            try:
                ip.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)
            except NetlinkError as e:
                if e.code != EEXIST:
                    raise


def attach(netns_path, bridge, host_veth, ifname, address, prefixlen, mac, gateway,
           default_route=True, mtu=1500):
    """veth pair: ``host_veth`` on ``bridge``, the peer moved into the
    namespace at ``netns_path`` and configured as ``ifname``."""
    tmp = "vc" + host_veth[4:]
    with IPRoute() as ip:
        br = _index(ip, bridge)
        if br is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        stale = _index(ip, host_veth)
        if stale is not None:
            ip.link("del", index=stale)
        ip.link("add", ifname=host_veth, kind="veth", mtu=mtu,
                peer={"ifname": tmp, "net_ns_fd": netns_path, "mtu": mtu})
        try:
            idx = _index(ip, host_veth)
            ip.link("set", index=idx, master=br)
            # hairpin: a container reaching its own published port through a
            # host address gets the DNATed packet back on the same port
            ip.brport("set", index=idx, mode=1)
            ip.link("set", index=idx, state="up")
            netns.run_in_netns(netns_path, _container_side, tmp, ifname, address, prefixlen,
                               mac, gateway, default_route, mtu)
        except BaseException:
            idx = _index(ip, host_veth)
            if idx is not None:
                ip.link("del", index=idx)
            raise


def _remove_in_ns(ifname):
    with IPRoute() as ip:
        idx = _index(ip, ifname)
        if idx is not None:
            ip.link("del", index=idx)


def detach(netns_path, host_veth, ifname):
    """Remove a veth pair (from the host side; from inside the namespace when
    the host side is already gone)."""
    if delete_link(host_veth):
        return
    if netns_path and netns.is_netns(netns_path):
        try:
            netns.run_in_netns(netns_path, _remove_in_ns, ifname)
        except (OSError, NetlinkError):
            pass


def _container_side_lo():
    """lo up inside a fresh namespace (127.0.0.1/8 comes with it)."""
    with IPRoute() as ip:
        ip.link("set", index=_index(ip, "lo"), state="up")
