"""Device access rules (``linux.resources.devices``).

cgroup v1 takes the rules literally: each one is written, in order, to
``devices.allow`` or ``devices.deny``. cgroup v2 has no devices files; access
is decided by an eBPF program (see :mod:`.bpf`). To make both behave the same,
:class:`Emulator` replays the rules with the v1 kernel's semantics and yields
the resulting state (default allow/deny plus exceptions), which the eBPF
program then encodes.
"""

WILDCARD = -1


class Rule:
    """One device rule: ``allow``, ``type`` ("a", "c", "b"), ``major`` and
    ``minor`` (-1 = any), ``access`` (subset of "rwm"). (A plain class: the
    dataclasses import costs more than this whole module.)"""

    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str, major: int, minor: int, access: str):
        self.allow, self.type, self.major, self.minor, self.access = \
            allow, type, major, minor, access

    def __eq__(self, other):
        return isinstance(other, Rule) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def _key(self):
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __repr__(self):
        return f"Rule{self._key()}"

    def v1_line(self) -> str:
        if self.type == "a":
            return "a"
        maj = "*" if self.major == WILDCARD else str(self.major)
        mnr = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {maj}:{mnr} {self.access}"


def parse(devices) -> list[Rule]:
    """OCI device cgroup entries → rules (type defaults to "a", major/minor
    to wildcard, access to "rwm"; "u" and "p" are char devices, as runc)."""
    out = []
    for d in devices or []:
        t = d.get("type") or "a"
        if t in ("u", "p"):
            t = "c"
        maj = d.get("major")
        mnr = d.get("minor")
        access = "".join(c for c in "rwm" if c in (d.get("access") or "rwm"))
        out.append(Rule(bool(d.get("allow")), t, WILDCARD if maj is None else int(maj),
                        WILDCARD if mnr is None else int(mnr), access))
    return out


class Emulator:
    """The v1 devices controller's state machine (security/device_cgroup.c):
    ``a`` resets to allow-all or deny-all; otherwise a rule with the default's
    polarity removes access bits from an exactly matching exception, and a rule
    of the other polarity adds an exception."""

    def __init__(self, default_allow: bool = True):
        self.default_allow = default_allow
        self.exceptions: dict[tuple[str, int, int], set[str]] = {}

    def apply(self, rule: Rule) -> None:
        if rule.type == "a":
            self.default_allow = rule.allow
            self.exceptions.clear()
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            left = self.exceptions.get(key, set()) - set(rule.access)
            if left:
                self.exceptions[key] = left
            else:
                self.exceptions.pop(key, None)
        else:
            self.exceptions.setdefault(key, set()).update(rule.access)

    def apply_all(self, rules) -> "Emulator":
        for r in rules:
            self.apply(r)
        return self

    def allows(self, type_: str, major: int, minor: int, access: str) -> bool:
        """What the kernel decides for one access (used by tests and as the
        reference the eBPF program must agree with)."""
        want = set(access)
        for (t, maj, mnr), acc in self.exceptions.items():
            if t != type_ or maj not in (WILDCARD, major) or mnr not in (WILDCARD, minor):
                continue
            if self.default_allow:
                if want & acc:          # deny exception overlaps: denied
                    return False
            elif want <= acc:           # allow exception covers all: allowed
                return True
        return self.default_allow

    def rules(self) -> list[Rule]:
        """The state as a minimal rule list (reset first, then exceptions)."""
        out = [Rule(self.default_allow, "a", WILDCARD, WILDCARD, "rwm")]
        for (t, maj, mnr), acc in sorted(self.exceptions.items()):
            out.append(Rule(not self.default_allow, t, maj, mnr,
                            "".join(c for c in "rwm" if c in acc)))
        return out
