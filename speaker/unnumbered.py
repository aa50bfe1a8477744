"""Unnumbered uplinks: turn the node state's address-less peers into link-local sessions (pure).

The controller cannot know the link-local addresses of an unnumbered link: they belong to the
two ends (the ToR's from its MAC, ours from our interface). The speaker finds them (router
discovery for the ToR's, its own from the kernel) and `resolve` rewrites each address-less peer
into a session the rest of the speaker handles like any other: peer = the ToR's link-local
address, bound to the uplink (ExaBGP `source-interface`, bfdd `interface`), our link-local as
the next hop of everything announced on it (IPv4 too: RFC 8950, as FRR's interface peers expect).
A peer whose addresses are not known yet is left out, with the reason; the other uplinks are
not held back by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from ipaddress import IPv6Address

from flatroute.fabric.naming import ifname
from flatroute.nodestate import NodeState, PeerSpec


@dataclasses.dataclass(frozen=True, slots=True)
class LinkAddresses:
    """What is known of one unnumbered uplink."""

    router: IPv6Address | None  # the ToR's link-local address (router discovery)
    own: IPv6Address | None  # ours on the uplink


def unnumbered_uplinks(state: NodeState) -> list[str]:
    """Interface names of the uplinks whose peers need link-local resolution."""
    return sorted({ifname(p.name) for p in state.peers if p.address is None})


def resolve(state: NodeState, links: Mapping[str, LinkAddresses]
            ) -> tuple[NodeState, list[str]]:
    """(the state with address-less peers resolved or left out, why any were left out)."""
    if all(p.address is not None for p in state.peers):
        return state, []
    peers: list[PeerSpec] = []
    problems: list[str] = []
    taken = {str(p.address): p.name for p in state.peers if p.address is not None}
    for p in state.peers:
        if p.address is not None:
            peers.append(p)
            continue
        dev = ifname(p.name)
        known = links.get(dev, LinkAddresses(None, None))
        if known.own is None:
            problems.append(f"peer {p.name}: uplink {dev} has no IPv6 link-local address "
                            "(is it up, with IPv6 enabled?)")
        elif known.router is None:
            problems.append(f"peer {p.name}: no router advertisement on unnumbered uplink "
                            f"{dev} yet (the ToR sends them on ports with BGP interface peers)")
        elif str(known.router) in taken:
            # ExaBGP, bfdd and the status all name a session by its peer address.
            problems.append(f"peer {p.name}: its link-local address {known.router} is also "
                            f"{taken[str(known.router)]}'s; give the ToRs distinct link-local "
                            "addresses (the default, from their MACs)")
        else:
            taken[str(known.router)] = p.name
            peers.append(dataclasses.replace(p, address=known.router, local_address=None,
                                             ipv6_next_hop=known.own, interface=dev))
    return dataclasses.replace(state, peers=tuple(peers)), problems
