"""The engine: containers with a life cycle, backed by SQLite, driven
through conmon and an OCI runtime. HTTP lives in skiff.api; this module only
raises skiff.errors."""

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import signal as _signal
import socket
import time

from skiff import errors
from skiff.engine import names as _names
from skiff.engine import spec_min
from skiff.engine import user as _user
from skiff.engine.config import DaemonConfig
from skiff.engine.container import Container, new_state, now_ts, ZERO_TIME
from skiff.engine.events import Events
from skiff.engine.monitor import Monitor, attach_socket, send_packets
from skiff.engine.rootfs import Rootfs
from skiff.engine.state import StateDB

log = logging.getLogger("skiffd")

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

SIGNALS = {n[3:]: int(getattr(_signal, n)) for n in dir(_signal)
           if n.startswith("SIG") and not n.startswith("SIG_") and isinstance(getattr(_signal, n), int)}


def parse_signal(sig) -> int:
    if sig is None or sig == "":
        return int(_signal.SIGKILL)
    if isinstance(sig, int):
        return sig
    s = str(sig).upper()
    if s.isdigit():
        return int(s)
    if s.startswith("SIG"):
        s = s[3:]
    if s in SIGNALS:
        return SIGNALS[s]
    m = re.fullmatch(r"RTMIN\+(\d+)", s)
    if m:
        return int(_signal.SIGRTMIN) + int(m.group(1))
    raise errors.InvalidArgument(f"Invalid signal: {sig}")


def default_host_config() -> dict:
    return {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
        "Runtime": "", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None,
        "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None, "Init": None, "Mounts": None, "Tmpfs": None,
    }


def merge_env(base: list, override: list) -> list:
    out, idx = [], {}
    for e in list(base or []) + list(override or []):
        k = e.split("=", 1)[0]
        if k in idx:
            out[idx[k]] = e
        else:
            idx[k] = len(out)
            out.append(e)
    return out


class Engine:
    def __init__(self, config: DaemonConfig):
        self.config = config
        self.data_root = config.data_root
        self.exec_root = config.exec_root
        os.makedirs(os.path.join(self.data_root, "containers"), exist_ok=True)
        os.makedirs(self.exec_root, exist_ok=True)
        self.db = StateDB(os.path.join(self.data_root, "engine.db"))
        self.events = Events()
        self.monitor = Monitor(self.exec_root, config.runtime_root)
        self.rootfs = Rootfs(self.data_root, config)
        self.images = self.rootfs.images
        self.network = self._load_network()
        self.volumes = self._load_volumes()
        self.containers: dict[str, Container] = {}
        self.execs: dict = {}
        self.started_at = time.time()
        self._bg: set[asyncio.Task] = set()
        self.create_spec = self._load_create()

    # ------------------------------------------------------------ plumbing
    def _load_network(self):
        try:
            from skiff.network import NetworkManager
        except ImportError:
            return None
        try:
            return NetworkManager(os.path.join(self.data_root, "network"), self.exec_root,
                                  dict(self.config.raw))
        except Exception as e:  # a broken network layer must not stop the daemon
            log.warning("network manager unavailable: %s", e)
            return None

    def _load_volumes(self):
        try:
            from skiff.engine.volumes import VolumeStore
        except ImportError:
            return None
        try:
            return VolumeStore(os.path.join(self.data_root, "volumes"), in_use=self._volume_users)
        except Exception as e:
            log.warning("volume store unavailable: %s", e)
            return None

    def _volume_users(self, name: str) -> list:
        return [c.id for c in self.containers.values()
                if any(m.get("Name") == name for m in c.rec.get("Mounts") or [])]

    def _load_create(self):
        try:
            from skiff.engine import create
        except ImportError:
            return None
        return getattr(create, "build_spec", None)

    def _validate_create(self, cfg: dict, hc: dict) -> list:
        try:
            from skiff.engine import create
        except ImportError:
            return []
        return list(create.validate(cfg, hc) or [])

    def spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)
        return t

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.data_root, "containers", cid)

    def bundle(self, cid: str) -> str:
        return self.container_dir(cid)

    def runtime_path(self, c: Container) -> str:
        return self.config.runtime_path(c.host_config.get("Runtime") or None)

    def save(self, c: Container):
        c.sync_status()
        self.db.save_container(c.rec)

    def emit(self, c: Container, action: str, **extra):
        attrs = {"name": c.name, "image": c.config.get("Image", "")}
        attrs.update(c.config.get("Labels") or {})
        attrs.update({k: str(v) for k, v in extra.items()})
        self.events.emit("container", action, c.id, attrs)

    # ------------------------------------------------------------ lookup
    def get(self, ref: str) -> Container:
        if not ref:
            raise errors.ContainerNotFound(ref)
        c = self.containers.get(ref)
        if c:
            return c
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for c in self.containers.values() if c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errors.InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise errors.ContainerNotFound(ref)

    def name_taken(self, name: str):
        for c in self.containers.values():
            if c.name == name:
                return c
        return None

    # ------------------------------------------------------------ create
    async def create(self, body: dict, name: str | None = None, platform: str | None = None):
        body = dict(body or {})
        hc_in = body.pop("HostConfig", None) or {}
        net_cfg = body.pop("NetworkingConfig", None) or {}
        cfg = body
        image_ref = cfg.get("Image") or ""
        if not image_ref:
            raise errors.InvalidArgument("No image specified")
        if name:
            if not NAME_RE.match(name):
                raise errors.InvalidArgument(
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            other = self.name_taken(name)
            if other:
                raise errors.Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        img = self.rootfs.resolve(image_ref)
        icfg = img["config"] or {}
        hc = default_host_config()
        for k, v in hc_in.items():
            hc[k] = v
        if hc.get("NetworkMode") in ("", "default", None):
            hc["NetworkMode"] = "bridge"
        if not hc.get("IpcMode"):
            hc["IpcMode"] = getattr(self.config, "default_ipc_mode", "private")
        if not hc.get("ShmSize"):
            hc["ShmSize"] = getattr(self.config, "default_shm_size", 67108864)
        rp = hc.get("RestartPolicy") or {}
        rp_name = rp.get("Name") or "no"
        if rp_name not in ("no", "always", "on-failure", "unless-stopped"):
            raise errors.InvalidArgument(f"invalid restart policy: unknown policy '{rp_name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")
        if rp_name != "on-failure" and rp.get("MaximumRetryCount"):
            raise errors.InvalidArgument(f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
        if hc.get("AutoRemove") and rp_name != "no":
            raise errors.InvalidArgument("conflicting options: cannot specify both --restart and --rm")
        hc["RestartPolicy"] = {"Name": rp_name, "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}
        runtime = hc.get("Runtime") or self.config.default_runtime
        self.config.runtime_path(runtime)  # validates the name
        hc["Runtime"] = runtime
        # Docker's create-time checks (bad options fail here, not at start)
        warnings = self._validate_create(cfg, hc)

        entrypoint = cfg.get("Entrypoint")
        cmd = cfg.get("Cmd")
        if isinstance(entrypoint, str):
            entrypoint = [entrypoint]
        if isinstance(cmd, str):
            cmd = [cmd]
        if entrypoint is None:
            entrypoint = icfg.get("Entrypoint") or []
            if not cmd:
                cmd = icfg.get("Cmd") or []
        elif not cmd:
            cmd = []
        argv = list(entrypoint or []) + list(cmd or [])
        if not argv or argv == [""]:
            raise errors.InvalidArgument("no command specified")
        cid = secrets.token_hex(32)
        if not name:
            name = _names.random_name({c.name for c in self.containers.values()})
        env = merge_env(icfg.get("Env") or [], cfg.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, "PATH=" + DEFAULT_PATH)
        labels = dict(icfg.get("Labels") or {})
        labels.update(cfg.get("Labels") or {})
        hostname = cfg.get("Hostname") or cid[:12]
        if hc["NetworkMode"] == "host" and not cfg.get("Hostname"):
            hostname = socket.gethostname()
        volumes = dict(icfg.get("Volumes") or {})
        volumes.update(cfg.get("Volumes") or {})
        exposed = dict(icfg.get("ExposedPorts") or {})
        exposed.update(cfg.get("ExposedPorts") or {})
        config = {
            "Hostname": hostname, "Domainname": cfg.get("Domainname", ""),
            "User": cfg.get("User") if cfg.get("User") is not None else icfg.get("User", ""),
            "AttachStdin": bool(cfg.get("AttachStdin")), "AttachStdout": bool(cfg.get("AttachStdout")),
            "AttachStderr": bool(cfg.get("AttachStderr")),
            "Tty": bool(cfg.get("Tty")), "OpenStdin": bool(cfg.get("OpenStdin")),
            "StdinOnce": bool(cfg.get("StdinOnce")), "Env": env,
            "Cmd": list(cmd) if cmd else None, "Image": image_ref,
            "Volumes": volumes or None,
            "WorkingDir": cfg.get("WorkingDir") or icfg.get("WorkingDir") or "",
            "Entrypoint": list(entrypoint) if entrypoint else None,
            "OnBuild": None, "Labels": labels,
        }
        if exposed:
            config["ExposedPorts"] = exposed
        hcheck = cfg.get("Healthcheck") or icfg.get("Healthcheck")
        if hcheck:
            config["Healthcheck"] = hcheck
        for k in ("StopSignal", "StopTimeout", "Shell", "ArgsEscaped", "MacAddress",
                  "NetworkDisabled"):
            if cfg.get(k) is not None:
                config[k] = cfg[k]
        if "StopSignal" not in config and icfg.get("StopSignal"):
            config["StopSignal"] = icfg["StopSignal"]
        cdir = self.container_dir(cid)
        networks = {}
        for nname, ep in ((net_cfg.get("EndpointsConfig") or {}).items()):
            networks["bridge" if nname == "default" else nname] = ep or {}
        if networks and hc["NetworkMode"] not in networks and len(networks) == 1 \
                and hc["NetworkMode"] == "bridge":
            hc["NetworkMode"] = next(iter(networks))
        rec = {
            "Id": cid, "Created": now_ts(), "Path": argv[0], "Args": argv[1:],
            "State": new_state(), "Image": img["id"],
            "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
            "HostnamePath": os.path.join(cdir, "hostname"),
            "HostsPath": os.path.join(cdir, "hosts"),
            "LogPath": os.path.join(cdir, cid + "-json.log"),
            "Name": "/" + name, "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": hc, "GraphDriver": {"Data": None, "Name": "overlay2"},
            "Mounts": [], "Config": config,
            "NetworkSettings": self._empty_network_settings(hc, networks),
            "_skiff": {"RequestedNetworks": networks, "HasBeenStarted": False},
        }
        os.makedirs(cdir, exist_ok=True)
        try:
            await asyncio.to_thread(self.rootfs.prepare, cid, img["id"])
            rec["GraphDriver"] = self.rootfs.graph_driver(cid, os.path.join(cdir, "rootfs"))
            rec["Mounts"] = await self._create_mounts(rec)
        except BaseException:
            await asyncio.to_thread(self._remove_files, cid)
            raise
        c = Container(rec)
        self.containers[cid] = c
        self.save(c)
        self.emit(c, "create")
        return cid, warnings

    def _empty_network_settings(self, hc, networks) -> dict:
        mode = hc.get("NetworkMode", "bridge")
        nets = {}
        for n in (networks or {mode: {}}):
            nets[n] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                       "DriverOpts": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
                       "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                       "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
        return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
                "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
                "Networks": nets}

    async def _create_mounts(self, rec) -> list:
        """Docker's Mounts list for binds, named/anonymous volumes and tmpfs."""
        out = []
        hc = rec["HostConfig"]
        for b in hc.get("Binds") or []:
            parts = b.split(":")
            src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
            mode = parts[2] if len(parts) > 2 else ""
            rw = "ro" not in mode.split(",")
            if src.startswith("/"):
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
                out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": mode,
                            "RW": rw, "Propagation": "rprivate"})
            else:
                out.append(await self._volume_mount(src, dst, mode, rw, rec))
        for m in hc.get("Mounts") or []:
            t = m.get("Type", "volume")
            if t == "bind":
                out.append({"Type": "bind", "Source": m["Source"], "Destination": m["Target"],
                            "Mode": "", "RW": not m.get("ReadOnly"), "Propagation": "rprivate"})
            elif t == "volume":
                vo = m.get("VolumeOptions") or {}
                out.append(await self._volume_mount(
                    m.get("Source") or "", m["Target"], "", not m.get("ReadOnly"), rec,
                    options=(vo.get("DriverConfig") or {}).get("Options") or None,
                    labels=vo.get("Labels") or None))
            elif t == "tmpfs":
                out.append({"Type": "tmpfs", "Source": "", "Destination": m["Target"], "Mode": "",
                            "RW": not m.get("ReadOnly"), "Propagation": "",
                            "_options": m.get("TmpfsOptions") or {}})
        taken = {m["Destination"] for m in out}
        for dst in (rec["Config"].get("Volumes") or {}):
            if dst not in taken and dst not in (hc.get("Tmpfs") or {}):
                out.append(await self._volume_mount("", dst, "", True, rec))
        return out

    async def _volume_mount(self, name, dst, mode, rw, rec, options=None, labels=None) -> dict:
        if self.volumes is None:
            raise errors.InvalidArgument("named volumes are not available in this build")
        vol = await asyncio.to_thread(self.volumes.get_or_create, name or None,
                                      anonymous=not name, options=options, labels=labels)
        await asyncio.to_thread(self.volumes.add_user, vol["Name"], rec["Id"])
        return {"Type": "volume", "Name": vol["Name"], "Source": vol["Mountpoint"],
                "Destination": dst, "Driver": "local", "Mode": mode or "z", "RW": rw,
                "Propagation": "", "_anonymous": not name}

    # ------------------------------------------------------------ start
    async def start(self, ref: str):
        c = self.get(ref)
        async with c.lock:
            if c.running:
                raise errors.NotModified("container already started")
            if c.removing:
                raise errors.Conflict(f"cannot start container {c.id}: removal in progress")
            await self._start(c)

    async def _start(self, c: Container):
        cid = c.id
        cdir = self.container_dir(cid)
        rootfs = os.path.join(cdir, "rootfs")
        runtime = self.runtime_path(c)
        c.stop_requested = False
        c.private["ManuallyStopped"] = False
        netns = None
        try:
            await asyncio.to_thread(self.rootfs.mount, cid, rootfs)
            netns = await self._setup_network(c)
            spec = await asyncio.to_thread(self._build_spec, c, rootfs, netns)
            tmp = os.path.join(cdir, "config.json.tmp")
            with open(tmp, "w") as f:
                json.dump(spec, f)
            os.rename(tmp, os.path.join(cdir, "config.json"))
            if os.path.exists(os.path.join(self.monitor.runtime_root, cid)):
                await self.monitor.delete(runtime, cid)   # a stale state from a crash
            pid = await self.monitor.create(
                cid, name=c.name, bundle=cdir, runtime=runtime, log_path=c.rec["LogPath"],
                terminal=c.tty, stdin=bool(c.config.get("OpenStdin")),
                log_size_max=self._log_size_max(c))
        except errors.SkiffError as e:
            await self._start_failed(c, e, netns)
            raise self._start_error(c, e)
        except BaseException as e:
            await self._start_failed(c, e, netns)
            raise
        # attachers registered before start connect now, before the process runs
        pending, c.pending_attach = c.pending_attach, []
        for fn in pending:
            try:
                await asyncio.wait_for(fn(), 5)
            except Exception as e:
                log.warning("attach before start failed: %s", e)
        try:
            await self.monitor.start(runtime, cid)
        except errors.SkiffError as e:
            await self.monitor.kill(runtime, cid, _signal.SIGKILL)
            await self._start_failed(c, e, netns)
            raise self._start_error(c, e)
        st = c.state
        st.update({"Running": True, "Paused": False, "Restarting": False, "OOMKilled": False,
                   "Dead": False, "Pid": pid, "ExitCode": 0, "Error": "", "StartedAt": now_ts()})
        c.private["HasBeenStarted"] = True
        c.running_event.set()
        self.save(c)
        if not self.monitor.watch(cid, lambda: self.spawn(self._on_exit(c))):
            self.spawn(self._on_exit(c))
        self.emit(c, "start")
        self._start_health(c)

    def _log_size_max(self, c) -> int:
        """json-file's max-size (conmon truncates the file when it is reached)."""
        opts = ((c.host_config.get("LogConfig") or {}).get("Config") or {})
        v = opts.get("max-size")
        if not v:
            return 0
        from skiff.engine.create import parse_bytes
        return parse_bytes(v)

    def _start_error(self, c, e):
        if getattr(e, "engine_start", False):
            return e   # the engine's own start work (volume mounts, IPC): Docker's words
        msg = e.message
        if not msg.startswith("OCI runtime"):
            msg = f"failed to create task for container: OCI runtime create failed: {msg}: unknown"
        low = msg.lower()
        if "executable file not found" in low or "no such file or directory" in low:
            return errors.InvalidArgument(msg) if "exec" in low else errors.Internal(msg)
        if "permission denied" in low and "exec" in low:
            return errors.InvalidArgument(msg)
        return errors.Internal(msg)

    async def _start_failed(self, c, e, netns):
        msg = getattr(e, "message", str(e))
        low = msg.lower()
        code = 128
        if "executable file not found" in low or ("no such file or directory" in low and "exec" in low):
            code = 127
        elif "permission denied" in low and "exec" in low:
            code = 126
        c.state.update({"Running": False, "Pid": 0, "ExitCode": code, "Error": msg})
        runtime = self.runtime_path(c)
        await self.monitor.delete(runtime, c.id)
        await self._teardown(c)
        self.save(c)
        # a failed start must not leave attachers hanging
        pending, c.pending_attach = c.pending_attach, []
        for fn in pending:
            if hasattr(fn, "cancel"):
                fn.cancel()
        c.resolve_exit_waiters(code, msg)
        if c.host_config.get("AutoRemove"):
            self.spawn(self._auto_remove_failed(c, code, msg))

    async def _auto_remove_failed(self, c, code, msg):
        await asyncio.sleep(0)
        try:
            await self.remove(c.id, force=True, volumes=True)
        except errors.SkiffError as e:
            log.warning("auto-remove %s: %s", c.id[:12], e)

    def _build_spec(self, c: Container, rootfs: str, netns: str | None) -> dict:
        rec, cfg, hc = c.rec, c.config, c.host_config
        argv = [rec["Path"]] + list(rec["Args"])
        init = hc.get("Init")
        mounts = []
        if init and self.config.init_path:
            argv = [INIT_PATH_IN_CONTAINER, "--"] + argv
            mounts.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind",
                           "source": self.config.init_path, "options": ["rbind", "ro"]})
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.append("HOSTNAME=" + cfg.get("Hostname", ""))
        if c.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        user = _user.resolve(rootfs, cfg.get("User"))
        if not any(e.startswith("HOME=") for e in env):
            env.append("HOME=" + _user.home_of(rootfs, user["uid"]))
        process = {"terminal": c.tty, "user": user, "args": argv, "env": env,
                   "cwd": cfg.get("WorkingDir") or "/"}
        cs = hc.get("ConsoleSize") or [0, 0]
        if c.tty and cs and cs[0] and cs[1]:
            process["consoleSize"] = {"height": int(cs[0]), "width": int(cs[1])}
        for name in ("resolv.conf", "hostname", "hosts"):
            if hc.get("NetworkMode") == "host" and name != "hostname" and False:
                continue
            mounts.append({"destination": "/etc/" + name, "type": "bind",
                           "source": os.path.join(self.container_dir(c.id), name),
                           "options": ["rbind", "rprivate"]})
        for m in rec.get("Mounts") or []:
            if m["Type"] in ("bind", "volume"):
                opts = ["rbind", "rprivate" if m["Type"] == "volume" else (m.get("Propagation") or "rprivate")]
                if not m.get("RW", True):
                    opts.append("ro")
                mounts.append({"destination": m["Destination"], "type": "bind",
                               "source": m["Source"], "options": opts})
            elif m["Type"] == "tmpfs":
                mounts.append({"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "noexec"]})
        for dst, opts in (hc.get("Tmpfs") or {}).items():
            o = ["nosuid", "nodev", "noexec"] + [x for x in (opts or "").split(",") if x]
            mounts.append({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o})
        parent = (hc.get("CgroupParent") or "").rstrip("/")
        if parent and not parent.startswith("/"):
            parent = "/" + parent
        cgroups_path = f"{parent or self.config.cgroup_parent}/{c.id}"
        c.private["CgroupsPath"] = cgroups_path
        cns = {}
        for key, kind, proc_name in (("IpcMode", "ipc", "ipc"), ("PidMode", "pid", "pid"),
                                     ("UTSMode", "uts", "uts"), ("NetworkMode", "network", "net")):
            mode = hc.get(key) or ""
            if mode.startswith("container:") and kind == "ipc":
                from skiff.engine.create import ipc_join   # the donor's checks and /dev/shm
                cns.update(ipc_join(mode.split(":", 1)[1], self.get, self.container_dir))
            elif mode.startswith("container:"):
                other = self.get(mode.split(":", 1)[1])
                if not other.running:
                    raise errors.Conflict(f"cannot join {kind} namespace of a non running "
                                          f"container: {other.id}")
                cns[kind] = f"/proc/{other.state['Pid']}/ns/{proc_name}"
        if self.create_spec is not None:
            spec = self.create_spec(
                container_namespaces=cns or None,
                config=cfg, host_config=hc, container_id=c.id, process=process,
                netns_path=netns, extra_mounts=mounts, hostname=cfg.get("Hostname") or c.id[:12],
                cgroups_path=cgroups_path, rootfs=rootfs,
                shm_path=os.path.join(self.container_dir(c.id), "mounts", "shm"))
        else:
            spec = spec_min.build(rec, process=process, netns=netns, mounts=mounts,
                                  hostname=cfg.get("Hostname") or c.id[:12],
                                  cgroups_path=cgroups_path)
        spec.setdefault("linux", {})["cgroupsPath"] = cgroups_path
        return spec

    async def _setup_network(self, c: Container) -> str | None:
        """Write hosts/hostname/resolv.conf; ask skiff.network for the netns."""
        cdir = self.container_dir(c.id)
        hc = c.host_config
        mode = hc.get("NetworkMode", "bridge")
        hostname = c.config.get("Hostname") or c.id[:12]
        netns = None
        settings = None
        ip = ""
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not other.running:
                raise errors.Conflict(f"cannot join network of a non running container: {other.id}")
            netns = f"/proc/{other.state['Pid']}/ns/net"
        elif mode == "host":
            netns = None
        elif self.network is not None:
            path = os.path.join(self.exec_root, "netns", c.id)
            nets = c.private.get("RequestedNetworks") or mode
            settings = await asyncio.to_thread(
                self.network.setup_container, c.id, c.name, path, nets,
                hc.get("PortBindings") or {}, publish_all=bool(hc.get("PublishAllPorts")),
                exposed_ports=c.config.get("ExposedPorts") or {}, hostname=hostname)
            netns = path
            if settings:
                ns = c.rec["NetworkSettings"]
                ns.update(settings)
                ip = ns.get("IPAddress") or next(
                    (n.get("IPAddress") for n in (ns.get("Networks") or {}).values()
                     if n.get("IPAddress")), "")
        _write(os.path.join(cdir, "hostname"), hostname + "\n")
        hosts = None
        resolv = None
        if self.network is not None and mode not in ("host",) and not mode.startswith("container:"):
            try:
                hosts = self.network.hosts_file(c.id, hostname, c.config.get("Domainname") or None,
                                                hc.get("ExtraHosts") or [])
            except Exception as e:
                log.warning("hosts file of %s: %s", c.id[:12], e)
                hosts = None
            try:
                resolv = self.network.resolv_conf(c.id, hc.get("Dns") or self.config.dns,
                                                  hc.get("DnsSearch") or [], hc.get("DnsOptions") or [])
            except Exception:
                resolv = None
        if hosts is None:
            hosts = _default_hosts(hostname, ip, hc.get("ExtraHosts") or [], mode == "host")
        if resolv is None:
            resolv = _default_resolv(hc.get("Dns") or self.config.dns, hc.get("DnsSearch") or [],
                                     hc.get("DnsOptions") or [])
        _write(os.path.join(cdir, "hosts"), hosts)
        _write(os.path.join(cdir, "resolv.conf"), resolv)
        return netns

    def rewrite_resolv_conf(self, c: Container):
        """Rewrite a running container's /etc/resolv.conf from the network
        layer (after ``network connect`` put a default-bridge container on a
        user network it points at the embedded DNS, 127.0.0.11, as Docker's).
        In place: the file is bind-mounted into the container."""
        if self.network is None:
            return
        hc = c.host_config
        text = self.network.resolv_conf(c.id, hc.get("Dns") or self.config.dns,
                                        hc.get("DnsSearch") or [], hc.get("DnsOptions") or [])
        path = os.path.join(self.container_dir(c.id), "resolv.conf")
        try:
            with open(path, "r+") as f:
                if f.read() == text:
                    return
                f.seek(0)
                f.truncate()
                f.write(text)
        except FileNotFoundError:
            _write(path, text)

    async def _teardown(self, c: Container):
        cid = c.id
        mode = c.host_config.get("NetworkMode", "bridge")
        if self.network is not None and mode != "host" and not mode.startswith("container:"):
            try:
                await asyncio.to_thread(self.network.teardown_container, cid)
            except Exception as e:
                log.warning("network teardown of %s: %s", cid[:12], e)
            ns = c.rec["NetworkSettings"]
            ns.update({"SandboxKey": "", "IPAddress": "", "Gateway": "", "IPPrefixLen": 0,
                       "MacAddress": "", "Ports": {}})
            for n in (ns.get("Networks") or {}).values():
                n.update({"IPAddress": "", "Gateway": "", "IPPrefixLen": 0, "MacAddress": "",
                          "EndpointID": ""})
        try:
            from skiff.engine.create import release_start_mounts   # shareable shm, volume mounts
            await asyncio.to_thread(release_start_mounts, cid, self.container_dir(cid), self.volumes)
        except Exception as e:
            log.warning("start mounts of %s: %s", cid[:12], e)
        try:
            await asyncio.to_thread(self.rootfs.unmount, cid, os.path.join(self.container_dir(cid), "rootfs"))
        except Exception as e:
            log.warning("unmount of %s: %s", cid[:12], e)
        parent = os.path.dirname(c.private.get("CgroupsPath") or "")
        if parent and parent != self.config.cgroup_parent:
            _rmdir_cgroup_parents(parent)   # a --cgroup-parent the runtime made

    # ------------------------------------------------------------ exit
    async def _on_exit(self, c: Container):
        if not c.running and not c.state.get("Restarting"):
            return
        cid = c.id
        code = self.monitor.read_exit(cid)
        if code is None:
            code = 255
        oom = self.monitor.oom_killed(cid)
        if c.health_task:
            c.health_task.cancel()
            c.health_task = None
        runtime = self.runtime_path(c)
        await self.monitor.delete(runtime, cid)
        await self._teardown(c)
        started = c.state.get("StartedAt")
        c.state.update({"Running": False, "Paused": False, "Pid": 0, "ExitCode": code,
                        "OOMKilled": oom, "FinishedAt": now_ts()})
        if c.state.get("Health"):
            c.state["Health"]["Status"] = "unhealthy"
        c.running_event.clear()
        if oom:
            self.emit(c, "oom")
        self.emit(c, "die", exitCode=code)
        c.resolve_exit_waiters(code)
        if self._should_restart(c, code):
            c.state["Restarting"] = True
            self.save(c)
            c.restart_task = self.spawn(self._restart_later(c, started))
            return
        self.save(c)
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(cid, force=True, volumes=True)
            except errors.SkiffError as e:
                log.warning("auto-remove %s: %s", cid[:12], e)

    def _should_restart(self, c: Container, code: int) -> bool:
        if c.stop_requested or c.removing:
            return False
        rp = c.host_config.get("RestartPolicy") or {}
        name = rp.get("Name") or "no"
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            mx = int(rp.get("MaximumRetryCount") or 0)
            return code != 0 and (mx == 0 or c.rec.get("RestartCount", 0) < mx)
        return False

    async def _restart_later(self, c: Container, started_at: str):
        delay = c.private.get("RestartDelay", 0.1)
        from skiff.engine.container import ts_seconds
        if started_at and time.time() - ts_seconds(started_at) > 10:
            delay = 0.1
        c.private["RestartDelay"] = min(delay * 2, 60)
        await asyncio.sleep(delay)
        async with c.lock:
            if not c.state.get("Restarting") or c.stop_requested or c.removing:
                c.state["Restarting"] = False
                self.save(c)
                return
            c.rec["RestartCount"] = c.rec.get("RestartCount", 0) + 1
            try:
                await self._start(c)
            except errors.SkiffError as e:
                log.warning("restart of %s failed: %s", c.id[:12], e)
                c.state["Restarting"] = False
                self.save(c)
            else:
                c.state["Restarting"] = False
                self.save(c)

    # ------------------------------------------------------------ stop/kill
    async def stop(self, ref: str, timeout: int | None = None, sig=None):
        c = self.get(ref)
        if c.state.get("Restarting"):
            c.stop_requested = True
            c.state["Restarting"] = False
            c.private["ManuallyStopped"] = True
            if c.restart_task:
                c.restart_task.cancel()
            self.save(c)
            self.emit(c, "stop")
            return
        if not c.running:
            raise errors.NotModified("container already stopped")
        c.stop_requested = True
        c.private["ManuallyStopped"] = True
        await self._stop(c, timeout, sig)
        self.emit(c, "stop")

    async def _stop(self, c: Container, timeout=None, sig=None):
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = 10
        sig = parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
        runtime = self.runtime_path(c)
        fut = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(fut)
        if c.paused:
            sig = int(_signal.SIGKILL)
        self.emit(c, "kill", signal=sig)
        await self.monitor.kill(runtime, c.id, sig)
        if c.paused:
            await self.monitor.runtime(runtime, "resume", c.id, check=False)
        try:
            if timeout < 0:
                await fut
            else:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            return
        except asyncio.TimeoutError:
            pass
        await self.monitor.kill(runtime, c.id, _signal.SIGKILL, all_=True)
        try:
            await asyncio.wait_for(fut, 30)
        except asyncio.TimeoutError:
            raise errors.Internal(f"cannot stop container: {c.id}: tried to kill container, but did not receive an exit event")

    async def kill(self, ref: str, sig=None):
        c = self.get(ref)
        signum = parse_signal(sig)
        if not c.running:
            raise errors.Conflict(f"cannot kill container: {c.name}: container {c.id} is not running")
        self.emit(c, "kill", signal=signum)
        rc, _, err = await self.monitor.kill(self.runtime_path(c), c.id, signum)
        if rc != 0 and c.running:
            raise errors.Internal(f"cannot kill container: {c.id}: {err.strip()}")

    async def restart(self, ref: str, timeout=None, sig=None):
        c = self.get(ref)
        async with c.lock:
            if c.running:
                c.stop_requested = True
                await self._stop(c, timeout, sig)
                c.stop_requested = False
            if c.restart_task:
                c.restart_task.cancel()
            c.state["Restarting"] = False
            await self._start(c)
        self.emit(c, "restart")

    async def pause(self, ref: str):
        c = self.get(ref)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is already paused")
        await self.monitor.runtime(self.runtime_path(c), "pause", c.id)
        c.state["Paused"] = True
        self.save(c)
        self.emit(c, "pause")

    async def unpause(self, ref: str):
        c = self.get(ref)
        if not c.paused:
            raise errors.Conflict(f"Container {c.id} is not paused")
        await self.monitor.runtime(self.runtime_path(c), "resume", c.id)
        c.state["Paused"] = False
        self.save(c)
        self.emit(c, "unpause")

    # ------------------------------------------------------------ wait
    def wait_future(self, ref: str, condition: str = "not-running") -> asyncio.Future:
        """Registered synchronously, so a fast exit after this call is never missed."""
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise errors.InvalidArgument(f"invalid condition: \"{condition}\"")
        if condition == "removed":
            c.remove_waiters.append(fut)
        elif condition == "not-running" and not c.running and not c.state.get("Restarting"):
            fut.set_result((c.state.get("ExitCode", 0), None))
        else:
            c.exit_waiters.append(fut)
        return fut

    # ------------------------------------------------------------ remove
    async def remove(self, ref: str, force=False, volumes=False, link=False):
        c = self.get(ref)
        if link:
            raise errors.InvalidArgument("Conflict, cannot remove the default link name of the container")
        if c.removing:
            raise errors.Conflict(f"removal of container {c.id} is already in progress")
        if (c.running or c.state.get("Restarting")) and not force:
            state = "paused" if c.paused else ("restarting" if c.state.get("Restarting") else "running")
            raise errors.Conflict(
                f"cannot remove container \"/{c.name}\": container is {state}: "
                f"stop the container before removing or force remove")
        c.removing = True
        try:
            if c.state.get("Restarting"):
                c.stop_requested = True
                if c.restart_task:
                    c.restart_task.cancel()
                c.state["Restarting"] = False
            if c.running:
                c.stop_requested = True
                await self._stop(c, 0, "SIGKILL")
            for eid in list(c.rec.get("ExecIDs") or []):
                self.execs.pop(eid, None)
            runtime = self.runtime_path(c)
            await self.monitor.delete(runtime, c.id)
            await self._teardown(c)
            await asyncio.to_thread(self.rootfs.remove, c.id)
            if self.volumes is not None:
                try:
                    await asyncio.to_thread(self.volumes.release, c.id, remove_anonymous=volumes)
                except Exception as e:
                    log.warning("release volumes of %s: %s", c.id[:12], e)
            self.monitor.cleanup(c.id)
            await asyncio.to_thread(self._remove_files, c.id)
        except BaseException:
            c.removing = False
            raise
        self.db.delete_container(c.id)
        self.containers.pop(c.id, None)
        self.emit(c, "destroy")
        c.resolve_remove_waiters(c.state.get("ExitCode", 0))
        c.resolve_exit_waiters(c.state.get("ExitCode", 0))

    def _remove_files(self, cid: str):
        d = self.container_dir(cid)
        r = os.path.join(d, "rootfs")
        if os.path.ismount(r):
            raise errors.Internal(f"unable to remove filesystem for {cid}: {r}: device or resource busy")
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists(d):
            raise errors.Internal(f"unable to remove filesystem for {cid}: {d}")

    async def prune(self, filters: dict) -> dict:
        deleted, reclaimed = [], 0
        for c in list(self.containers.values()):
            if c.running or c.state.get("Restarting"):
                continue
            if not _match_label_filters(c, filters):
                continue
            until = (filters or {}).get("until")
            if until:
                from skiff.engine.container import ts_seconds
                lim = _parse_until(until[0])
                if ts_seconds(c.rec["Created"]) >= lim:
                    continue
            await self.remove(c.id)
            deleted.append(c.id)
        self.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ------------------------------------------------------------ rename
    async def rename(self, ref: str, new: str):
        c = self.get(ref)
        new = (new or "").lstrip("/")
        if not new or not NAME_RE.match(new):
            raise errors.InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if new == c.name:
            raise errors.InvalidArgument("Renaming a container with the same name as its current name")
        other = self.name_taken(new)
        if other:
            raise errors.Conflict(
                f'Conflict. The container name "/{new}" is already in use by container '
                f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        old = c.name
        c.rec["Name"] = "/" + new
        self.save(c)
        self.emit(c, "rename", oldName="/" + old)

    # ------------------------------------------------------------ list
    def compute_size(self, c: Container):
        try:
            c.private["SizeRw"] = int(self.images.container_size(c.id))
        except Exception:
            c.private["SizeRw"] = 0
        try:
            img = self.images.get(c.rec["Image"])
            c.private["SizeRootFs"] = c.private["SizeRw"] + int(img.size or 0)
        except Exception:
            c.private["SizeRootFs"] = c.private["SizeRw"]

    def list(self, all_=False, limit=-1, size=False, filters=None, latest=False) -> list:
        cs = sorted(self.containers.values(), key=lambda c: c.rec["Created"], reverse=True)
        filters = filters or {}
        out = []
        for c in cs:
            c.sync_status()
            if not (all_ or limit > 0 or latest) and not c.running and not c.state.get("Restarting") \
                    and "status" not in filters and "exited" not in filters:
                continue
            if not _match_filters(self, c, filters):
                continue
            if size:
                self.compute_size(c)
            out.append(c.list_json(size))
        if latest:
            out = out[:1]
        if limit and limit > 0:
            out = out[:limit]
        return out

    # ------------------------------------------------------------ top
    async def top(self, ref: str, ps_args: str | None = None) -> dict:
        c = self.get(ref)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        rc, out, err = await self.monitor.runtime(self.runtime_path(c), "ps", "--format", "json", c.id)
        try:
            pids = set(json.loads(out or "[]") or [])
        except ValueError:
            pids = set()
        args = (ps_args or "-ef").split()
        proc = await asyncio.create_subprocess_exec(
            "ps", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        pout, perr = await proc.communicate()
        if proc.returncode != 0:
            raise errors.Internal(f"ps: {perr.decode().strip()}")
        lines = pout.decode().splitlines()
        titles = lines[0].split()
        try:
            pidx = titles.index("PID")
        except ValueError:
            raise errors.Internal(f"Couldn't find PID field in ps output")
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pidx and fields[pidx].isdigit() and int(fields[pidx]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    # ------------------------------------------------------------ resize
    async def resize(self, ref: str, h: int, w: int):
        c = self.get(ref)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if not c.tty:
            return
        self.monitor.resize(self.container_dir(c.id), h, w)

    # ------------------------------------------------------------ attach
    async def attach(self, ref: str, conn, *, stdin: bool, stdout: bool, stderr: bool,
                     detach_keys: str | None = None):
        """Pump a container's stdio to/from ``conn`` (an api.streams.Hijacked)."""
        c = self.get(ref)
        if c.paused:
            raise errors.Conflict("You cannot attach to a paused container, unpause it first")
        use_stdin = stdin and bool(c.config.get("OpenStdin"))
        loop = asyncio.get_running_loop()
        sock_holder = {}
        ready = loop.create_future()

        async def connect():
            try:
                sock_holder["s"] = await attach_socket(self.container_dir(c.id))
            except BaseException:
                if not ready.done():
                    ready.set_result(False)
                raise
            if not ready.done():
                ready.set_result(True)

        def cancel():
            if not ready.done():
                ready.set_result(False)
        connect.cancel = cancel
        if c.running:
            try:
                await connect()
            except OSError as e:
                raise errors.Conflict(f"cannot attach: {e.strerror}")
        else:
            c.pending_attach.append(connect)
            ok = await _await_or_closed(ready, conn)
            if not ok or "s" not in sock_holder:
                if connect in c.pending_attach:
                    c.pending_attach.remove(connect)
                return
        s = sock_holder["s"]
        self.emit(c, "attach")

        stdin_done = loop.create_future()
        keys = parse_detach_keys(detach_keys) if (use_stdin and c.tty) else b""
        detached = {"v": False}

        async def pump_in():
            try:
                if await copy_stdin(loop, conn, s, keys, forward=use_stdin):
                    detached["v"] = True
                    if not stdin_done.done():
                        stdin_done.set_result(None)
                    return
            except (ConnectionError, OSError):
                pass
            finally:
                if use_stdin and not detached["v"]:
                    if c.config.get("StdinOnce"):
                        # the container's stdin closes; output goes on until it exits
                        try:
                            s.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                    elif not stdin_done.done():
                        # Docker: without StdinOnce, the client's EOF ends the attach
                        stdin_done.set_result(None)

        in_task = loop.create_task(pump_in())
        try:
            while True:
                recv = asyncio.ensure_future(loop.sock_recv(s, 8193))
                done, _ = await asyncio.wait({recv, stdin_done}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                try:
                    pkt = recv.result()
                except (ConnectionError, OSError):
                    break
                if not pkt:
                    break
                kind, data = pkt[0], pkt[1:]
                if kind == 2 and stdout:
                    await conn.send(1, data)
                elif kind == 3 and stderr:
                    await conn.send(2, data)
        finally:
            in_task.cancel()
            s.close()

    # ------------------------------------------------------------ stats
    async def stats_sample(self, c: Container) -> dict:
        from skiff.engine import stats
        if not c.running:
            s = {"read": ZERO_TIME, "pids_stats": {}, "blkio_stats": {}, "num_procs": 0,
                 "storage_stats": {}, "cpu_stats": stats.empty_cpu(), "memory_stats": {}}
        else:
            s = await asyncio.to_thread(stats.sample, c.private.get("CgroupsPath") or f"{self.config.cgroup_parent}/{c.id}",
                                        c.state.get("Pid") or 0)
        s["name"] = "/" + c.name
        s["id"] = c.id
        return s

    # ------------------------------------------------------------ health
    def _start_health(self, c: Container):
        hc = c.config.get("Healthcheck")
        if not hc or not hc.get("Test") or hc["Test"][0] == "NONE":
            return
        from skiff.engine import health
        c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.save(c)
        c.health_task = self.spawn(health.run(self, c))

    # ------------------------------------------------------------ restore
    async def restore(self):
        for rec in self.db.load_containers():
            rec["ExecIDs"] = None    # exec sessions do not outlive the daemon
            c = Container(rec)
            self.containers[c.id] = c
        for c in list(self.containers.values()):
            if c.running or c.state.get("Restarting"):
                if c.running and self.monitor.watch(c.id, lambda c=c: self.spawn(self._on_exit(c))):
                    c.running_event.set()
                    rootfs = os.path.join(self.container_dir(c.id), "rootfs")
                    try:
                        await asyncio.to_thread(self.rootfs.mount, c.id, rootfs)
                    except Exception as e:
                        log.warning("remount of %s: %s", c.id[:12], e)
                    if self.network is not None and hasattr(self.network, "restore_container"):
                        pass
                    self._start_health(c)
                    continue
                # exited while the daemon was away
                c.state["Running"] = True
                await self._on_exit(c)
        if self.network is not None:
            running = {c.id for c in self.containers.values() if c.running}
            try:
                await asyncio.to_thread(self.network.restore, running)
                self.network.start()
            except Exception as e:
                log.warning("network restore: %s", e)
        for c in list(self.containers.values()):
            if c.id not in self.containers or c.running:
                continue
            name = (c.host_config.get("RestartPolicy") or {}).get("Name")
            if name == "always" or (name == "unless-stopped" and not c.private.get("ManuallyStopped")):
                if c.private.get("HasBeenStarted"):
                    try:
                        async with c.lock:
                            await self._start(c)
                    except errors.SkiffError as e:
                        log.warning("restart of %s on daemon start: %s", c.id[:12], e)

    async def shutdown(self):
        """Containers keep running; only our own tasks stop."""
        for c in self.containers.values():
            if c.health_task:
                c.health_task.cancel()
            if c.restart_task:
                c.restart_task.cancel()
        for t in list(self._bg):
            t.cancel()
        if self.network is not None:
            try:
                await asyncio.to_thread(self.network.cleanup)
            except Exception as e:
                log.warning("network cleanup: %s", e)
        # the daemon's cgroup parent goes with it when no container is left in it
        _rmdir_cgroup_parents(self.config.cgroup_parent)
        self.db.close()

    def make_cgroup_parent(self):
        """The daemon's cgroup parent exists from start-up on, in every
        hierarchy (as Docker's /docker), so containers' cgroups nest in it."""
        for root in _cgroup_roots(own=False):
            try:
                os.makedirs(os.path.join(root, self.config.cgroup_parent.strip("/")), exist_ok=True)
            except OSError as e:
                log.warning("cgroup parent in %s: %s", root, e)


# ---------------------------------------------------------------- helpers
def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's detach keys: "ctrl-p,ctrl-q" (default), "a", "ctrl-@", "ctrl-[" ..."""
    spec = spec or "ctrl-p,ctrl-q"
    out = bytearray()
    for k in spec.split(","):
        k = k.strip()
        if k.startswith("ctrl-") and len(k) == 6:
            ch = k[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            else:
                code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(k[5])
                if code is None:
                    raise errors.InvalidArgument(f"Invalid escape keys ({spec}) provided")
                out.append(code)
        elif len(k) == 1:
            out.append(ord(k))
        else:
            raise errors.InvalidArgument(f"Invalid escape keys ({spec}) provided")
    return bytes(out)



async def copy_stdin(loop, conn, sock, keys: bytes, forward: bool = True) -> bool:
    """The client's input → conmon's attach socket, until the client's EOF
    (→ False) or the detach keys (→ True; what came before them is sent).
    ``forward`` False: read and drop (the container has no stdin)."""
    held = b""
    while True:
        data = await conn.read()
        if not data:
            return False
        if keys:
            data, held, hit = _scan_detach(held + data, keys)
            if hit:
                if data and forward:
                    await send_packets(loop, sock, data)
                return True
        if data and forward:
            await send_packets(loop, sock, data)


def _scan_detach(data: bytes, keys: bytes):
    """→ (bytes to forward, bytes held back, detached?)."""
    i = data.find(keys)
    if i >= 0:
        return data[:i], b"", True
    for n in range(min(len(keys) - 1, len(data)), 0, -1):
        if keys.startswith(data[-n:]):
            return data[:-n], data[-n:], False
    return data, b"", False


def _write(path: str, text: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def _default_hosts(hostname, ip, extra, host_mode) -> str:
    if host_mode:
        try:
            with open("/etc/hosts") as f:
                return f.read()
        except OSError:
            pass
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    for e in extra:
        h, _, addr = e.partition(":")
        lines.append(f"{addr}\t{h}")
    if ip:
        lines.append(f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n"


def _default_resolv(dns, search, options) -> str:
    ns, srch, opts = [], [], []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                p = line.split()
                if not p:
                    continue
                if p[0] == "nameserver" and len(p) > 1 and not p[1].startswith("127.") and p[1] != "::1":
                    ns.append(p[1])
                elif p[0] == "search":
                    srch = p[1:]
                elif p[0] == "options":
                    opts = p[1:]
    except OSError:
        pass
    if dns:
        ns = list(dns)
    if search:
        srch = list(search)
    if options:
        opts = list(options)
    if not ns:
        ns = ["8.8.8.8", "8.8.4.4"]
    out = [f"nameserver {n}" for n in ns]
    if srch:
        out.append("search " + " ".join(srch))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join(out) + "\n"


def _cgroup_roots(own: bool) -> list:
    """The cgroup hierarchies' root directories (the v2 tree, or each v1
    hierarchy); with ``own`` also the daemon's own cgroup in each v1
    hierarchy (v1 memory here nests under it)."""
    base = "/sys/fs/cgroup"
    try:
        entries = [e for e in os.listdir(base) if os.path.isdir(os.path.join(base, e))
                   and not os.path.islink(os.path.join(base, e))]
    except OSError:
        return []
    roots = [r for r in [base] + [os.path.join(base, e) for e in entries]
             if os.path.exists(os.path.join(r, "cgroup.procs"))]
    if own:
        try:
            with open("/proc/self/cgroup") as f:
                for line in f:
                    _, ctrls, path = line.rstrip("\n").split(":", 2)
                    for ctl in ctrls.split(","):
                        if ctl and path not in ("", "/"):
                            roots.append(os.path.join(base, ctl.replace("name=", ""),
                                                      path.lstrip("/")))
        except OSError:
            pass
    return roots


def _rmdir_cgroup_parents(parent: str = "/skiff"):
    """Remove the (now empty) parent cgroup the runtime made, in every hierarchy."""
    rel = parent.strip("/")
    if not rel:
        return
    for r in _cgroup_roots(own=True):
        try:      # only the direct parent: ancestors may be someone else's
            os.rmdir(os.path.join(r, rel))
        except OSError:
            pass


async def _await_or_closed(fut, conn) -> bool:
    closed = asyncio.ensure_future(conn.closed())
    try:
        done, _ = await asyncio.wait({fut, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
    return fut.done() and fut.result()


def _parse_until(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        pass
    m = re.fullmatch(r"(\d+)([smhd])", v)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time() - int(m.group(1)) * mult
    from skiff.engine.logs import parse_ts
    return parse_ts(v) / 1e9


def _match_label_filters(c: Container, filters: dict) -> bool:
    labels = c.config.get("Labels") or {}
    for v in (filters or {}).get("label", []):
        k, _, val = v.partition("=")
        if k not in labels or (val and labels[k] != val):
            return False
    for v in (filters or {}).get("label!", []):
        k, _, val = v.partition("=")
        if k in labels and (not val or labels[k] == val):
            return False
    return True


def _match_filters(engine, c: Container, filters: dict) -> bool:
    if not filters:
        return True
    if not _match_label_filters(c, filters):
        return False
    for key, values in filters.items():
        values = list(values)
        if key in ("label", "label!"):
            continue
        if key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        elif key == "name":
            if not any(re.search(v, "/" + c.name) or re.search(v, c.name) for v in values):
                return False
        elif key == "status":
            if c.status_word() not in values:
                return False
        elif key == "exited":
            if c.running or not c.private.get("HasBeenStarted") or \
                    str(c.state.get("ExitCode")) not in values:
                return False
        elif key == "ancestor":
            img = c.config.get("Image", "")
            ok = False
            for v in values:
                if img == v or img == v + ":latest" or v == img + ":latest" or \
                        c.rec.get("Image", "").startswith(v) or \
                        c.rec.get("Image", "").startswith("sha256:" + v):
                    ok = True
            if not ok:
                return False
        elif key in ("before", "since"):
            try:
                other = engine.get(values[0])
            except errors.NotFound:
                return False
            if key == "before" and not c.rec["Created"] < other.rec["Created"]:
                return False
            if key == "since" and not c.rec["Created"] > other.rec["Created"]:
                return False
        elif key == "volume":
            if not any(m.get("Name") in values or m.get("Destination") in values
                       or m.get("Source") in values for m in c.rec.get("Mounts") or []):
                return False
        elif key == "network":
            nets = (c.rec.get("NetworkSettings") or {}).get("Networks") or {}
            if not any(v in nets or any(n.get("NetworkID", "").startswith(v) for n in nets.values())
                       for v in values):
                return False
        elif key == "health":
            h = (c.state.get("Health") or {}).get("Status", "none")
            if h not in values:
                return False
        elif key == "is-task":
            if "true" in values:
                return False
        elif key == "publish" or key == "expose":
            ports = (c.rec.get("NetworkSettings") or {}).get("Ports") or {}
            if not any(v in ports or v + "/tcp" in ports for v in values):
                return False
        else:
            raise errors.InvalidArgument(f"invalid filter '{key}'")
    return True
