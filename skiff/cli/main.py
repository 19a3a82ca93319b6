"""``skiff``: docker's command line, as a pure client of the Engine API.

Which daemon (first that applies):
  1. ``-H/--host`` (unix:///path or tcp://host:port);
  2. ``SKIFF_HOST``;
  3. ``DOCKER_HOST`` only when it names a skiff socket (a unix socket whose
     file name starts with "skiff"), so a DOCKER_HOST meant for dockerd never
     redirects skiff;
  4. unix:///run/skiff/skiff.sock.

Auto-start: when nothing answers at the default socket or at a SKIFF_HOST
unix socket, skiff starts ``skiffd`` there (detached, own session), waits
for the socket and says "skiff: started skiffd (pid N)" on stderr.  The
daemon gets ``-H unix://<socket>``, ``--exec-root`` (SKIFF_EXEC_ROOT, else
/run/skiff for the default socket, else the socket's directory),
``--data-root`` from SKIFF_DATA_ROOT when set, and extra arguments from
SKIFF_DAEMON_ARGS (shell words).  Its log goes to /var/log/skiff/skiffd.log
for the default socket, else <exec-root>/skiffd.log.  SKIFF_NO_AUTOSTART=1
turns this off; an explicit -H or DOCKER_HOST never auto-starts.
"""

import os
import sys

from skiff.cli.flags import F, UsageError, parse, usage_text

GLOBAL_FLAGS = [
    F("H,host", "str", None), F("D,debug"), F("l,log-level", "str", "info"),
    F("v,version"), F("config", "str", ""), F("c,context", "str", ""),
    F("tls"), F("tlsverify"),
]

# verb → (module, function)
COMMANDS = {
    "run": ("container", "cmd_run"), "create": ("container", "cmd_create"),
    "start": ("container", "cmd_start"), "stop": ("container", "cmd_stop"),
    "restart": ("container", "cmd_restart"), "kill": ("container", "cmd_kill"),
    "rm": ("container", "cmd_rm"), "ps": ("container", "cmd_ps"),
    "logs": ("container", "cmd_logs"), "exec": ("container", "cmd_exec"),
    "attach": ("container", "cmd_attach"), "top": ("container", "cmd_top"),
    "stats": ("container", "cmd_stats"), "cp": ("container", "cmd_cp"),
    "commit": ("container", "cmd_commit"), "export": ("container", "cmd_export"),
    "wait": ("container", "cmd_wait"), "pause": ("container", "cmd_pause"),
    "unpause": ("container", "cmd_unpause"), "rename": ("container", "cmd_rename"),
    "port": ("container", "cmd_port"), "diff": ("container", "cmd_diff"),
    "update": ("container", "cmd_update"),
    "images": ("image", "cmd_images"), "pull": ("image", "cmd_pull"),
    "push": ("image", "cmd_push"), "tag": ("image", "cmd_tag"),
    "rmi": ("image", "cmd_rmi"), "save": ("image", "cmd_save"),
    "load": ("image", "cmd_load"), "import": ("image", "cmd_import"),
    "history": ("image", "cmd_history"), "build": ("image", "cmd_build"),
    "login": ("system", "cmd_login"), "logout": ("system", "cmd_logout"),
    "version": ("system", "cmd_version"), "info": ("system", "cmd_info"),
    "inspect": ("system", "cmd_inspect"), "events": ("system", "cmd_events"),
    "network": ("network", "cmd_network"), "volume": ("network", "cmd_volume"),
    "system": ("system", "cmd_system"),
}

# management command → {sub: verb or (module, function)}
MANAGEMENT = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "rm": "rm", "remove": "rm",
                  "inspect": ("container", "cmd_container_inspect"),
                  "prune": ("container", "cmd_container_prune"),
                  **{v: v for v in ("run", "create", "start", "stop", "restart", "kill",
                                    "logs", "exec", "attach", "top", "stats", "cp",
                                    "commit", "export", "wait", "pause", "unpause",
                                    "rename", "port", "diff", "update")}},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi",
              "inspect": ("image", "cmd_image_inspect"),
              "prune": ("image", "cmd_image_prune"),
              **{v: v for v in ("pull", "push", "tag", "save", "load", "import",
                                "history", "build")}},
}


class Cli:
    """What a command needs: the client (connected lazily), stdout/stderr."""

    def __init__(self, host=None, debug=False):
        from skiff.cli import client as C
        if host:
            self.host, self.autostart = host, False
        else:
            self.host, self.autostart = C.env_host()
        if os.environ.get("SKIFF_NO_AUTOSTART"):
            self.autostart = False
        self.debug = debug
        self._client = None
        self.out = sys.stdout
        self.err = sys.stderr

    @property
    def client(self):
        if self._client is None:
            from skiff.cli.client import Client, ConnectError
            c = Client(self.host)
            try:
                c.negotiate()
            except ConnectError as e:
                if not self.autostart or not e.nobody_there:
                    raise
                from skiff.cli.autostart import start_daemon
                start_daemon(self.host, self.err)
                c = Client(self.host)
                c.negotiate()
            self._client = c
        return self._client

    def new_client(self):
        """A second connection with the same negotiated version."""
        from skiff.cli.client import Client
        return Client(self.host, version=self.client.version)


class Command:
    """Helper for a verb: parse flags, print usage and errors docker's way."""

    def __init__(self, cli, name, usage, flags, args, min_args=0, max_args=None,
                 exact=None, interspersed=True, desc=""):
        self.cli = cli
        self.name = name
        self.usage = usage
        self.flags = flags
        self.desc = desc
        try:
            opts, pos, seen = parse(flags, args, interspersed)
        except UsageError as e:
            e.usage = usage
            raise
        if opts.get("help"):
            sys.stdout.write(usage_text(f"skiff {name}", usage, flags, desc))
            raise SystemExit(0)
        self.opts, self.args, self.seen = opts, pos, seen
        plural = lambda n: "s" if n != 1 else ""  # noqa: E731
        if exact is not None and len(pos) != exact:
            self.arg_error(f"'skiff {name}' requires {exact} argument{plural(exact)}")
        if max_args is not None and min_args and not (min_args <= len(pos) <= max_args):
            self.arg_error(f"'skiff {name}' requires at least {min_args} and at most "
                           f"{max_args} argument{plural(max_args)}")
        if len(pos) < min_args:
            self.arg_error(f"'skiff {name}' requires at least {min_args} argument"
                           f"{plural(min_args)}", "See")
        if max_args is not None and len(pos) > max_args:
            if max_args == 0:
                self.arg_error(f"'skiff {name}' accepts no arguments")
            self.arg_error(f"'skiff {name}' requires at most {max_args} argument"
                           f"{plural(max_args)}")

    def arg_error(self, msg, verb="Run"):
        sys.stderr.write(f"skiff: {msg}\n\nUsage:  skiff {self.name} {self.usage}\n\n"
                         f"{verb} 'skiff {self.name} --help' for more information\n")
        raise SystemExit(1)


def _usage_error(prog, usage, msg):
    sys.stderr.write(f"{msg}\n\nUsage:  {prog} {usage}\n\nRun '{prog} --help' for more information\n")


MAIN_USAGE = """
Usage:  skiff [OPTIONS] COMMAND

A container engine that does what Docker does

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  build       Build an image from a Dockerfile
  pull        Download an image from a registry
  push        Upload an image to a registry
  images      List images
  login       Log in to a registry
  logout      Log out from a registry
  version     Show the skiff version information
  info        Display system-wide information

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage skiff
  volume      Manage volumes

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Return low-level information on skiff objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
  -H, --host string      Daemon socket to connect to (default: $SKIFF_HOST,
                         else unix:///run/skiff/skiff.sock)
  -D, --debug            Enable debug mode
  -v, --version          Print version information and quit

Run 'skiff COMMAND --help' for more information on a command.
"""


def resolve(argv):
    """argv (after global flags) → (display name, module, function, rest)."""
    verb = argv[0]
    rest = argv[1:]
    if verb in MANAGEMENT:
        if not rest or rest[0] in ("--help", "-h", "help"):
            subs = ", ".join(sorted(MANAGEMENT[verb]))
            sys.stdout.write(f"\nUsage:  skiff {verb} COMMAND\n\nCommands: {subs}\n")
            raise SystemExit(0)
        sub = rest[0]
        target = MANAGEMENT[verb].get(sub)
        if target is None:
            sys.stderr.write(f"skiff: unknown command: skiff {verb} {sub}\n\n"
                             f"Run 'skiff {verb} --help' for more information\n")
            raise SystemExit(1)
        if isinstance(target, tuple):
            return f"{verb} {sub}", target[0], target[1], rest[1:]
        mod, fn = COMMANDS[target]
        return f"{verb} {sub}", mod, fn, rest[1:]
    if verb in COMMANDS:
        mod, fn = COMMANDS[verb]
        return verb, mod, fn, rest
    sys.stderr.write(f"skiff: unknown command: skiff {verb}\n\n"
                     f"Run 'skiff --help' for more information\n")
    raise SystemExit(1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # global flags stop at the first non-flag word
    try:
        gopts, rest, _ = parse(GLOBAL_FLAGS, argv, interspersed=False)
    except UsageError as e:
        _usage_error("skiff", "[OPTIONS] COMMAND", str(e))
        return 125
    if gopts.get("version"):
        from skiff import __version__
        sys.stdout.write(f"skiff version {__version__}\n")
        return 0
    if gopts.get("help") or not rest or rest[0] == "help":
        sys.stdout.write(MAIN_USAGE)
        return 0
    name, modname, fn, args = resolve(rest)
    cli = Cli(gopts.get("host"), gopts.get("debug"))
    from skiff.cli.client import APIError, ConnectError
    try:
        import importlib
        mod = importlib.import_module("skiff.cli.commands." + modname)
        rc = getattr(mod, fn)(cli, args, name)
        return rc or 0
    except UsageError as e:
        usage = getattr(e, "usage", "[OPTIONS]")
        _usage_error(f"skiff {name}", usage, str(e))
        return 125
    except ConnectError as e:
        sys.stderr.write(("skiff: " if name in ("run", "create", "container run",
                                                 "container create") else "") + f"{e}\n")
        if name in ("run", "create", "container run", "container create"):
            sys.stderr.write(f"\nRun 'skiff {name} --help' for more information\n")
            return 125
        return 1
    except APIError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    except BrokenPipeError:
        try:
            sys.stdout = None
        except Exception:
            pass
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if cli._client is not None:
            cli._client.close()


if __name__ == "__main__":
    sys.exit(main())
