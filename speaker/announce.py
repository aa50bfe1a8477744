"""What the node announces to each peer: pure values, derived from the NodeState, and their diff.

Exactly `NodeState.announce` (pod aggregates and the SRv6 locator, never a /32), split by family
per session: IPv4 prefixes go to sessions with the ipv4 family (with an explicit IPv6 next hop on
IPv6 sessions: RFC 8950), IPv6 prefixes to sessions with the ipv6 family.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from flatroute.errors import InvalidInput, field_error
from flatroute.nodestate import NodeState, PeerSpec
from flatroute.plan.model import Family, Prefix

SELF = "self"


@dataclass(frozen=True, slots=True, order=True)
class Announcement:
    peer: str  # the peer's address: ExaBGP names neighbors by address
    prefix: str
    next_hop: str  # "self" or an address
    communities: tuple[str, ...] = ()


def peer_key(p: PeerSpec) -> str:
    return str(p.address)


def next_hop_for(peer: PeerSpec, prefix: Prefix, state: NodeState) -> str | None:
    """The next hop to send `prefix` with on this session, or None when it cannot carry it."""
    if prefix.version == 4:
        if Family.IPV4 not in peer.families:
            return None
        if isinstance(peer.address, IPv4Address):
            return SELF
        # IPv4 over an IPv6 session (RFC 8950): `self` would send the router-id, so be explicit.
        nh6 = peer.ipv6_next_hop or peer.local_address or _uplink_v6(state, peer.name)
        return str(nh6) if nh6 is not None else None
    if Family.IPV6 not in peer.families:
        return None
    if isinstance(peer.address, IPv6Address):
        own = peer.local_address or peer.ipv6_next_hop  # unnumbered: our link-local
        return str(own) if own is not None else SELF
    nh = peer.ipv6_next_hop or _uplink_v6(state, peer.name)
    return str(nh) if nh is not None else None


def _uplink_v6(state: NodeState, tor: str) -> IPv6Address | None:
    for u in state.uplinks:
        if u.tor == tor and u.ipv6 is not None:
            return u.ipv6.ip
    return None


def desired(state: NodeState, *, drained: bool = False) -> frozenset[Announcement]:
    if drained:
        return frozenset()
    out = set()
    for peer in state.peers:
        for prefix in state.announce:
            nh = next_hop_for(peer, prefix, state)
            if nh is not None:
                out.add(Announcement(peer_key(peer), str(prefix), nh, state.bgp.communities))
    return frozenset(out)


def diff(want: frozenset[Announcement], have: frozenset[Announcement]
         ) -> tuple[list[Announcement], list[Announcement]]:
    """(withdraw, announce): withdraw what is no longer wanted, announce what is new or changed.

    A changed next hop or community list is a new announcement for the same prefix (an implicit
    replace in BGP), so the old one is not withdrawn first: no gap, no flap.
    """
    announce = sorted(want - have)
    replaced = {(a.peer, a.prefix) for a in announce}
    withdraw = sorted(a for a in have - want if (a.peer, a.prefix) not in replaced)
    return withdraw, announce


def validate(state: NodeState, source: str) -> None:
    """Reject what the speaker cannot apply, before anything is applied."""
    errors = []
    tors = {u.tor for u in state.uplinks}
    unnumbered = {u.tor for u in state.uplinks if u.unnumbered}
    seen: set[str] = set()
    for i, p in enumerate(state.peers):
        path = f"spec.peers[{i}]"
        if p.name not in tors:
            errors.append(field_error(source, path + ".name",
                                      "unknown peer: no uplink toward this ToR", p.name))
        if p.address is None:
            if p.name not in unnumbered:
                errors.append(field_error(source, path + ".address", "a peer without an "
                                          "address needs an unnumbered uplink toward its ToR"))
        elif str(p.address) in seen:
            errors.append(field_error(source, path + ".address", "duplicate peer address",
                                      str(p.address)))
        else:
            seen.add(str(p.address))
        if p.local_address is not None and p.address is not None \
                and p.local_address.version != p.address.version:
            errors.append(field_error(source, path + ".localAddress",
                                      "must be the same family as the peer address",
                                      str(p.local_address)))
        if not p.families:
            errors.append(field_error(source, path + ".families", "needs at least one family"))
    for i, c in enumerate(state.bgp.communities):
        a, _, b = c.partition(":")
        if not (a.isdigit() and b.isdigit() and int(a) < 65536 and int(b) < 65536):
            errors.append(field_error(source, f"spec.bgp.communities[{i}]",
                                      "must be ASN:VALUE (16-bit each)", c))
    if len(state.announce) > state.bgp.max_prefixes:
        # the ToRs tear a session down past their maximum-prefix: refuse rather than flap
        errors.append(field_error(source, "spec.bgp.maxPrefixes",
                                  f"the node would announce {len(state.announce)} prefixes, "
                                  "more than its ToRs accept", state.bgp.max_prefixes))
    if errors:
        raise InvalidInput(errors)
