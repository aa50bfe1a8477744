"""Plain words for the sessions that are not up, after each `session.set`.

- ExaBGP not running (it exited at start, or is backing off): every session not established
  says so, with ExaBGP's own reason, and the pass fails: no peer is blamed, no pass is "ok".
- A session that never got a TCP connection for max(3 s, hold/3): what a connect to the
  peer's BGP port found (speaker.tcpprobe, at most every 10 s a peer) picks the words.
"""

from __future__ import annotations

from flatroute.nodestate import NodeState
from speaker.sessions import Sessions
from speaker.tcpprobe import Probes, TcpProbe


class Diagnose:
    def __init__(self, sessions: Sessions, tcp_probe: TcpProbe) -> None:
        self.sessions = sessions
        self.probes = Probes(tcp_probe)

    def explain(self, st: NodeState, *, alive: bool, last_exit: str | None, now: float
                ) -> list[str]:
        """Set the sessions' errors; returns the pass's errors (`now`: monotonic)."""
        if not alive:
            why = "ExaBGP is not running" + (f": {last_exit}" if last_exit else "")
            self.sessions.no_speaker(why)
            return [why]
        after = max(3.0, st.bgp.hold_time / 3)
        local = {str(p.address): str(p.local_address) if p.local_address else None
                 for p in st.peers}
        found = self.probes.results(
            [(peer, local.get(peer)) for peer in self.sessions.unconnected(after)], now)
        self.sessions.never_connected(after, found)
        return []
