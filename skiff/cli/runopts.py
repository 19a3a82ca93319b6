"""``run``/``create`` flags → the Engine API create body, as docker 28 sends it.

Pure: no I/O except reading --env-file/--label-file.  The body has the same
keys and zero values the docker CLI sends (Go structs serialised in full),
so the daemon sees the same request from either client."""

import os
import re

from skiff.cli.flags import F, UsageError

RUN_FLAGS = [
    F("add-host", "list"), F("annotation", "list"), F("a,attach", "list"),
    F("blkio-weight", "int", 0), F("cap-add", "list"), F("cap-drop", "list"),
    F("cgroup-parent", "str", ""), F("cgroupns", "str", ""), F("cidfile", "str", ""),
    F("cpu-period", "int", 0), F("cpu-quota", "int", 0), F("c,cpu-shares", "int", 0),
    F("cpus", "str", ""), F("cpuset-cpus", "str", ""), F("cpuset-mems", "str", ""),
    F("d,detach"), F("detach-keys", "str", ""), F("device", "list"),
    F("device-cgroup-rule", "list"), F("disable-content-trust", "bool", True),
    F("dns", "list"), F("dns-option", "list"), F("dns-search", "list"),
    F("domainname", "str", ""), F("entrypoint", "str", None),
    F("e,env", "list"), F("env-file", "list"), F("expose", "list"),
    F("group-add", "list"), F("health-cmd", "str", ""), F("health-interval", "str", ""),
    F("health-retries", "int", 0), F("health-start-interval", "str", ""),
    F("health-start-period", "str", ""), F("health-timeout", "str", ""),
    F("no-healthcheck"), F("h,hostname", "str", ""), F("init"), F("i,interactive"),
    F("ip", "str", ""), F("ip6", "str", ""), F("ipc", "str", ""),
    F("l,label", "list"), F("label-file", "list"), F("link", "list"),
    F("log-driver", "str", ""), F("log-opt", "list"), F("mac-address", "str", ""),
    F("m,memory", "str", ""), F("memory-reservation", "str", ""),
    F("memory-swap", "str", ""), F("memory-swappiness", "int", -1),
    F("mount", "list"), F("name", "str", ""), F("network", "str", ""),
    F("net", "str", "", dest="network"), F("network-alias", "list"),
    F("net-alias", "list", dest="network_alias"),
    F("oom-kill-disable"), F("oom-score-adj", "int", 0), F("pid", "str", ""),
    F("pids-limit", "int", 0), F("platform", "str", ""), F("privileged"),
    F("p,publish", "list"), F("P,publish-all"), F("pull", "str", "missing"),
    F("q,quiet"), F("read-only"), F("restart", "str", "no"), F("rm"),
    F("runtime", "str", ""), F("security-opt", "list"), F("shm-size", "str", ""),
    F("sig-proxy", "bool", True), F("stop-signal", "str", ""),
    F("stop-timeout", "int", None), F("storage-opt", "list"), F("sysctl", "list"),
    F("tmpfs", "list"), F("t,tty"), F("ulimit", "list"), F("u,user", "str", ""),
    F("userns", "str", ""), F("uts", "str", ""), F("v,volume", "list"),
    F("volume-driver", "str", ""), F("volumes-from", "list"), F("w,workdir", "str", ""),
]
CREATE_ONLY = {"detach", "detach_keys", "sig_proxy", "rm"}


# -- value parsers (docker's opts package) ---------------------------------------
_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


def ram_in_bytes(s, flag):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtTpPbB]?)[iI]?[bB]?", s.strip())
    if not m:
        raise UsageError(f'invalid argument "{s}" for "{flag}" flag: invalid size: \'{s}\'')
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


_DUR = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9,
        "h": 3600 * 10 ** 9}


def go_duration(s, flag=""):
    """time.ParseDuration → nanoseconds."""
    if s in ("0", ""):
        return 0
    total = 0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise UsageError(f'invalid argument "{s}" for "{flag}" flag: '
                         f'time: invalid duration "{s}"')
    return int(total)


def parse_env_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"open {path}: {e.strerror.lower()}") from None
    out = []
    for ln in lines:
        ln = ln.lstrip()
        if not ln or ln.startswith("#"):
            continue
        if "=" in ln:
            out.append(ln)
        else:
            v = os.environ.get(ln)
            if v is not None:
                out.append(f"{ln}={v}")
    return out


def expand_env(items):
    out = []
    for e in items or []:
        if "=" not in e:
            v = os.environ.get(e)
            if v is None:
                continue
            e = f"{e}={v}"
        out.append(e)
    return out


def parse_port_spec(spec):
    """docker's nat.ParsePortSpec → list of (container "80/tcp", HostIp, HostPort)."""
    proto = "tcp"
    raw = spec
    if "/" in spec:
        spec, proto = spec.rsplit("/", 1)
    ip = ""
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise UsageError(f"invalid port format: {raw}")
        parts = [spec[1:end]] + spec[end + 2:].split(":")
    else:
        parts = spec.split(":")
    if len(parts) == 1:
        host, cont = "", parts[0]
    elif len(parts) == 2:
        host, cont = parts
    elif len(parts) == 3:
        ip, host, cont = parts
    else:
        raise UsageError(f"invalid port format: {raw}")

    def rng(s):
        if not s:
            return None
        a, _, b = s.partition("-")
        try:
            a = int(a)
            b = int(b) if b else a
        except ValueError:
            raise UsageError(f"invalid containerPort: {s}") from None
        return a, b
    c = rng(cont)
    if c is None:
        raise UsageError(f"no port specified: {raw}<empty>")
    h = rng(host)
    out = []
    n = c[1] - c[0]
    if h and h[1] - h[0] != n and h[0] != h[1]:
        raise UsageError(f"invalid ranges specified for container and host Ports: {cont} and {host}")
    for i in range(n + 1):
        hp = ""
        if h:
            hp = str(h[0] + i) if h[1] - h[0] == n else (host if h[0] == h[1] and n == 0 else f"{h[0]}-{h[1]}")
        out.append((f"{c[0] + i}/{proto}", ip, hp))
    return out


def parse_mount(spec):
    m = {}
    typ = "volume"
    fields = [f for f in spec.split(",") if f]
    src = dst = None
    ro = None
    extra = {}
    for f in fields:
        k, eq, v = f.partition("=")
        k = k.strip().lower()
        if k == "type":
            typ = v
        elif k in ("source", "src"):
            src = v
        elif k in ("target", "dst", "destination"):
            dst = v
        elif k in ("readonly", "ro"):
            ro = (v.lower() in ("", "1", "true")) if eq else True
        elif k == "bind-propagation":
            extra.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "bind-recursive":
            pass
        elif k == "volume-nocopy":
            extra.setdefault("VolumeOptions", {})["NoCopy"] = (v.lower() in ("", "1", "true"))
        elif k == "volume-driver":
            extra.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-opt":
            o, _, ov = v.partition("=")
            extra.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault(
                "Options", {})[o] = ov
        elif k == "volume-label":
            o, _, ov = v.partition("=")
            extra.setdefault("VolumeOptions", {}).setdefault("Labels", {})[o] = ov
        elif k == "tmpfs-size":
            extra.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(v, "--mount")
        elif k == "tmpfs-mode":
            extra.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        else:
            raise UsageError(f'invalid argument "{spec}" for "--mount" flag: unexpected key \'{k}\' in \'{f}\'')
    if not dst:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: target is required')
    m["Type"] = typ
    if src:
        m["Source"] = src
    m["Target"] = dst
    if ro:
        m["ReadOnly"] = True
    m.update(extra)
    return m


def parse_ulimit(s):
    name, _, v = s.partition("=")
    soft, _, hard = v.partition(":")
    try:
        soft = int(soft)
        hard = int(hard) if hard else soft
    except ValueError:
        raise UsageError(f'invalid argument "{s}" for "--ulimit" flag: invalid ulimit argument: {s}') from None
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_device(s):
    parts = s.split(":")
    src = parts[0]
    dst = src
    perms = "rwm"
    if len(parts) == 2:
        if set(parts[1]) <= set("rwm") and parts[1]:
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) == 3:
        dst, perms = parts[1], parts[2]
    return {"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}


def parse_restart(s):
    """docker's opts.ParseRestartPolicy: the daemon validates the name."""
    if not s:
        return {"Name": "", "MaximumRetryCount": 0}
    parts = s.split(":")
    if len(parts) > 2:
        raise UsageError("invalid restart policy format: expected policy or policy:count")
    cnt = 0
    if len(parts) == 2:
        try:
            cnt = int(parts[1])
        except ValueError:
            raise UsageError("invalid restart policy format: maximum retry count "
                             "must be an integer") from None
    return {"Name": parts[0], "MaximumRetryCount": cnt}


def split_volume(v):
    """-v: src:dst[:mode] (src absolute → bind) or dst (anonymous volume)."""
    parts = v.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def endpoint(ipv4="", ipv6="", aliases=None):
    ipam = None
    if ipv4 or ipv6:
        ipam = {}
        if ipv4:
            ipam["IPv4Address"] = ipv4
        if ipv6:
            ipam["IPv6Address"] = ipv6
    return {"IPAMConfig": ipam, "Links": None, "Aliases": aliases or None,
            "MacAddress": "", "DriverOpts": None, "GwPriority": 0, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": None}


_SYSCTL_NS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
              "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def build_create(o, image, cmd, console_size=(0, 0)):
    """Return (query params, body) for POST /containers/create."""
    env = []
    for f in o.env_file or []:
        env.extend(parse_env_file(f))
    env.extend(expand_env(o.env))
    labels = {}
    for f in o.label_file or []:
        for ln in parse_env_file(f):
            k, _, v = ln.partition("=")
            labels[k] = v
    for lab in o.label or []:
        k, _, v = lab.partition("=")
        labels[k] = v

    attach = [a.lower() for a in (o.attach or [])]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise UsageError(f'invalid argument "{a}" for "-a, --attach" flag: '
                             f'valid streams are STDIN, STDOUT and STDERR')
    if o.get("detach"):
        if attach:
            raise UsageError("conflicting options: cannot specify both --attach and --detach")
        a_in = a_out = a_err = False
    elif attach:
        a_in, a_out, a_err = "stdin" in attach, "stdout" in attach, "stderr" in attach
    else:
        a_in, a_out, a_err = o.interactive, True, True
    stdin_once = bool(a_in and o.interactive) if not o.get("detach") else False
    if o.interactive and not attach and not o.get("detach"):
        stdin_once = True

    exposed = {}
    bindings = {}
    for e in o.expose or []:
        proto = "tcp"
        if "/" in e:
            e, proto = e.split("/", 1)
        a, _, b = e.partition("-")
        for p in range(int(a), int(b or a) + 1):
            exposed[f"{p}/{proto}"] = {}
    for spec in o.publish or []:
        for port, ip, hp in parse_port_spec(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append({"HostIp": ip, "HostPort": hp})

    binds = []
    volumes = {}
    for v in o.volume or []:
        src, dst = split_volume(v)
        if src is None:
            volumes[dst] = {}
        else:
            binds.append(v)

    health = None
    if o.no_healthcheck and (o.health_cmd or o.health_interval or o.health_timeout
                             or o.health_start_period or o.health_retries
                             or o.health_start_interval):
        raise UsageError("--no-healthcheck conflicts with --health-* options")
    if o.no_healthcheck:
        health = {"Test": ["NONE"]}
    elif (o.health_cmd or o.health_interval or o.health_timeout or o.health_start_period
          or o.health_retries or o.health_start_interval):
        health = {}
        if o.health_cmd:
            health["Test"] = ["CMD-SHELL", o.health_cmd]
        for key, val in (("Interval", o.health_interval), ("Timeout", o.health_timeout),
                         ("StartPeriod", o.health_start_period),
                         ("StartInterval", o.health_start_interval)):
            if val:
                health[key] = go_duration(val, "--health-" + key.lower())
        if o.health_retries:
            health["Retries"] = o.health_retries

    tmpfs = {}
    for t in o.tmpfs or []:
        p, _, opts_ = t.partition(":")
        tmpfs[p] = opts_
    sysctls = {}
    for s in o.sysctl or []:
        k, _, v = s.partition("=")
        if not (k.startswith(("net.", "fs.mqueue.")) or k in _SYSCTL_NS):
            raise UsageError(f'invalid argument "{s}" for "--sysctl" flag: sysctl \'{s}\' is not allowed')
        sysctls[k] = v
    log_cfg = {}
    for lo in o.log_opt or []:
        k, _, v = lo.partition("=")
        log_cfg[k] = v

    def caps(lst):
        if not lst:
            return None
        out = []
        for c in lst:
            cu = c.upper()
            if cu != "ALL" and not cu.startswith("CAP_"):
                cu = "CAP_" + cu
            out.append(cu)
        return out

    nanocpus = 0
    if o.cpus:
        try:
            nanocpus = int(round(float(o.cpus) * 1e9))
        except ValueError:
            raise UsageError(f'invalid argument "{o.cpus}" for "--cpus" flag: failed to parse {o.cpus} as a rational number') from None

    mem = ram_in_bytes(o.memory, "-m, --memory") if o.memory else 0
    swap = 0
    if o.memory_swap:
        swap = -1 if o.memory_swap == "-1" else ram_in_bytes(o.memory_swap, "--memory-swap")

    network = o.network or "default"
    if o.ip or o.ip6 or o.network_alias:
        if network == "default" and o.network_alias:
            raise UsageError("network-scoped aliases are only supported for user-defined networks")
    endpoints = {}
    if network not in ("host", "none") or True:
        endpoints[network] = endpoint(o.ip, o.ip6, o.network_alias)

    restart = parse_restart(o.restart)
    if o.get("rm") and restart["Name"] not in ("", "no"):
        raise UsageError("conflicting options: cannot specify both --restart and --rm")

    entry = None
    if o.entrypoint is not None:
        entry = [o.entrypoint] if o.entrypoint else [""]

    hc = {
        "Binds": binds or None, "ContainerIDFile": o.cidfile,
        "LogConfig": {"Type": o.log_driver, "Config": log_cfg},
        "NetworkMode": network, "PortBindings": bindings,
        "RestartPolicy": restart, "AutoRemove": bool(o.get("rm")),
        "VolumeDriver": o.volume_driver, "VolumesFrom": o.volumes_from or None,
        "ConsoleSize": list(console_size),
        "CapAdd": caps(o.cap_add), "CapDrop": caps(o.cap_drop),
        "CgroupnsMode": o.cgroupns, "Dns": o.dns or [], "DnsOptions": o.dns_option or [],
        "DnsSearch": o.dns_search or [], "ExtraHosts": o.add_host or None,
        "GroupAdd": o.group_add or None, "IpcMode": o.ipc, "Cgroup": "",
        "Links": o.link or None, "OomScoreAdj": o.oom_score_adj, "PidMode": o.pid,
        "Privileged": o.privileged, "PublishAllPorts": o.publish_all,
        "ReadonlyRootfs": o.read_only, "SecurityOpt": o.security_opt or None,
    }
    if o.storage_opt:
        hc["StorageOpt"] = dict(s.partition("=")[::2] for s in o.storage_opt)
    if tmpfs:
        hc["Tmpfs"] = tmpfs
    hc.update({"UTSMode": o.uts, "UsernsMode": o.userns,
               "ShmSize": ram_in_bytes(o.shm_size, "--shm-size") if o.shm_size else 0})
    if sysctls:
        hc["Sysctls"] = sysctls
    if o.runtime:
        hc["Runtime"] = o.runtime
    hc.update({
        "Isolation": "", "CpuShares": o.cpu_shares, "Memory": mem, "NanoCpus": nanocpus,
        "CgroupParent": o.cgroup_parent, "BlkioWeight": o.blkio_weight,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": o.cpu_period, "CpuQuota": o.cpu_quota, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": o.cpuset_cpus, "CpusetMems": o.cpuset_mems,
        "Devices": [parse_device(d) for d in o.device or []],
        "DeviceCgroupRules": o.device_cgroup_rule or None, "DeviceRequests": None,
        "MemoryReservation": ram_in_bytes(o.memory_reservation, "--memory-reservation")
        if o.memory_reservation else 0,
        "MemorySwap": swap, "MemorySwappiness": o.memory_swappiness,
        "OomKillDisable": o.oom_kill_disable, "PidsLimit": o.pids_limit,
        "Ulimits": [parse_ulimit(u) for u in o.ulimit or []],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    })
    if o.mount:
        hc["Mounts"] = [parse_mount(m) for m in o.mount]
    hc.update({"MaskedPaths": None, "ReadonlyPaths": None})
    if o.init:
        hc["Init"] = True
    if o.annotation:
        hc["Annotations"] = dict(a.partition("=")[::2] for a in o.annotation)

    body = {"Hostname": o.hostname, "Domainname": o.domainname, "User": o.user,
            "AttachStdin": a_in, "AttachStdout": a_out, "AttachStderr": a_err}
    if exposed:
        body["ExposedPorts"] = exposed
    body.update({"Tty": o.tty, "OpenStdin": o.interactive, "StdinOnce": stdin_once,
                 "Env": env or None, "Cmd": list(cmd) or None})
    if health is not None:
        body["Healthcheck"] = health
    body.update({"Image": image, "Volumes": volumes, "WorkingDir": o.workdir,
                 "Entrypoint": entry, "OnBuild": None, "Labels": labels})
    if o.mac_address:
        body["MacAddress"] = o.mac_address
    if o.stop_signal:
        body["StopSignal"] = o.stop_signal
    if o.stop_timeout is not None:
        body["StopTimeout"] = o.stop_timeout
    body["HostConfig"] = hc
    body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    params = {}
    if o.name:
        params["name"] = o.name
    if o.platform:
        params["platform"] = o.platform
    return params, body
