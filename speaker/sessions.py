"""What is true about each BGP session, fed by ExaBGP events (and BFD): a small state table.

Pure bookkeeping (thread-safe); it decides nothing about the kernel. It also turns what went wrong
into plain words for people: a session that never even got a TCP connection while MD5 is set is
"MD5 mismatch or peer unreachable", not a timeout.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from speaker.exabgp_json import EorEvent, NotificationEvent, StateEvent, UpdateEvent

#: RFC 4271 / 4486 notification codes in words
_NOTIFY = {
    (1, 0): "message header error", (2, 0): "OPEN message error",
    (2, 1): "unsupported BGP version", (2, 2): "peer AS mismatch (bad peer AS)",
    (2, 3): "bad BGP identifier (router-id)", (2, 4): "unsupported optional parameter",
    (2, 6): "unacceptable hold time", (2, 7): "unsupported capability",
    (3, 0): "UPDATE message error", (4, 0): "hold timer expired",
    (5, 0): "finite state machine error", (6, 0): "cease",
    (6, 1): "cease: maximum prefixes reached", (6, 2): "administrative shutdown by the peer",
    (6, 3): "peer de-configured us", (6, 4): "administrative reset by the peer",
    (6, 5): "connection rejected by the peer", (6, 6): "peer configuration change",
    (6, 7): "connection collision resolution", (6, 8): "out of resources at the peer",
    (6, 9): "hard reset by the peer",
}


def notification_words(code: int, subcode: int) -> str:
    words = _NOTIFY.get((code, subcode)) or _NOTIFY.get((code, 0))
    return words or f"notification {code}/{subcode}"


#: ExaBGP 5's down reasons: `notification received (6,2)`, `notification sent (4,0)`
_NOTIFICATION = re.compile(r"notification (received|sent)\s*\((\d+)\s*,\s*(\d+)\)")
PEER_CLOSED = "the peer closed the TCP connection (its BGP process stopped or reset the session)"
HOLD_EXPIRED = "hold timer expired: the peer stopped answering"
REFUSED = "connection refused: nothing listens on the peer's BGP port (is BGP running there?)"


def reason_words(reason: str, *, md5: bool, ever_connected: bool) -> str:
    """ExaBGP's down reason, in plain words (ExaBGP 5 says `closing connection` for every
    TCP failure, and gives a NOTIFICATION as `notification received (code,subcode)`)."""
    low = reason.lower()
    if not ever_connected and md5:
        return "MD5 mismatch or peer unreachable"
    m = _NOTIFICATION.search(low)
    if m:
        code, sub = int(m.group(2)), int(m.group(3))
        if m.group(1) == "sent" and code == 4:
            return HOLD_EXPIRED
        who = "from the peer" if m.group(1) == "received" else "sent to the peer"
        return f"NOTIFICATION {who}: {notification_words(code, sub)} (code {code}, subcode {sub})"
    if "hold" in low and "expire" in low:
        return HOLD_EXPIRED
    if "refused" in low:
        return REFUSED
    if low in ("closing connection", "peer reset") or "connection reset" in low \
            or "closed" in low or "broken" in low or "lost" in low:
        return PEER_CLOSED
    if "connection received before" in low:
        return "connection collision: the peer connected while we were connecting"
    if "timeout" in low:
        return "the peer stopped answering (TCP timeout)"
    if "process problem" in low:
        return "ExaBGP lost its API process"
    return f"session went down ({reason})" if reason else "session went down"


def unreached_words(probe: str | None, *, md5: bool) -> str:
    """A session that never got a TCP connection, with what a connect to the peer found."""
    if probe == "refused":
        return REFUSED
    if probe == "unreachable":
        return "peer unreachable: no route to it"
    if md5 and probe == "open":
        return ("MD5 mismatch: the peer accepts a TCP connection without MD5 from us (its "
                "password is not set, or it ignores ours)")
    if md5:
        return "MD5 mismatch or peer unreachable"
    return "peer unreachable: no TCP connection"


BFD_DOWN = "BFD down: the peer stopped answering (sub-second detection)"
#: the BFD state of a session whose ToR does not run BFD: BGP alone decides
BFD_OFF = "off"


@dataclass(slots=True)
class Session:
    peer: str  # address
    name: str  # ToR name
    md5: bool = False
    state: str = "idle"  # idle | connect | established | down
    since: float = field(default_factory=time.time)  # wall time of the last state change
    established_at: float | None = None
    ever_connected: bool = False
    last_error: str | None = None
    #: prefix -> next hop address, as learned from this peer
    received: dict[str, str] = field(default_factory=dict)
    eor: set[str] = field(default_factory=set)
    bfd: str | None = None  # up | down | off (no BFD for this peer) | None (not known yet)
    flaps: int = 0

    @property
    def usable(self) -> bool:
        """May the kernel use this peer's next hop? Established and not BFD-down."""
        return self.state == "established" and self.bfd != "down"


class Sessions:
    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now  # wall time (the agent's clock)
        self._lock = threading.Lock()
        self._by_peer: dict[str, Session] = {}
        self.local_asn = 0

    def configure(self, peers: dict[str, tuple[str, bool]], local_asn: int) -> None:
        """Set the peers (address -> (name, md5)); keeps state for peers that stay."""
        with self._lock:
            self.local_asn = local_asn
            for addr in list(self._by_peer):
                if addr not in peers:
                    del self._by_peer[addr]
            for addr, (name, md5) in peers.items():
                s = self._by_peer.get(addr)
                if s is None:
                    self._by_peer[addr] = Session(addr, name, md5, since=self._now())
                else:
                    s.name, s.md5 = name, md5

    def snapshot(self) -> list[Session]:
        with self._lock:
            return [Session(s.peer, s.name, s.md5, s.state, s.since, s.established_at,
                            s.ever_connected, s.last_error, dict(s.received), set(s.eor), s.bfd,
                            s.flaps) for s in self._by_peer.values()]

    def exabgp_lost(self) -> None:
        """ExaBGP died: sessions are gone, but nothing is learned about the peers (GR)."""
        with self._lock:
            for s in self._by_peer.values():
                if s.state == "established":
                    s.flaps += 1
                s.state, s.since, s.established_at = "idle", self._now(), None
                s.ever_connected = False
                s.eor.clear()

    def handle(self, event: object) -> bool:
        """Apply an ExaBGP event; returns True when the kernel may need to change."""
        with self._lock:
            peer = getattr(event, "peer", None)
            s = self._by_peer.get(peer) if isinstance(peer, str) else None
            if s is None:
                return False
            if isinstance(event, StateEvent):
                return self._state(s, event)
            if isinstance(event, UpdateEvent):
                if self.local_asn and self.local_asn in event.as_path:
                    for prefix, _nh in event.announced:  # our own routes reflected back
                        s.received.pop(prefix, None)
                    return False
                for prefix in event.withdrawn:
                    s.received.pop(prefix, None)
                for prefix, nh in event.announced:
                    s.received[prefix] = nh
                return True
            if isinstance(event, EorEvent):
                s.eor.add(event.family)
                return True
            if isinstance(event, NotificationEvent):
                words = notification_words(event.code, event.subcode)
                s.last_error = (f"NOTIFICATION from the peer: {words}"
                                if event.direction == "receive" else f"NOTIFICATION sent: {words}")
                return False
            return False

    def _state(self, s: Session, ev: StateEvent) -> bool:
        now = ev.time or self._now()
        if ev.state == "connected":
            s.ever_connected = True
            s.state, s.since = "connect", now
            return False
        if ev.state == "up":
            s.state, s.since, s.established_at = "established", now, now
            s.ever_connected = True
            s.last_error = None
            s.eor.clear()
            return True
        if ev.state == "down":
            if s.state == "established":
                s.flaps += 1
            s.state, s.since, s.established_at = "down", now, None
            s.last_error = reason_words(ev.reason, md5=s.md5, ever_connected=s.ever_connected)
            s.received.clear()
            s.eor.clear()
            s.ever_connected = False  # until the next TCP connection
            return True
        return False

    def unconnected(self, after: float) -> list[str]:
        """Peers whose session never got a TCP connection for `after` seconds."""
        now = self._now()
        with self._lock:
            return [s.peer for s in self._by_peer.values() if s.state != "established"
                    and not s.ever_connected and now - s.since > after]

    def never_connected(self, after: float,
                        probes: dict[str, str | None] | None = None) -> None:
        """Sessions that never got a TCP connection for `after` seconds get a plain error;
        `probes`: what a connect to each peer's BGP port found (speaker.tcpprobe)."""
        found = probes or {}
        with self._lock:
            unconnected = [s for s in self._by_peer.values() if s.state != "established"
                           and not s.ever_connected and self._now() - s.since > after]
            for s in unconnected:
                s.last_error = unreached_words(found.get(s.peer), md5=s.md5)

    def no_speaker(self, why: str) -> None:
        """ExaBGP is not running: no session can be up, and none is to blame for it."""
        with self._lock:
            for s in self._by_peer.values():
                if s.state != "established":
                    s.last_error = why

    def set_bfd(self, peer: str, state: str | None) -> bool:
        with self._lock:
            s = self._by_peer.get(peer)
            if s is None or s.bfd == state:
                return False
            s.bfd = state
            if state == "down" and s.state == "established":
                s.last_error = BFD_DOWN
            elif s.last_error == BFD_DOWN:  # BFD recovered under a session that stayed up
                s.last_error = None
            return True
