"""The node's Service routes on the BGP session: announcements, drain order, status, metrics.

Service routes (`NodeState.services`: host routes inside the service pools and the ClusterIP
aggregate) ride the same ExaBGP session as the pod blocks, each with the fabric's communities
followed by its own (per source and pool). When the node is drained or the speaker stops,
they are withdrawn *first*, and acknowledged by ExaBGP, before anything else changes: traffic
to a Service moves to the other announcing nodes while this node still routes its pods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flatroute.nodestate import NodeState
from speaker.announce import Announcement, next_hop_for, peer_key


def announcements(state: NodeState) -> frozenset[Announcement]:
    """Every service route on every session that carries its family, one per prefix."""
    merged: dict[str, tuple[Any, list[str]]] = {}
    for r in state.services:
        prefix, comms = merged.setdefault(str(r.prefix), (r.prefix, []))
        comms.extend(c for c in r.communities if c not in comms)
    out = set()
    for peer in state.peers:
        for text, (prefix, comms) in merged.items():
            nh = next_hop_for(peer, prefix, state)
            if nh is not None:
                all_comms = tuple(dict.fromkeys((*state.bgp.communities, *comms)))
                out.add(Announcement(peer_key(peer), text, nh, all_comms))
    return frozenset(out)


def service_prefixes(state: NodeState) -> frozenset[str]:
    return frozenset(str(r.prefix) for r in state.services)


def steps(state: NodeState, base: frozenset[Announcement], *, drained: bool,
          applied: frozenset[Announcement]) -> list[frozenset[Announcement]]:
    """The sets to hand `session.set`, in order. `base` is the node's own announcements
    (`announce.desired`). Normally one step: base and the service routes. Drained: first
    without the service routes (while any are still sent), then nothing."""
    if not drained:
        return [base | announcements(state)]
    ours = service_prefixes(state)
    still = frozenset(a for a in applied if a.prefix not in ours)
    if len(still) != len(applied):
        return [still, frozenset()]
    return [frozenset()]


def withdraw_first(applied: frozenset[Announcement], state: NodeState
                   ) -> frozenset[Announcement] | None:
    """On stop: what to keep sending once the service routes are withdrawn (None: there
    are none to withdraw). The pod blocks stay for graceful restart to keep."""
    ours = service_prefixes(state)
    keep = frozenset(a for a in applied if a.prefix not in ours)
    return keep if keep != applied else None


def report(state: NodeState, applied: Iterable[Announcement]) -> tuple[dict[str, Any], ...]:
    """For the status: each service route, why this node has it, and whether it is sent."""
    sent: dict[str, list[str]] = {}
    for a in applied:
        sent.setdefault(a.prefix, []).append(a.peer)
    return tuple({"prefix": str(r.prefix), "service": r.service, "source": r.source.value,
                  "reason": r.reason, "communities": list(r.communities),
                  "announcedTo": sorted(sent.get(str(r.prefix), ()))}
                 for r in state.services)
