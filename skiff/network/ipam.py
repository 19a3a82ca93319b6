"""Address management: subnet pools for new networks, addresses for endpoints.

Pure functions over ``ipaddress`` objects; the callers run them inside a
store transaction, which is what makes allocation unique.
"""

import ipaddress

from skiff import errors

# Docker's default pools: 172.17-31.0.0/16, then 192.168.0.0/16 split in /20.
DEFAULT_POOLS = [{"base": f"172.{n}.0.0/16", "size": 16} for n in range(17, 32)] + \
    [{"base": "192.168.0.0/16", "size": 20}]


def parse_subnet(s):
    try:
        net = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise errors.InvalidArgument(f"invalid CIDR address: {s}") from None
    if net.version != 4:
        raise errors.InvalidArgument(f"IPv6 subnets are not supported: {s}")
    if "/" in s and ipaddress.ip_interface(s).ip != net.network_address:
        raise errors.InvalidArgument(f"invalid subnet {s} : it should be {net}")
    return net


def parse_ip(s, what="IP address"):
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        raise errors.InvalidArgument(f"invalid {what}: {s}") from None
    if ip.version != 4:
        raise errors.InvalidArgument(f"invalid {what}: {s} (IPv6 is not supported)")
    return ip


def candidate_subnets(pools=None):
    """Every subnet the default address pools can hand out, in order."""
    for pool in pools or DEFAULT_POOLS:
        base = ipaddress.ip_network(pool["base"], strict=False)
        size = int(pool.get("size", base.prefixlen))
        if size < base.prefixlen:
            size = base.prefixlen
        yield from base.subnets(new_prefix=size)


def pick_subnet(used, pools=None):
    """First pool subnet that overlaps none of ``used`` (networks in use by
    skiff and routes of the host)."""
    for cand in candidate_subnets(pools):
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise errors.PermissionDenied("could not find an available, non-overlapping IPv4 address "
                                  "pool among the defaults to assign to the network")


def default_gateway(subnet):
    return subnet.network_address + 1


def allocate(subnet, ip_range, gateway, used, requested=None):
    """An address of ``subnet`` (within ``ip_range`` when set) that is not the
    network, broadcast or gateway address and not in ``used``.

    ``requested`` asks for a specific address (``--ip``)."""
    reserved = {subnet.network_address, subnet.broadcast_address, gateway}
    if requested is not None:
        if requested not in subnet:
            raise errors.InvalidArgument(
                f"invalid endpoint settings:\nno configured subnet or ip-range contain the "
                f"IP address {requested}")
        if requested in reserved or requested in used:
            raise errors.Conflict("Address already in use")
        return requested
    pool = ip_range or subnet
    for host in pool.hosts() if pool.num_addresses > 2 else pool:
        if host not in reserved and host not in used and host in subnet:
            return host
    raise errors.Unavailable(f"no available IPv4 addresses on this network's address pools: "
                             f"{subnet}")


def mac_for(ip):
    """Docker's MAC address: 02:42 followed by the four IPv4 bytes."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
