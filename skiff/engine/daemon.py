"""skiffd: the daemon. ``skiffd [--config-file F] [--data-root D] [--exec-root E]
[-H unix:///run/skiff/skiff.sock] [--default-runtime R] [--default-registry H]``.

The daemon runs in a mount namespace of its own with slave propagation (host
mounts reach it, container mounts stay in it). After a restart it re-enters
the namespace its predecessor left behind (held by the running monitors), so
running containers' mounts are still visible."""

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys


def _parse(argv):
    p = argparse.ArgumentParser(prog="skiffd", description="skiff's container engine daemon")
    p.add_argument("--config-file", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--exec-root", default=None)
    p.add_argument("-H", "--host", action="append", default=None)
    p.add_argument("--default-runtime", default=None)
    p.add_argument("--default-registry", default=None)
    p.add_argument("--insecure-registry", action="append", default=None)
    p.add_argument("--registry-mirror", action="append", default=None)
    p.add_argument("-D", "--debug", action="store_true", default=None)
    p.add_argument("-l", "--log-level", default=None)
    p.add_argument("--pidfile", "-p", default=None)
    p.add_argument("--bridge", "-b", default=None)
    p.add_argument("--bip", default=None)
    p.add_argument("--iptables", default=None, choices=["true", "false"])
    p.add_argument("--dns", action="append", default=None)
    p.add_argument("--cgroup-parent", default=None)
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert", default=None)
    p.add_argument("--tlscert", default=None)
    p.add_argument("--tlskey", default=None)
    p.add_argument("-v", "--version", action="store_true")
    return p.parse_args(argv)


def _enter_mount_namespace(exec_root: str):
    """Join the namespace a running monitor holds, else make a fresh one."""
    from skiff import sys as ksys
    base = os.path.join(exec_root, "conmon")
    try:
        ids = os.listdir(base)
    except OSError:
        ids = []
    for cid in ids:
        try:
            with open(os.path.join(base, cid, "conmon.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "conmon":
                    continue
            if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
                return "shared with host"
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            try:
                ksys.setns(fd, ksys.CLONE_NEWNS)
            finally:
                os.close(fd)
            return f"joined (monitor {pid})"
        except (OSError, ValueError):
            continue
    ksys.unshare(ksys.CLONE_NEWNS)
    ksys.mount(None, "/", None, ksys.MS_REC | ksys.MS_SLAVE)
    _hide_hybrid_unified()
    return "new"


def _hide_hybrid_unified():
    """On a hybrid cgroup host the v2 tree at /sys/fs/cgroup/unified holds no
    controllers that matter, and crun refuses to run beside it; in the
    daemon's own namespace it is unmounted (the host keeps it)."""
    from skiff import sys as ksys
    p = "/sys/fs/cgroup/unified"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers") or not os.path.ismount(p):
        return
    try:
        ksys.umount(p, ksys.MNT_DETACH)
    except OSError:
        pass


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.version:
        from skiff import __version__
        print(f"skiffd version {__version__}")
        return 0
    from skiff import errors
    from skiff.engine.config import DaemonConfig
    overrides = {"data-root": args.data_root, "exec-root": args.exec_root, "hosts": args.host,
                 "default-runtime": args.default_runtime, "default-registry": args.default_registry,
                 "insecure-registries": args.insecure_registry, "registry-mirrors": args.registry_mirror,
                 "debug": args.debug, "log-level": args.log_level, "bridge": args.bridge, "bip": args.bip,
                 "iptables": None if args.iptables is None else args.iptables == "true",
                 "dns": args.dns, "cgroup-parent": args.cgroup_parent, "tls": args.tls, "tlsverify": args.tlsverify,
                 "tlscacert": args.tlscacert, "tlscert": args.tlscert, "tlskey": args.tlskey}
    try:
        config = DaemonConfig.load(args.config_file, overrides)
    except errors.SkiffError as e:
        print(f"skiffd: {e}", file=sys.stderr)
        return 1
    level = "DEBUG" if config.debug else config.log_level.upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log = logging.getLogger("skiffd")
    if os.geteuid() != 0:
        print("skiffd: must run as root", file=sys.stderr)
        return 1
    os.makedirs(config.exec_root, exist_ok=True)
    os.makedirs(config.data_root, exist_ok=True)
    try:
        how = _enter_mount_namespace(config.exec_root)
    except OSError as e:
        print(f"skiffd: mount namespace: {e}", file=sys.stderr)
        return 1
    log.info("mount namespace: %s", how)
    hosts = config.hosts or [f"unix://{os.path.join(config.exec_root, 'skiff.sock')}"]
    try:
        from skiff.api.server import check_hosts
        check_hosts(hosts, config)
    except errors.SkiffError as e:
        print(f"skiffd: {e}", file=sys.stderr)
        return 1
    pidfile = args.pidfile or os.path.join(config.exec_root, "skiffd.pid")
    try:
        return asyncio.run(_serve(config, hosts, pidfile, log))
    except errors.SkiffError as e:
        print(f"skiffd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def _serve(config, hosts, pidfile, log):
    from aiohttp import web
    from skiff.api import server
    from skiff.engine.engine import Engine
    engine = Engine(config)
    engine.make_cgroup_parent()
    if not engine.db.get_meta("engine-id"):
        engine.db.set_meta("engine-id", secrets.token_hex(16).upper())
    await engine.restore()
    app = server.make_app(engine)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        await server.start_sites(runner, hosts, config)
    except BaseException:
        await runner.cleanup()
        await engine.shutdown()   # also takes down network objects it made
        raise
    sock_ids = {}
    for h in hosts:
        if h.startswith("unix://"):
            st = os.stat(h[len("unix://"):])
            sock_ids[h[len("unix://"):]] = (st.st_dev, st.st_ino)
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    log.info("skiffd listening on %s (data-root %s, exec-root %s, runtime %s)",
             ", ".join(hosts), config.data_root, config.exec_root, config.default_runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    log.info("shutting down (containers keep running)")
    await runner.cleanup()
    await engine.shutdown()
    for path, ident in sock_ids.items():
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == ident:   # not a successor's socket
                os.unlink(path)
        except OSError:
            pass
    try:
        os.unlink(pidfile)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
