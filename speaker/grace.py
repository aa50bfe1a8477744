"""Graceful restart on our side, pure: which ToRs' learned paths are held after a (re)start.

After the speaker or ExaBGP (re)starts, the kernel still holds the learned ECMP routes of the
previous run. Each ToR's paths are held until that ToR's session is established again and has
sent End-of-RIB and a little time passed (settled), or the cap passed; a ToR whose BFD is down
is never held. No clock is read here: the caller passes the times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flatroute.nodestate import NodeState
from speaker.sessions import Session

#: seconds a restarted session must have been up, with End-of-RIB seen, before the paths held
#: from before the restart may be dropped; and without End-of-RIB (a peer that sends none)
SETTLE_AFTER_EOR = 2.0
SETTLE_WITHOUT_EOR = 5.0


def restart_cap(st: NodeState, override: float | None) -> float:
    """The longest time learned paths are held: the override, else 2x hold time (>= 6 s)."""
    return override if override is not None else float(max(2 * st.bgp.hold_time, 6))


@dataclass(slots=True)
class RestartHold:
    #: monotonic time of the last (re)start, from which the cap runs
    since: float
    #: peers (addresses) settled since then: their paths are no longer held
    settled: set[str] = field(default_factory=set)

    def restart(self, now: float) -> None:
        """A fresh ExaBGP: hold every ToR's paths again."""
        self.settled.clear()
        self.since = now

    def expired(self, now: float, cap: float) -> bool:
        return now - self.since > cap

    def all_settled(self, peers: Iterable[str], now: float, cap: float) -> bool:
        return all(p in self.settled for p in peers) or self.expired(now, cap)

    def held_devices(self, st: NodeState, sessions: Mapping[str, Session], *, now: float,
                     wall: float, cap: float) -> set[str]:
        """Uplink devices whose learned paths stay as they are in the kernel for now."""
        expired = self.expired(now, cap)
        held = set()
        for p in st.peers:
            key = str(p.address)
            s = sessions.get(key)
            up_for = wall - s.established_at if s is not None and s.established_at else 0.0
            # Settled: End-of-RIB seen and a little time since. FRR sends the default route it
            # originates (default-originate) after its End-of-RIB, so settling on EoR alone
            # deleted the held default and lost ~0.3 s of traffic on every restart.
            if key not in self.settled and s is not None and s.state == "established" and (
                    (s.eor and up_for > SETTLE_AFTER_EOR) or up_for > SETTLE_WITHOUT_EOR):
                self.settled.add(key)
            if key not in self.settled and not expired and (s is None or s.bfd != "down"):
                held.add(st.uplink_device(p.name))
        return held
