"""Packet filtering and NAT with iptables (nft backend), in skiff's own chains.

skiff's chains are *derived state*: every change re-renders them from the
database and loads them with one ``iptables-restore --noflush`` (declaring a
chain there flushes it, so the load is atomic and idempotent). Only the jumps
from the built-in chains are added one by one, after a ``-C`` check.

filter: FORWARD → SKIFF-USER (yours, never flushed), SKIFF-FORWARD
  SKIFF-FORWARD → SKIFF-ISOLATION-STAGE-1, then per bridge: established
  replies, SKIFF (published ports), icc accept/drop, outbound accept, drop
  the rest towards the bridge (so it works whatever FORWARD's policy is).
nat: PREROUTING/OUTPUT (dst-type LOCAL, loopback included) → SKIFF (DNAT),
  POSTROUTING → SKIFF-POSTROUTING (MASQUERADE per subnet, and for traffic
  from the host's own addresses — 127.0.0.1 — that DNAT sent to a bridge,
  which needs route_localnet=1 on the bridge).
"""

import hashlib
import os
import shutil
import subprocess

from skiff import errors

CHAINS_FILTER = ("SKIFF-FORWARD", "SKIFF", "SKIFF-ISOLATION-STAGE-1", "SKIFF-ISOLATION-STAGE-2")
CHAINS_NAT = ("SKIFF", "SKIFF-POSTROUTING")
CHAINS_RAW = ("SKIFF-RAW",)

HOOKS = [
    # (table, builtin chain, rule args) in insertion order (each inserted at 1)
    ("filter", "FORWARD", ["-j", "SKIFF-FORWARD"]),
    ("filter", "FORWARD", ["-j", "SKIFF-USER"]),
    ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "SKIFF"]),
    ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "SKIFF"]),
    ("nat", "POSTROUTING", ["-j", "SKIFF-POSTROUTING"]),
    ("raw", "PREROUTING", ["-j", "SKIFF-RAW"]),
]


def render(networks, ports):
    """iptables-restore text for skiff's chains.

    ``networks``: dicts with bridge, subnet, internal, icc, masquerade.
    ``ports``: dicts with bridge, proto, host_ip, host_port, container_ip,
    container_port."""
    f = ["*filter"] + [f":{c} - [0:0]" for c in CHAINS_FILTER]
    f.append("-A SKIFF-FORWARD -j SKIFF-ISOLATION-STAGE-1")
    for n in networks:
        br = n["bridge"]
        f.append(f"-A SKIFF-FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        if n["internal"]:
            f.append(f"-A SKIFF-FORWARD -i {br} -o {br} -j {'ACCEPT' if n['icc'] else 'DROP'}")
            f.append(f"-A SKIFF-FORWARD -i {br} -j DROP")
            f.append(f"-A SKIFF-FORWARD -o {br} -j DROP")
            continue
        f.append(f"-A SKIFF-FORWARD -o {br} -j SKIFF")
        f.append(f"-A SKIFF-FORWARD -i {br} -o {br} -j {'ACCEPT' if n['icc'] else 'DROP'}")
        f.append(f"-A SKIFF-FORWARD -i {br} ! -o {br} -j ACCEPT")
        f.append(f"-A SKIFF-FORWARD -o {br} -j DROP")
    for n in networks:
        br = n["bridge"]
        f.append(f"-A SKIFF-ISOLATION-STAGE-1 -i {br} ! -o {br} -j SKIFF-ISOLATION-STAGE-2")
        f.append(f"-A SKIFF-ISOLATION-STAGE-2 -o {br} -j DROP")
    f.append("-A SKIFF-ISOLATION-STAGE-1 -j RETURN")
    f.append("-A SKIFF-ISOLATION-STAGE-2 -j RETURN")
    for p in ports:
        f.append(f"-A SKIFF -d {p['container_ip']}/32 -o {p['bridge']} "
                 f"-p {p['proto']} -m {p['proto']} --dport {p['container_port']} -j ACCEPT")
    f.append("COMMIT")

    n_ = ["*nat"] + [f":{c} - [0:0]" for c in CHAINS_NAT]
    # no "-i bridge -j RETURN": without a userland proxy, containers reach
    # published ports through host addresses by DNAT too (hairpin).
    for p in ports:
        dst = "" if p["host_ip"] in ("", "0.0.0.0") else f"-d {p['host_ip']}/32 "
        n_.append(f"-A SKIFF {dst}-p {p['proto']} -m {p['proto']} "
                  f"--dport {p['host_port']} -j DNAT --to-destination "
                  f"{p['container_ip']}:{p['container_port']}")
    for n in networks:
        br = n["bridge"]
        if not n["internal"] and n["masquerade"]:
            n_.append(f"-A SKIFF-POSTROUTING -s {n['subnet']} ! -o {br} -j MASQUERADE")
        n_.append(f"-A SKIFF-POSTROUTING -o {br} -m addrtype --src-type LOCAL -j MASQUERADE")
    for p in ports:  # hairpin: a container reaching its own published port
        n_.append(f"-A SKIFF-POSTROUTING -s {p['container_ip']}/32 -d {p['container_ip']}/32 "
                  f"-p {p['proto']} -m {p['proto']} --dport {p['container_port']} -j MASQUERADE")
    n_.append("COMMIT")
    # route_localnet=1 on a bridge would let a container address the host's
    # 127.0.0.1 services: loopback destinations arriving from a bridge drop.
    r = ["*raw"] + [f":{c} - [0:0]" for c in CHAINS_RAW]
    for n in networks:
        r.append(f"-A SKIFF-RAW -d 127.0.0.0/8 -i {n['bridge']} -j DROP")
    r.append("COMMIT")
    return "\n".join(f + n_ + r) + "\n"


class Iptables:
    def __init__(self, binary=None):
        self.iptables = binary or shutil.which("iptables") or "/usr/sbin/iptables"
        self.restore = shutil.which("iptables-restore") or "/usr/sbin/iptables-restore"
        self._hooked = False  # hooks and SKIFF-USER checked by this instance

    def _run(self, args, check=True, stdin=None):
        r = subprocess.run([self.iptables, "-w", "5"] + args, capture_output=True, text=True,
                           input=stdin)
        if check and r.returncode != 0:
            raise errors.Internal(f"iptables {' '.join(args)} failed: {r.stderr.strip()}")
        return r

    def has_chain(self, table, chain):
        return self._run(["-t", table, "-S", chain], check=False).returncode == 0

    def apply(self, text, loaded=None):
        """Load skiff's chains (creating SKIFF-USER once) and make sure the
        hooks from the built-in chains exist.

        ``loaded``: {table: digest} of what was last loaded (by any process
        sharing the state); tables whose text has not changed are skipped
        (each table costs iptables-restore ~15 ms), except on this instance's
        first load. Returns the digests of ``text``'s tables."""
        blocks = {}
        for block in text.split("COMMIT\n"):
            block = block.strip("\n")
            if block:
                blocks[block.split("\n", 1)[0].lstrip("*")] = block + "\nCOMMIT\n"
        digests = {t: hashlib.sha256(b.encode()).hexdigest() for t, b in blocks.items()}
        first = not self._hooked
        if first and not self.has_chain("filter", "SKIFF-USER"):
            self._run(["-t", "filter", "-N", "SKIFF-USER"], check=False)
            self._run(["-t", "filter", "-A", "SKIFF-USER", "-j", "RETURN"])
        todo = "".join(b for t, b in blocks.items()
                       if first or (loaded or {}).get(t) != digests[t])
        if todo:
            r = subprocess.run([self.restore, "-w", "5", "--noflush"], input=todo,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise errors.Internal(f"iptables-restore failed: {r.stderr.strip()}")
        if first:
            self.ensure_hooks()
        return digests

    def ensure_hooks(self):
        missing = [h for h in HOOKS
                   if self._run(["-t", h[0], "-C", h[1]] + h[2], check=False).returncode != 0]
        if any(h[1] == "FORWARD" for h in missing):
            # FORWARD must read SKIFF-USER, then SKIFF-FORWARD: re-insert both
            for table, chain, rule in HOOKS:
                if chain == "FORWARD":
                    while self._run(["-t", table, "-D", chain] + rule,
                                    check=False).returncode == 0:
                        pass
            missing = [h for h in HOOKS if h[1] == "FORWARD"] + \
                [h for h in missing if h[1] != "FORWARD"]
        for table, chain, rule in missing:
            self._run(["-t", table, "-I", chain, "1"] + rule)
        self._hooked = True

    def remove_all(self):
        """Remove every hook and chain of skiff. SKIFF-USER goes only while it
        holds nothing but its RETURN: rules a user put there are kept (with
        their FORWARD hook), as Docker keeps DOCKER-USER."""
        user = self._run(["-t", "filter", "-S", "SKIFF-USER"], check=False).stdout.split("\n")
        keep_user = any(line.startswith("-A SKIFF-USER") and line != "-A SKIFF-USER -j RETURN"
                        for line in user)
        for table, chain, rule in HOOKS:
            if keep_user and rule == ["-j", "SKIFF-USER"]:
                continue
            while self._run(["-t", table, "-D", chain] + rule, check=False).returncode == 0:
                pass
        self._hooked = False
        user_chain = () if keep_user else ("SKIFF-USER",)
        for table, chains in (("filter", CHAINS_FILTER + user_chain), ("nat", CHAINS_NAT),
                              ("raw", CHAINS_RAW)):
            for c in chains:
                self._run(["-t", table, "-F", c], check=False)
            for c in chains:
                self._run(["-t", table, "-X", c], check=False)


def set_sysctl(path, value):
    try:
        with open(os.path.join("/proc/sys", path), "w") as f:
            f.write(str(value))
        return True
    except OSError:
        return False


def get_sysctl(path):
    try:
        with open(os.path.join("/proc/sys", path)) as f:
            return f.read().strip()
    except OSError:
        return None
