"""Cisco NX-OS (Nexus 9000): CLI configuration, 2-space indentation per mode.

Reviewed against the Cisco Nexus 9000 Series NX-OS Unicast Routing Configuration Guide,
Release 10.x, chapters "Configuring Basic BGP" and "Configuring Advanced BGP"
(https://www.cisco.com/c/en/us/td/docs/dcn/nx-os/nexus9000/103x/configuration/unicast-routing/
cisco-nexus-9000-series-nx-os-unicast-routing-configuration-guide-103x.html):
- neighbours are modes (`neighbor X` / `remote-as` / `address-family ipv4 unicast`), shared
  settings go into `template peer NAME` inherited with `inherit peer NAME`;
- unnumbered links use BGP interface peering on IPv6 link-local (`neighbor Ethernet1/1`, the
  interface with `ipv6 link-local use-bia`), which carries IPv4 with IPv6 next hops;
- communities are only sent with `send-community`; `bestpath as-path multipath-relax`;
  `graceful-restart restart-time`; `password 0` (clear) / `password 3` (encrypted).
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
    PrefixList,
    RouterView,
)

NAME = "nxos"
UNSUPPORTED: dict[Feature, str] = {
    Feature.EXTENDED_NEXTHOP: "the NX-OS guide documents IPv4 routes with IPv6 next hops only "
    "for BGP interface (link-local) peering, not on a numbered IPv6 session; set "
    "spec.bgp.ipv4OverIpv6: false (one IPv4 and one IPv6 session per node) or use another "
    "platform for this ToR",
}
I1, I2, I3 = "  ", "    ", "      "


def render(view: RouterView) -> list[RenderedFile]:
    return [RenderedFile(view.router.name, NAME, f"{view.router.name}.nxos.cfg",
                         nxos_cfg(view))]


def _prefix_list(pl: PrefixList) -> list[str]:
    kw = "ip" if pl.version == 4 else "ipv6"
    if not pl.rules:
        anyp = "0.0.0.0/0 le 32" if pl.version == 4 else "0::/0 le 128"
        return [f"{kw} prefix-list {pl.name} seq 5 deny {anyp}"]
    out = []
    for i, r in enumerate(pl.rules):
        extra = (f" ge {r.ge}" if r.ge is not None else "") + (
            f" le {r.le}" if r.le is not None else "")
        out.append(f"{kw} prefix-list {pl.name} seq {5 * (i + 1)} permit {r.prefix}{extra}")
    return out


def nxos_cfg(view: RouterView) -> str:
    r = view.router
    bfd = view.bgp.bfd
    out = [f"! {line}".rstrip() for line in header_lines(view, NAME)]
    out += ["!", f"hostname {r.name}", "feature bgp"]
    if view.uses_bfd:
        out.append("feature bfd")
    if view.servers_interface.lower().startswith("vlan"):
        out.append("feature interface-vlan")
    out.append("!")
    bfd_line = (f"{I1}bfd interval {bfd.min_tx_ms} min_rx {bfd.min_rx_ms} "
                f"multiplier {bfd.multiplier}")
    if view.servers_v4 or view.servers_v6:
        out += [f"interface {view.servers_interface}", f"{I1}description flatroute servers",
                f"{I1}no shutdown"]
        if view.servers_v4:
            out.append(f"{I1}ip address {view.servers_v4}")
        if view.servers_v6:
            out.append(f"{I1}ipv6 address {view.servers_v6}")
        if view.node_bfd:
            out.append(bfd_line)
        out.append("!")
    for iface, what, on in sorted({(lk.interface, f"{lk.role.value} {lk.neighbor}", lk.bfd)
                                   for lk in view.links}
                                  | {(str(s.interface), f"node {s.node}", s.bfd)
                                     for s in view.sessions if s.interface}):
        out += [f"interface {iface}", f"{I1}description {what}", f"{I1}no switchport",
                f"{I1}ipv6 link-local use-bia", f"{I1}no shutdown"]
        if on:
            out.append(bfd_line)
        out.append("!")
    for pl in view.prefix_lists:
        out += _prefix_list(pl)
    out.append("!")
    if view.sessions and view.communities:
        out += [f"route-map {FROM_NODES} permit 10",
                f"{I1}set community {' '.join(view.communities)} additive", "!"]
    for n in view.networks:
        out += [f"ipv6 route {n} Null0", "!"]
    out += _router_bgp(view)
    return "\n".join(out) + "\n"


def _session(view: RouterView, fams: tuple[Family, ...], *, shared: bool = True,
             accept: dict[Family, str | None] | None = None) -> list[str]:
    """A node session's settings at neighbour level: the shared ones (also used for the
    template of a big rack) and/or the node's own inbound prefix lists."""
    out = []
    accept = accept or {}
    if not shared:
        for fam in fams:
            out += [f"{I2}address-family {fam.value} unicast",
                    f"{I3}prefix-list {accept.get(fam)} in"]
        return out
    if view.md5 is not None:
        out.append(f"{I2}password 0 {view.md5}")
    if view.node_bfd:  # chosen per ToR: every node session of this router alike
        out.append(f"{I2}bfd")
    out.append(f"{I2}timers {view.bgp.keepalive} {view.bgp.hold_time}")
    for fam in fams:
        default = DEFAULT_V4 if fam is Family.IPV4 else DEFAULT_V6
        out += [f"{I2}address-family {fam.value} unicast", f"{I3}default-originate",
                f"{I3}prefix-list {default} out", f"{I3}maximum-prefix {view.bgp.max_prefixes}"]
        if view.communities:
            out.append(f"{I3}route-map {FROM_NODES} in")
        if fam in accept:
            out.append(f"{I3}prefix-list {accept[fam]} in")
    return out


def _router_bgp(view: RouterView) -> list[str]:
    r = view.router
    bgp = view.bgp
    out = [f"router bgp {r.asn}", f"{I1}router-id {r.router_id}",
           f"{I1}timers bgp {bgp.keepalive} {bgp.hold_time}",
           f"{I1}bestpath as-path multipath-relax", f"{I1}log-neighbor-changes"]
    if bgp.graceful_restart > 0:
        out += [f"{I1}graceful-restart", f"{I1}graceful-restart restart-time "
                f"{bgp.graceful_restart}"]
    for fam in families_of(view) or ((Family.IPV6,) if view.networks else ()):
        out += [f"{I1}address-family {fam.value} unicast", f"{I2}maximum-paths {MAX_PATHS}"]
        if fam is Family.IPV6:
            out += [f"{I2}network {n}" for n in view.networks]
            out += [f"{I2}aggregate-address {a}" for a in view.aggregates]
    grouped = view.peer_group
    if grouped:
        for g in sorted({s.group for s in view.sessions}):
            fams = next(s.families for s in view.sessions if s.group == g)
            out.append(f"{I1}template peer {g}")
            out += _session(view, fams)
    for s in view.sessions:
        out += [f"{I1}neighbor {s.peer}"]
        if grouped:
            out.append(f"{I2}inherit peer {s.group}")
        out += [f"{I2}remote-as {s.asn}", f"{I2}description node {s.node}"]
        accept = {Family.IPV4: s.accept_v4, Family.IPV6: s.accept_v6}
        out += _session(view, s.families, shared=not grouped, accept=accept)
    groups: dict[str, Link] = {}
    for lk in view.links:
        groups.setdefault(lk.group, lk)
    for g, lk in groups.items():
        out += [f"{I1}template peer {g}", f"{I2}timers {bgp.keepalive} {bgp.hold_time}"]
        if lk.bfd:
            out.append(f"{I2}bfd")
        for fam in lk.families:
            imp, exp = ((lk.import_v4, lk.export_v4) if fam is Family.IPV4
                        else (lk.import_v6, lk.export_v6))
            out += [f"{I2}address-family {fam.value} unicast", f"{I3}send-community"]
            if imp:
                out.append(f"{I3}prefix-list {imp} in")
            if exp:
                out.append(f"{I3}prefix-list {exp} out")
    for lk in view.links:
        out += [f"{I1}neighbor {lk.interface}", f"{I2}inherit peer {lk.group}",
                f"{I2}remote-as {lk.asn}", f"{I2}description {lk.role.value} {lk.neighbor}"]
    return out
