"""Junos OS: hierarchical (curly-brace) configuration for `load merge`.

Reviewed against the Junos OS BGP User Guide
(https://www.juniper.net/documentation/us/en/software/junos/bgp/), its topic "BGP
Auto-Discovered Neighbors" (Junos 21.1R1+: `dynamic-neighbor ... peer-auto-discovery` with IPv6
ND, used here for the unnumbered router links) and the Routing Policies guide:
- no per-neighbour default-originate: a `no-install` discard default is exported by policy;
- inbound filters are policy chains ending in `FR-REJECT`; exact and ranged matches are
  `route-filter ... exact` / `prefix-length-range`;
- ECMP: `multipath multiple-as` (as-path multipath-relax) plus a forwarding-table
  `load-balance per-packet` (per flow on current hardware) export policy;
- RFC 8950: `family inet unicast extended-nexthop`;
- Junos has no keepalive knob: it sends keepalives every third of the hold time.
"""

from __future__ import annotations

from flatroute.plan.model import Family
from render.common import Feature, RenderedFile, header_lines
from render.view import (
    DEFAULT_V4,
    DEFAULT_V6,
    FROM_NODES,
    Link,
    PrefixList,
    RouterView,
)

NAME = "junos"
UNSUPPORTED: dict[Feature, str] = {
    Feature.UNNUMBERED_NODES: "Junos auto-discovered (link-local) neighbours take their AS "
    "from a peer-as-list and cannot carry a per-node import policy, so a node could announce "
    "another node's blocks; give the ToR a peering subnet (peering.ipv4/ipv6)",
    Feature.KEEPALIVE: "Junos always sends keepalives every third of the hold time; set "
    "spec.bgp.keepalive to holdTime/3",
}
REJECT = "FR-REJECT"
ECMP = "FR-ECMP"
COMMUNITY = "FR-COMMUNITIES"


class _Tree:
    """Builds indented Junos text; `block` opens `name {`, `end` closes it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def stmt(self, text: str) -> None:
        self.lines.append("    " * self.depth + text + ";")

    def block(self, name: str) -> None:
        self.lines.append("    " * self.depth + name + " {")
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1
        self.lines.append("    " * self.depth + "}")


def render(view: RouterView) -> list[RenderedFile]:
    return [RenderedFile(view.router.name, NAME, f"{view.router.name}.junos.conf",
                         junos_conf(view))]


def _iface(t: _Tree, name: str, v4: str | None, v6: str | None) -> None:
    phys, _, unit = name.partition(".")
    t.block(phys)
    t.block(f"unit {unit or 0}")
    if v4:
        t.block("family inet")
        t.stmt(f"address {v4}")
        t.end()
    if v6:
        t.block("family inet6")
        t.stmt(f"address {v6}")
        t.end()
    else:
        t.stmt("family inet6")
    t.end()
    t.end()


def _unit(name: str) -> str:
    return name if "." in name else f"{name}.0"


def junos_conf(view: RouterView) -> str:
    t = _Tree()
    t.lines += [f"# {line}".rstrip() for line in header_lines(view, NAME)]
    t.block("system")
    t.stmt(f"host-name {view.router.name}")
    t.end()
    link_ifaces = sorted({lk.interface for lk in view.links})
    if view.servers_v4 or view.servers_v6 or link_ifaces:
        t.block("interfaces")
        if view.servers_v4 or view.servers_v6:
            _iface(t, view.servers_interface, str(view.servers_v4 or "") or None,
                   str(view.servers_v6 or "") or None)
        for name in link_ifaces:
            _iface(t, name, None, None)
        t.end()
    t.block("protocols")
    if link_ifaces:
        t.block("router-advertisement")
        for name in link_ifaces:
            t.stmt(f"interface {_unit(name)}")
        t.end()
    _bgp(t, view)
    t.end()
    _policies(t, view)
    _routing_options(t, view)
    return "\n".join(t.lines) + "\n"


def _group_common(t: _Tree, view: RouterView, on: bool) -> None:
    t.stmt("type external")
    t.block("multipath")
    t.stmt("multiple-as")
    t.end()
    bfd = view.bgp.bfd
    if on:
        t.block("bfd-liveness-detection")
        t.stmt(f"minimum-receive-interval {bfd.min_rx_ms}")
        t.stmt(f"multiplier {bfd.multiplier}")
        t.block("transmit-interval")
        t.stmt(f"minimum-interval {bfd.min_tx_ms}")
        t.end()
        t.end()


def _chain(*names: str | None) -> str:
    return "[ " + " ".join(n for n in names if n) + " ]"


def _bgp(t: _Tree, view: RouterView) -> None:
    bgp = view.bgp
    t.block("bgp")
    t.stmt(f"hold-time {bgp.hold_time}")
    t.stmt("log-updown")
    if bgp.graceful_restart > 0:
        t.block("graceful-restart")
        t.stmt(f"restart-time {bgp.graceful_restart}")
        t.end()
    if view.sessions:
        _node_group(t, view)
    groups: dict[str, list[Link]] = {}
    for lk in view.links:
        groups.setdefault(lk.group, []).append(lk)
    for g, links in groups.items():
        _link_group(t, view, g, links)
    t.end()


def _node_group(t: _Tree, view: RouterView) -> None:
    """The ToR's sessions to its nodes: one neighbor each, import limited to its blocks."""
    t.block("group FR-NODES")
    _group_common(t, view, view.node_bfd)
    if view.md5 is not None:
        t.stmt(f'authentication-key "{view.md5}"')
    t.stmt(f"export {_chain(DEFAULT_V4, DEFAULT_V6, REJECT)}")
    for s in view.sessions:
        t.block(f"neighbor {s.address}")
        t.stmt(f'description "node {s.node}"')
        t.stmt(f"peer-as {s.asn}")
        tag = FROM_NODES if view.communities else None
        t.stmt(f"import {_chain(tag, s.accept_v4, s.accept_v6, REJECT)}")
        for fam in s.families:
            t.block(f"family {'inet' if fam is Family.IPV4 else 'inet6'}")
            t.block("unicast")
            if fam is Family.IPV4 and s.extended_nexthop:
                t.stmt("extended-nexthop")
            t.block("prefix-limit")
            t.stmt(f"maximum {view.bgp.max_prefixes}")
            t.stmt("teardown")
            t.end()
            t.end()
            t.end()
        t.end()
    t.end()


def _link_group(t: _Tree, view: RouterView, group: str, links: list[Link]) -> None:
    """Router-to-router links of one group: unnumbered, neighbors found by IPv6 ND."""
    lk = links[0]
    t.block(f"group {group}")
    _group_common(t, view, lk.bfd)
    for fam in lk.families:
        t.block(f"family {'inet' if fam is Family.IPV4 else 'inet6'}")
        if fam is Family.IPV4:
            t.block("unicast")
            t.stmt("extended-nexthop")
            t.end()
        else:
            t.stmt("unicast")
        t.end()
    t.stmt(f"import {_chain(lk.import_v4, lk.import_v6, REJECT)}")
    t.stmt(f"export {_chain(lk.export_v4, lk.export_v6, REJECT)}")
    t.stmt(f"peer-as-list {group}")
    t.block(f"dynamic-neighbor {group}")
    t.block("peer-auto-discovery")
    t.block("family inet6")
    t.stmt("ipv6-nd")
    t.end()
    for x in links:
        t.stmt(f"interface {_unit(x.interface)}")
    t.end()
    t.end()
    t.end()


def _policy(t: _Tree, pl: PrefixList) -> None:
    t.block(f"policy-statement {pl.name}")
    if pl.rules:
        t.block("term accept")
        t.block("from")
        for r in pl.rules:
            if r.ge is None and r.le is None:
                t.stmt(f"route-filter {r.prefix} exact")
            else:
                t.stmt(f"route-filter {r.prefix} prefix-length-range /{r.ge}-/{r.le}")
        t.end()
        t.stmt("then accept")
        t.end()
    else:
        t.stmt("then reject")
    t.end()


def _policies(t: _Tree, view: RouterView) -> None:
    t.block("policy-options")
    groups: dict[str, set[int]] = {}
    for lk in view.links:
        groups.setdefault(lk.group, set()).add(lk.asn)
    for g, asns in groups.items():
        t.stmt(f"as-list {g} members [ {' '.join(str(a) for a in sorted(asns))} ]")
    if view.sessions and view.communities:
        t.stmt(f"community {COMMUNITY} members [ {' '.join(view.communities)} ]")
        t.block(f"policy-statement {FROM_NODES}")
        t.block("then")
        t.stmt(f"community add {COMMUNITY}")
        t.end()
        t.end()
    for pl in view.prefix_lists:
        _policy(t, pl)
    t.block(f"policy-statement {ECMP}")
    t.block("then")
    t.stmt("load-balance per-packet")
    t.end()
    t.end()
    t.block(f"policy-statement {REJECT}")
    t.stmt("then reject")
    t.end()
    t.end()


def _routing_options(t: _Tree, view: RouterView) -> None:
    t.block("routing-options")
    t.stmt(f"router-id {view.router.router_id}")
    t.stmt(f"autonomous-system {view.router.asn}")
    if view.bgp.graceful_restart > 0:
        t.stmt("graceful-restart")
    if view.sessions:
        t.block("static")
        t.block("route 0.0.0.0/0")
        t.stmt("discard")
        t.stmt("no-install")
        t.end()
        t.end()
    if view.sessions or view.networks or view.aggregates:
        t.block("rib inet6.0")
        if view.sessions or view.networks:
            t.block("static")
            if view.sessions:
                t.block("route ::/0")
                t.stmt("discard")
                t.stmt("no-install")
                t.end()
            for n in view.networks:
                t.stmt(f"route {n} discard")
            t.end()
        if view.aggregates:
            t.block("aggregate")
            for a in view.aggregates:
                t.stmt(f"route {a}")
            t.end()
        t.end()
    t.block("forwarding-table")
    t.stmt(f"export {ECMP}")
    t.end()
    t.end()
