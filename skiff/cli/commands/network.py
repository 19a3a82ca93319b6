"""``network`` and ``volume`` subcommands."""

import sys

from skiff.cli import fmt
from skiff.cli.client import APIError, q
from skiff.cli.commands.container import _confirm, filters_json
from skiff.cli.flags import F
from skiff.cli.main import Command

NET_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NET_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}
VOL_TABLE = "table {{.Driver}}\t{{.Name}}"
VOL_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}


def _sub(cli, args, group, table):
    if not args or args[0] in ("-h", "--help"):
        print(f"\nUsage:  skiff {group} COMMAND\n\nCommands: {', '.join(sorted(table))}")
        return 0
    fn = table.get(args[0])
    if fn is None:
        sys.stderr.write(f"skiff: unknown command: skiff {group} {args[0]}\n\n"
                         f"Run 'skiff {group} --help' for more information\n")
        return 1
    return fn(cli, args[1:], f"{group} {args[0]}")


def cmd_network(cli, args, name="network"):
    return _sub(cli, args, "network", {
        "create": net_create, "ls": net_ls, "list": net_ls, "inspect": net_inspect,
        "rm": net_rm, "remove": net_rm, "connect": net_connect,
        "disconnect": net_disconnect, "prune": net_prune})


def net_create(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS] NETWORK",
                  [F("attachable"), F("aux-address", "list"), F("d,driver", "str", "bridge"),
                   F("gateway", "list"), F("internal"), F("ip-range", "list"),
                   F("ipam-driver", "str", "default"), F("ipam-opt", "list"), F("ipv4", "bool", True),
                   F("ipv6"), F("label", "list"), F("o,opt", "list"), F("subnet", "list"),
                   F("scope", "str", "")], args, exact=1)
    o = cmd.opts
    cfgs = []
    for i, s in enumerate(o.subnet or []):
        c = {"Subnet": s}
        if o.gateway and i < len(o.gateway):
            c["Gateway"] = o.gateway[i]
        if o.ip_range and i < len(o.ip_range):
            c["IPRange"] = o.ip_range[i]
        cfgs.append(c)
    if o.gateway and not o.subnet:
        sys.stderr.write("every ip-range or gateway must have a corresponding subnet\n")
        return 1
    body = {"Name": cmd.args[0], "Driver": o.driver, "Scope": o.scope,
            "EnableIPv4": o.ipv4, "EnableIPv6": o.ipv6,
            "IPAM": {"Driver": o.ipam_driver, "Config": cfgs,
                     "Options": dict(x.partition("=")[::2] for x in o.ipam_opt or [])},
            "Internal": o.internal, "Attachable": o.attachable, "Ingress": False,
            "ConfigOnly": False, "ConfigFrom": None,
            "Options": dict(x.partition("=")[::2] for x in o.opt or []),
            "Labels": dict(x.partition("=")[::2] for x in o.label or [])}
    r = cli.client.post("/networks/create", None, body)
    for w in ([r.get("Warning")] if r.get("Warning") else []):
        sys.stderr.write(f"WARNING: {w}\n")
    print(r["Id"])
    return 0


def net_ls(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("f,filter", "list"), F("format", "str", ""), F("no-trunc"), F("q,quiet")],
                  args, max_args=0)
    o = cmd.opts
    params = {}
    f = filters_json(o.filter)
    if f:
        params["filters"] = f
    nets = cli.client.get("/networks", params) or []
    nets.sort(key=lambda n: n.get("Name", ""))
    items = []
    for n in nets:
        nid = n.get("Id", "")
        items.append(fmt.MapCtx({
            "ID": nid if o.no_trunc else nid[:12], "Name": n.get("Name", ""),
            "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
            "IPv4": str(n.get("EnableIPv4", True)).lower(),
            "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
            "Internal": str(bool(n.get("Internal"))).lower(),
            "Labels": fmt.labels_str(n.get("Labels")), "CreatedAt": n.get("Created", ""),
            "Label": lambda k, _l=n.get("Labels") or {}: _l.get(k, "")}, NET_HEADERS))
    fmt.write_formatted("{{.ID}}" if o.quiet else o.format, items,
                        fmt.header_ctx(NET_HEADERS), NET_TABLE)
    return 0


def net_inspect(cli, args, name):
    from skiff.cli.commands.system import inspect_objects
    cmd = Command(cli, name, "[OPTIONS] NETWORK [NETWORK...]",
                  [F("f,format", "str", ""), F("v,verbose")], args, min_args=1)
    return inspect_objects(cli, cmd.args, cmd.opts.format, kinds=("network",))


def net_rm(cli, args, name):
    cmd = Command(cli, name, "NETWORK [NETWORK...]", [F("f,force")], args, min_args=1)
    errs = []
    for n in cmd.args:
        try:
            cli.client.request("DELETE", f"/networks/{q(n)}").read()
            print(n)
        except APIError as e:
            if cmd.opts.force and e.status == 404:
                continue
            errs.append(str(e))
    for e in errs:
        sys.stderr.write(e + "\n")
    return 1 if errs else 0


def net_connect(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS] NETWORK CONTAINER",
                  [F("alias", "list"), F("driver-opt", "list"), F("gw-priority", "int", 0),
                   F("ip", "str", ""), F("ip6", "str", ""), F("link", "list"),
                   F("link-local-ip", "list")], args, exact=2)
    from skiff.cli.runopts import endpoint
    o = cmd.opts
    ep = endpoint(o.ip, o.ip6, o.alias)
    ep["GwPriority"] = o.gw_priority
    if o.link:
        ep["Links"] = o.link
    body = {"Container": cmd.args[1], "EndpointConfig": ep}
    cli.client.request("POST", f"/networks/{q(cmd.args[0])}/connect", body=body).read()
    return 0


def net_disconnect(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS] NETWORK CONTAINER", [F("f,force")], args, exact=2)
    body = {"Container": cmd.args[1], "Force": cmd.opts.force}
    cli.client.request("POST", f"/networks/{q(cmd.args[0])}/disconnect", body=body).read()
    return 0


def net_prune(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS]", [F("f,force"), F("filter", "list")], args, max_args=0)
    if not cmd.opts.force and not _confirm(
            "WARNING! This will remove all custom networks not used by at least one container."):
        return 0
    f = filters_json(cmd.opts.filter)
    r = cli.client.post("/networks/prune", {"filters": f} if f else None) or {}
    if r.get("NetworksDeleted"):
        print("Deleted Networks:")
        for n in r["NetworksDeleted"]:
            print(n)
    return 0


# -- volumes ---------------------------------------------------------------------------------
def cmd_volume(cli, args, name="volume"):
    return _sub(cli, args, "volume", {
        "create": vol_create, "ls": vol_ls, "list": vol_ls, "inspect": vol_inspect,
        "rm": vol_rm, "remove": vol_rm, "prune": vol_prune})


def vol_create(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS] [VOLUME]",
                  [F("d,driver", "str", "local"), F("label", "list"), F("o,opt", "list"),
                   F("name", "str", "")], args, max_args=1)
    o = cmd.opts
    vname = cmd.args[0] if cmd.args else o.name
    body = {"Driver": o.driver,
            "DriverOpts": dict(x.partition("=")[::2] for x in o.opt or []),
            "Labels": dict(x.partition("=")[::2] for x in o.label or []),
            "Name": vname}
    r = cli.client.post("/volumes/create", None, body)
    print(r.get("Name", ""))
    return 0


def vol_ls(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("f,filter", "list"), F("format", "str", ""), F("q,quiet"),
                   F("cluster")], args, max_args=0)
    o = cmd.opts
    params = {}
    f = filters_json(o.filter)
    if f:
        params["filters"] = f
    r = cli.client.get("/volumes", params) or {}
    vols = sorted(r.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    items = [fmt.MapCtx({
        "Name": v.get("Name", ""), "Driver": v.get("Driver", ""), "Scope": v.get("Scope", ""),
        "Mountpoint": v.get("Mountpoint", ""), "Labels": fmt.labels_str(v.get("Labels")),
        "Links": str((v.get("UsageData") or {}).get("RefCount", "N/A")),
        "Size": fmt.human_size((v.get("UsageData") or {}).get("Size", 0)) if v.get("UsageData") else "N/A",
        "Label": lambda k, _l=v.get("Labels") or {}: _l.get(k, "")}, VOL_HEADERS)
        for v in vols]
    for w in r.get("Warnings") or []:
        sys.stderr.write(f"{w}\n")
    fmt.write_formatted("{{.Name}}" if o.quiet else o.format, items,
                        fmt.header_ctx(VOL_HEADERS), VOL_TABLE)
    return 0


def vol_inspect(cli, args, name):
    from skiff.cli.commands.system import inspect_objects
    cmd = Command(cli, name, "[OPTIONS] VOLUME [VOLUME...]", [F("f,format", "str", "")],
                  args, min_args=1)
    return inspect_objects(cli, cmd.args, cmd.opts.format, kinds=("volume",))


def vol_rm(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS] VOLUME [VOLUME...]", [F("f,force")], args, min_args=1)
    errs = []
    for v in cmd.args:
        try:
            cli.client.request("DELETE", f"/volumes/{q(v)}",
                               {"force": 1} if cmd.opts.force else None).read()
            print(v)
        except APIError as e:
            errs.append(str(e))
    for e in errs:
        sys.stderr.write(e + "\n")
    return 1 if errs else 0


def vol_prune(cli, args, name):
    cmd = Command(cli, name, "[OPTIONS]", [F("a,all"), F("f,force"), F("filter", "list")],
                  args, max_args=0)
    if not cmd.opts.force and not _confirm(
            "WARNING! This will remove anonymous local volumes not used by at least one container."):
        return 0
    flt = list(cmd.opts.filter or [])
    if cmd.opts.all:
        flt.append("all=true")
    f = filters_json(flt)
    r = cli.client.post("/volumes/prune", {"filters": f} if f else None) or {}
    if r.get("VolumesDeleted"):
        print("Deleted Volumes:")
        for v in r["VolumesDeleted"]:
            print(v)
        print()
    print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed', 0))}")
    return 0
