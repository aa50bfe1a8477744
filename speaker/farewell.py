"""Leaving the fabric: what a speaker does when its NodeState is a tombstone (flatroute.tombstone).

A removed node must stop announcing its pod blocks at once, and the ToRs must not keep them
as stale routes under graceful restart (another node gets those blocks once the controller
releases them). ExaBGP 5 closes a session that negotiated graceful restart *without* a
NOTIFICATION whatever it is asked (teardown, reload, shutdown: `reactor/peer.py`), so the
speaker leaves in three steps, one decision per pass (`decide`, pure):

1. `withdraw`: every announcement is withdrawn through the API (UPDATE withdrawals, ACKed:
   the ToRs drop the blocks at once, graceful restart or not), and ExaBGP is restarted with
   graceful restart off for every neighbour and nothing to announce (a reload keeps the old
   capabilities of a reset neighbour). Its new OPEN lacks the capability, which also makes
   a ToR drop any stale route of ours left (RFC 4724, 4.2), e.g. when the API was down.
2. `notify`: each session established again after step 1 is torn down with a Cease
   NOTIFICATION, subcode 3 "peer de-configured" (RFC 4486): without graceful restart
   negotiated, ExaBGP sends it.
3. `finish`: once every peer was notified and went down (or `deadline` passed), ExaBGP and
   bfdd are stopped, our kernel routes removed and the CNI node file removed.

A node that never applied a state in this run has no session to end: it finishes at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flatroute.nodestate import NodeState
from flatroute.tombstone import Removed
from speaker.sessions import Session

#: Cease subcode sent to every ToR: "peer de-configured" (RFC 4486)
CEASE_DECONFIGURED = 3
#: at least this long for the sessions to come back without graceful restart and be notified
#: (a ToR that was just sent a Cease may wait a few seconds before it accepts us again)
MIN_WAIT = 10.0
#: SIGTERM on a leaving node: at most this many passes (0.1 s apart, or sooner on an event)
STOP_PASSES = 300


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Withdraw everything and restart ExaBGP with graceful restart off."""

    state: NodeState


@dataclass(frozen=True, slots=True)
class Notify:
    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finish:
    #: why: "notified" (every peer got its NOTIFICATION), "deadline", "nothing applied"
    why: str


@dataclass(frozen=True, slots=True)
class Wait:
    pass


Action = Withdraw | Notify | Finish | Wait


@dataclass(slots=True)
class Progress:
    """Where the farewell stands (the agent's memory between passes)."""

    started_wall: float | None = None  # when the withdrawal was sent (wall time)
    deadline: float | None = None  # monotonic
    notified: dict[str, float] = field(default_factory=dict)  # peer -> wall time
    done: bool = False
    finished_why: str | None = None

    def reset(self) -> None:
        self.started_wall, self.deadline, self.done, self.finished_why = None, None, False, None
        self.notified = {}


def farewell_state(st: NodeState) -> NodeState:
    """The applied state with graceful restart off: the configuration ExaBGP leaves with."""
    return dataclasses.replace(st, bgp=dataclasses.replace(st.bgp, graceful_restart=0))


def wait_for(st: NodeState) -> float:
    """How long the sessions get to come back and be notified before the speaker gives up."""
    return max(MIN_WAIT, 2.0 * st.bgp.hold_time)


def decide(p: Progress, applied: NodeState | None, sessions: Sequence[Session], *,
           now: float) -> Action:
    """The next step of leaving the fabric (`now`: monotonic)."""
    if p.done:
        return Wait()
    if applied is None:
        return Finish("nothing applied")
    if p.started_wall is None:
        return Withdraw(farewell_state(applied))
    assert p.deadline is not None
    back = tuple(s.peer for s in sessions
                 if s.state == "established" and s.established_at is not None
                 and s.established_at > p.started_wall and s.peer not in p.notified)
    if back:
        return Notify(back)
    configured = {str(peer.address) for peer in applied.peers}
    if configured and configured <= set(p.notified) and all(
            _went_down(s, p.notified[s.peer]) for s in sessions if s.peer in configured):
        return Finish("notified")
    if now >= p.deadline:
        return Finish("deadline")
    return Wait()


def _went_down(s: Session, notified_at: float) -> bool:
    """Did the session close after its NOTIFICATION (ExaBGP may have reconnected since)?"""
    return s.state != "established" or (s.established_at or 0.0) > notified_at


def status_doc(removal: Removed | None, p: Progress) -> dict[str, Any] | None:
    """The status document's `removed` member."""
    if removal is None:
        return None
    return {"at": removal.at, "reason": removal.reason,
            "state": "left" if p.done else "leaving", "why": p.finished_why}
