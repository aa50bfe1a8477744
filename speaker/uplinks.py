"""Which interface is the uplink toward each ToR: found from the peering addresses.

A server's NIC names never match ToR names (the lab names them so, nothing else does). The
node state says which addresses the node has toward each ToR (`uplinks[].ipv4/ipv6`) and
the ToR's own (`peers[].address`); the uplink is the interface that holds one of ours, else
the one whose subnet holds the ToR's, else (unnumbered uplinks, labs) the interface named
after the ToR. Pure: the interfaces and their addresses come from the kernel adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Interface, IPv6Interface

from flatroute.fabric.naming import ifname
from flatroute.nodestate import NodeState, UplinkSpec

Iface = IPv4Interface | IPv6Interface


def find(u: UplinkSpec, st: NodeState, addrs: Mapping[str, Iterable[Iface]]
         ) -> tuple[str | None, str | None]:
    """(interface, None) for one uplink, or (None, why not: what was looked for, and where)."""
    ours = [a for a in (u.ipv4, u.ipv6) if a is not None]
    theirs = [p.address for p in st.peers if p.name == u.tor and p.address is not None]
    have = {name: list(a) for name, a in addrs.items()}
    for name, held in sorted(have.items()):
        if any(a.ip == o.ip for a in held for o in ours):
            return name, None
    for name, held in sorted(have.items()):
        if any(a.version == t.version and t in a.network for a in held for t in theirs):
            return name, None
    named = ifname(u.tor)
    if named in have:
        return named, None
    looked = [f"an interface holding {' or '.join(str(o) for o in ours)}"] if ours else []
    if theirs:
        looked.append(f"one on the subnet of ToR address {' or '.join(map(str, theirs))}")
    looked.append(f"one named {named!r}")
    return None, (f"uplink to ToR {u.tor} not found: no {', nor '.join(looked)} "
                  f"(interfaces: {', '.join(sorted(have)) or 'none'})")


def resolve(st: NodeState, addrs: Mapping[str, Iterable[Iface]]) -> tuple[NodeState, list[str]]:
    """The node state with every uplink's interface named; an uplink not found keeps the
    interface named after its ToR (so its routes fail naming it) and gets an error."""
    errors: list[str] = []
    ups = []
    for u in st.uplinks:
        dev, why = find(u, st, addrs)
        if why is not None:
            errors.append(why)
        ups.append(replace(u, interface=dev or ifname(u.tor)))
    return replace(st, uplinks=tuple(ups)), errors
