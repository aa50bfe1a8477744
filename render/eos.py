"""Arista EOS: CLI configuration (as `show running-config` prints it, 3-space indentation).

Reviewed against the Arista EOS User Manual, chapters "Border Gateway Protocol (BGP)"
(https://www.arista.com/en/um-eos/eos-border-gateway-protocol-bgp), "IPv6" and "BFD":
- unnumbered sessions: `neighbor interface INTF peer group PG remote-as ASN` (IPv6 link-local
  peering, one peer group per policy), IPv4 over IPv6 next hops (RFC 5549/8950):
  `neighbor X next-hop address-family ipv6 originate` plus `ip routing ipv6 interfaces`;
- EOS does not send communities unless told: `neighbor X send-community` on router links;
- BFD timers are per interface (`bfd interval .. min-rx .. multiplier ..`).
"""

from __future__ import annotations

from flatroute.plan.model import Family
from render.common import Feature, RenderedFile, families_of, header_lines
from render.view import (
    DEFAULT_V4,
    DEFAULT_V6,
    FROM_NODES,
    MAX_PATHS,
    Link,
    NodeSession,
    PrefixList,
    RouterView,
)

NAME = "eos"
#: EOS expresses everything the fabric can ask
UNSUPPORTED: dict[Feature, str] = {}
I1, I2 = "   ", "      "


def render(view: RouterView) -> list[RenderedFile]:
    return [RenderedFile(view.router.name, NAME, f"{view.router.name}.eos.cfg", eos_cfg(view))]


def _prefix_list(pl: PrefixList) -> list[str]:
    kw = "ip" if pl.version == 4 else "ipv6"
    out = [f"{kw} prefix-list {pl.name}"]
    if not pl.rules:
        out.append(f"{I1}seq 5 deny {'0.0.0.0/0' if pl.version == 4 else '::/0'} le "
                   f"{32 if pl.version == 4 else 128}")
    for i, r in enumerate(pl.rules):
        extra = (f" ge {r.ge}" if r.ge is not None else "") + (
            f" le {r.le}" if r.le is not None else "")
        out.append(f"{I1}seq {5 * (i + 1)} permit {r.prefix}{extra}")
    out.append("!")
    return out


def _node_group(s: NodeSession) -> str:
    """Unnumbered node sessions need a peer group each (EOS binds interfaces to groups)."""
    return f"FR-NODE-{s.node.upper()}"


def eos_cfg(view: RouterView) -> str:
    r = view.router
    bgp = view.bgp
    bfd = bgp.bfd
    out = [f"! {line}".rstrip() for line in header_lines(view, NAME)]
    out += ["!", f"hostname {r.name}", "!", "service routing protocols model multi-agent", "!",
            "ip routing", "ipv6 unicast-routing"]
    if any(s.extended_nexthop for s in view.sessions) or any(
            Family.IPV4 in lk.families for lk in view.links):
        out.append("ip routing ipv6 interfaces")
    out.append("!")
    bfd_line = (f"{I1}bfd interval {bfd.min_tx_ms} min-rx {bfd.min_rx_ms} "
                f"multiplier {bfd.multiplier}")
    if view.servers_v4 or view.servers_v6:
        out += [f"interface {view.servers_interface}", f"{I1}description flatroute servers"]
        if view.servers_v4:
            out.append(f"{I1}ip address {view.servers_v4}")
        if view.servers_v6:
            out += [f"{I1}ipv6 enable", f"{I1}ipv6 address {view.servers_v6}"]
        if view.node_bfd:
            out.append(bfd_line)
        out.append("!")
    for lk_name, what, on in sorted({(lk.interface, f"{lk.role.value} {lk.neighbor}", lk.bfd)
                                     for lk in view.links}
                                    | {(str(s.interface), f"node {s.node}", s.bfd)
                                       for s in view.sessions if s.interface}):
        out += [f"interface {lk_name}", f"{I1}description {what}", f"{I1}no switchport",
                f"{I1}ipv6 enable"]
        if on:
            out.append(bfd_line)
        out.append("!")
    for pl in view.prefix_lists:
        out += _prefix_list(pl)
    if view.sessions and view.communities:
        out += [f"route-map {FROM_NODES} permit 10",
                f"{I1}set community {' '.join(view.communities)} additive", "!"]
    for n in view.networks:
        out += [f"ipv6 route {n} Null0", "!"]
    out += _router_bgp(view)
    out.append("end")
    return "\n".join(out) + "\n"


def _session_settings(view: RouterView, name: str, bfd: bool) -> list[str]:
    out = []
    if view.md5 is not None:
        out.append(f"{I1}neighbor {name} password 0 {view.md5}")
    if bfd:
        out.append(f"{I1}neighbor {name} bfd")
    out.append(f"{I1}neighbor {name} maximum-routes {view.bgp.max_prefixes}")
    if view.communities:
        out.append(f"{I1}neighbor {name} route-map {FROM_NODES} in")
    return out


def _groups(view: RouterView) -> dict[str, Link]:
    groups: dict[str, Link] = {}
    for lk in view.links:
        groups.setdefault(lk.group, lk)
    return groups


def _router_bgp(view: RouterView) -> list[str]:
    out = _bgp_globals(view)
    out += _node_neighbors(view)
    out += _link_neighbors(view)
    for fam in families_of(view) or ((Family.IPV6,) if view.networks else ()):
        out += [f"{I1}!", f"{I1}address-family {fam.value}"]
        if fam is Family.IPV6:
            out += [f"{I2}network {n}" for n in view.networks]
            out += [f"{I2}aggregate-address {a}" for a in view.aggregates]
        out += _af_nodes(view, fam)
        out += _af_links(view, fam)
    out.append("!")
    return out


def _bgp_globals(view: RouterView) -> list[str]:
    r = view.router
    bgp = view.bgp
    out = [f"router bgp {r.asn}", f"{I1}router-id {r.router_id}",
           f"{I1}no bgp default ipv4-unicast", f"{I1}timers bgp {bgp.keepalive} {bgp.hold_time}",
           f"{I1}bgp bestpath as-path multipath-relax",
           f"{I1}maximum-paths {MAX_PATHS} ecmp {MAX_PATHS}"]
    if bgp.graceful_restart > 0:
        out += [f"{I1}graceful-restart restart-time {bgp.graceful_restart}",
                f"{I1}graceful-restart"]
    return out


def _node_neighbors(view: RouterView) -> list[str]:
    """The node sessions: numbered ones on the peer groups for big racks, else each with its
    own settings; an unnumbered one in a peer group of its own (EOS names interface peers
    only through a group)."""
    out: list[str] = []
    grouped = view.peer_group
    if grouped:
        for g in sorted({s.group for s in view.sessions if s.address is not None}):
            out.append(f"{I1}neighbor {g} peer group")
            out += _session_settings(view, g, view.node_bfd)
    for s in view.sessions:
        if s.address is None:
            g = _node_group(s)
            out.append(f"{I1}neighbor {g} peer group")
            out += _session_settings(view, g, s.bfd)
            out.append(f"{I1}neighbor interface {s.interface} peer group {g} remote-as {s.asn}")
            continue
        out.append(f"{I1}neighbor {s.address} remote-as {s.asn}")
        if grouped:
            out.append(f"{I1}neighbor {s.address} peer group {s.group}")
        out.append(f"{I1}neighbor {s.address} description node {s.node}")
        if not grouped:
            out += _session_settings(view, str(s.address), s.bfd)
    return out


def _link_neighbors(view: RouterView) -> list[str]:
    """The unnumbered sessions to the other routers, one peer group per shared policy."""
    out: list[str] = []
    for g, lk in _groups(view).items():
        out.append(f"{I1}neighbor {g} peer group")
        out.append(f"{I1}neighbor {g} send-community")
        if lk.bfd:
            out.append(f"{I1}neighbor {g} bfd")
    for lk in view.links:
        out.append(f"{I1}neighbor interface {lk.interface} peer group {lk.group} "
                   f"remote-as {lk.asn}")
    return out


def _af_links(view: RouterView, fam: Family) -> list[str]:
    out: list[str] = []
    for g, lk in _groups(view).items():
        if fam not in lk.families:
            continue
        imp, exp = ((lk.import_v4, lk.export_v4) if fam is Family.IPV4
                    else (lk.import_v6, lk.export_v6))
        out.append(f"{I2}neighbor {g} activate")
        if fam is Family.IPV4:
            out.append(f"{I2}neighbor {g} next-hop address-family ipv6 originate")
        if imp:
            out.append(f"{I2}neighbor {g} prefix-list {imp} in")
        if exp:
            out.append(f"{I2}neighbor {g} prefix-list {exp} out")
    return out


def _af_nodes(view: RouterView, fam: Family) -> list[str]:
    out: list[str] = []
    default = DEFAULT_V4 if fam is Family.IPV4 else DEFAULT_V6
    common = ["activate", "default-originate", f"prefix-list {default} out"]
    sessions = [s for s in view.sessions if fam in s.families]
    if view.peer_group:
        for g in sorted({s.group for s in sessions if s.address is not None}):
            out += [f"{I2}neighbor {g} {c}" for c in common]
    for s in sessions:
        name = _node_group(s) if s.address is None else str(s.address)
        if s.address is None or not view.peer_group:
            out += [f"{I2}neighbor {name} {c}" for c in common]
        if fam is Family.IPV4 and s.extended_nexthop:
            out.append(f"{I2}neighbor {name} next-hop address-family ipv6 originate")
        accept = s.accept_v4 if fam is Family.IPV4 else s.accept_v6
        out.append(f"{I2}neighbor {name} prefix-list {accept} in")
    return out
