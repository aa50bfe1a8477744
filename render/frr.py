"""FRR (8.4+) integrated configuration: one frr.conf for zebra, bgpd and bfdd.

Reviewed against the FRR user guide (https://docs.frrouting.org/en/stable-8.4/bgp.html,
.../zebra.html, .../bfd.html). Rules the output keeps, because every daemon parses the whole
file: blocks end with `!` (never `exit`, which would end another daemon's parse early) and no
command carries a trailing comment.
"""

from __future__ import annotations

from flatroute.plan.model import Family
from render.common import Feature, RenderedFile, families_of, header_lines
from render.view import (
    BFD_PROFILE,
    DEFAULT_V4,
    DEFAULT_V6,
    FROM_NODES,
    MAX_PATHS,
    PrefixList,
    RouterView,
)

NAME = "frr"
#: FRR expresses everything the fabric can ask
UNSUPPORTED: dict[Feature, str] = {}


def render(view: RouterView) -> list[RenderedFile]:
    files = [RenderedFile(view.router.name, NAME, f"{view.router.name}.conf",
                          frr_conf(view, NAME))]
    if view.end_sid is not None:
        files.append(RenderedFile(view.router.name, NAME, f"{view.router.name}.srv6.sh",
                                  srv6_script(view, NAME)))
    return files


def prefix_list_lines(pl: PrefixList) -> list[str]:
    kw = "ip" if pl.version == 4 else "ipv6"
    if not pl.rules:
        return [f"{kw} prefix-list {pl.name} seq 5 deny any"]
    out = []
    for i, r in enumerate(pl.rules):
        extra = ""
        if r.ge is not None:
            extra += f" ge {r.ge}"
        if r.le is not None:
            extra += f" le {r.le}"
        out.append(f"{kw} prefix-list {pl.name} seq {5 * (i + 1)} permit {r.prefix}{extra}")
    return out


def frr_conf(view: RouterView, platform: str, *, interface_addresses: bool = True) -> str:
    """The integrated frr.conf. Without `interface_addresses` (SONiC, which owns interface
    addresses in CONFIG_DB) the server SVI stanza is left out."""
    r = view.router
    bgp = view.bgp
    out = [f"! {line}".rstrip() for line in header_lines(view, platform)]
    out += ["!", "frr version 8.4", "frr defaults datacenter", f"hostname {r.name}",
            "log syslog informational", "!"]
    # zebra: interfaces
    if interface_addresses and (view.servers_v4 or view.servers_v6):
        out.append(f"interface {view.servers_interface}")
        if view.servers_v4:
            out.append(f" ip address {view.servers_v4}")
        if view.servers_v6:
            out.append(f" ipv6 address {view.servers_v6}")
        out.append("!")
    for iface in sorted({lk.interface for lk in view.links}
                        | {s.interface for s in view.sessions if s.interface}):
        out += [f"interface {iface}", " ipv6 nd ra-interval 10", " no ipv6 nd suppress-ra",
                "!"]
    # shared: policies
    for pl in view.prefix_lists:
        out += prefix_list_lines(pl)
    out.append("!")
    if view.sessions and view.communities:
        out.append(f"route-map {FROM_NODES} permit 10")
        out.append(f" set community {' '.join(view.communities)} additive")
        out.append("!")
    # bfdd
    bfd = bgp.bfd
    if view.uses_bfd:
        out += ["bfd", f" profile {BFD_PROFILE}", f"  detect-multiplier {bfd.multiplier}",
                f"  receive-interval {bfd.min_rx_ms}", f"  transmit-interval {bfd.min_tx_ms}",
                " !", "!"]
    out += _router_bgp(view)
    out.append("end")
    return "\n".join(out) + "\n"


def _router_bgp(view: RouterView) -> list[str]:
    out = _bgp_globals(view)
    out += _node_neighbors(view)
    out += _link_neighbors(view)
    for fam in families_of(view) or ((Family.IPV6,) if view.networks else ()):
        out += _address_family(view, fam)
    out.append("!")
    return out


def _bgp_globals(view: RouterView) -> list[str]:
    r = view.router
    bgp = view.bgp
    out = [f"router bgp {r.asn}", f" bgp router-id {r.router_id}", " bgp log-neighbor-changes",
           " bgp ebgp-requires-policy", " no bgp default ipv4-unicast",
           " bgp bestpath as-path multipath-relax", f" timers bgp {bgp.keepalive} {bgp.hold_time}"]
    if bgp.graceful_restart > 0:
        out += [" bgp graceful-restart",
                f" bgp graceful-restart restart-time {bgp.graceful_restart}"]
    if view.networks:
        out.append(" no bgp network import-check")
    return out


def _node_neighbors(view: RouterView) -> list[str]:
    """The node sessions, with their settings on the peer groups for big racks, else on each
    neighbour."""
    out: list[str] = []
    grouped = view.peer_group
    targets: list[tuple[str, bool, bool]] = []  # (name, extended next hop, BFD)
    if grouped:
        for g in sorted({s.group for s in view.sessions}):
            ext = any(s.extended_nexthop for s in view.sessions if s.group == g)
            bfd = any(s.bfd for s in view.sessions if s.group == g)
            out.append(f" neighbor {g} peer-group")
            targets.append((g, ext, bfd))
    for s in view.sessions:
        if s.address is None:
            out.append(f" neighbor {s.interface} interface remote-as {s.asn}")
        else:
            out.append(f" neighbor {s.address} remote-as {s.asn}")
        if grouped:
            out.append(f" neighbor {s.peer} peer-group {s.group}")
        out.append(f" neighbor {s.peer} description node {s.node}")
        if not grouped:
            targets.append((s.peer, s.extended_nexthop and s.address is not None, s.bfd))
    for name, ext, bfd in targets:
        out += _session_settings(view, name, ext, bfd)
    return out


def _session_settings(view: RouterView, name: str, extended_nexthop: bool,
                      bfd: bool) -> list[str]:
    out: list[str] = []
    if view.md5 is not None:
        out.append(f" neighbor {name} password {view.md5}")
    if bfd:
        out.append(f" neighbor {name} bfd profile {BFD_PROFILE}")
    if extended_nexthop:
        out.append(f" neighbor {name} capability extended-nexthop")
    return out


def _link_neighbors(view: RouterView) -> list[str]:
    """The unnumbered sessions to the other routers."""
    out: list[str] = []
    for lk in view.links:
        out.append(f" neighbor {lk.interface} interface remote-as {lk.asn}")
        out.append(f" neighbor {lk.interface} description {lk.role.value} {lk.neighbor}")
        if lk.bfd:
            out.append(f" neighbor {lk.interface} bfd profile {BFD_PROFILE}")
    return out


def _address_family(view: RouterView, fam: Family) -> list[str]:
    out = [" !", f" address-family {fam.value} unicast", f"  maximum-paths {MAX_PATHS}"]
    if fam is Family.IPV6:
        out += [f"  network {n}" for n in view.networks]
        out += [f"  aggregate-address {a}" for a in view.aggregates]
    out += _af_nodes(view, fam)
    out += _af_links(view, fam)
    out.append(" exit-address-family")
    return out


def _af_links(view: RouterView, fam: Family) -> list[str]:
    out: list[str] = []
    for lk in view.links:
        if fam not in lk.families:
            continue
        imp, exp = ((lk.import_v4, lk.export_v4) if fam is Family.IPV4
                    else (lk.import_v6, lk.export_v6))
        out.append(f"  neighbor {lk.interface} activate")
        if imp:
            out.append(f"  neighbor {lk.interface} prefix-list {imp} in")
        if exp:
            out.append(f"  neighbor {lk.interface} prefix-list {exp} out")
    return out


def _af_nodes(view: RouterView, fam: Family) -> list[str]:
    out: list[str] = []
    sessions = [s for s in view.sessions if fam in s.families]
    default = DEFAULT_V4 if fam is Family.IPV4 else DEFAULT_V6
    common = ["activate", "default-originate", f"prefix-list {default} out",
              f"maximum-prefix {view.bgp.max_prefixes}"]
    if view.communities:
        common.append(f"route-map {FROM_NODES} in")
    if view.peer_group:
        for g in sorted({s.group for s in sessions}):
            out += [f"  neighbor {g} {c}" for c in common]
    for s in sessions:
        if not view.peer_group:
            out += [f"  neighbor {s.peer} {c}" for c in common]
        accept = s.accept_v4 if fam is Family.IPV4 else s.accept_v6
        out.append(f"  neighbor {s.peer} prefix-list {accept} in")
    return out


def daemons_for(config: str) -> list[str]:
    """The FRR daemons a rendered configuration needs (bfdd only where BFD is configured)."""
    daemons = ["zebra", "bgpd"]
    if "\nbfd\n" in config or " bfd\n" in config:
        daemons.append("bfdd")
    return daemons


def srv6_script(view: RouterView, platform: str) -> str:
    """FRR 8.4 cannot program static SRv6 SIDs: a shell companion installs the End SID."""
    assert view.end_sid is not None
    out = ["#!/bin/sh"]
    out += [f"# {line}".rstrip() for line in header_lines(view, platform)]
    out += [
        "#",
        f"# The SRv6 End SID of {view.router.name}: FRR 8.4 (bgpd, zebra) cannot program static",
        "# SRv6 SIDs, so run this once at boot, next to the FRR configuration. Idempotent.",
        "# Kernel seg6local needs CONFIG_IPV6_SEG6_LWTUNNEL; on a kernel without it (route add",
        "# fails: 'lwt encapsulation type not supported') the same End runs on flatroute's eBPF",
        "# datapath (`flatroute speaker end-sid`, tc at ingress of every interface; needs a",
        "# kernel with BTF and clsact, and flatroute installed; `flatroute doctor` tells).",
        "# FLATROUTE_SRV6_DATAPATH=bpf goes straight to the eBPF datapath; FLATROUTE_BPF_DIR is",
        "# where it pins (inside a bpffs; default /sys/fs/bpf/flatroute-end).",
        "set -eu",
        "sysctl -qw net.ipv6.conf.all.forwarding=1",
        "sysctl -qw net.ipv6.conf.all.seg6_enabled=1",
        "sysctl -qw net.ipv6.conf.default.seg6_enabled=1",
        "for f in /proc/sys/net/ipv6/conf/*/seg6_enabled; do echo 1 > \"$f\"; done",
        "# The SID points at a device of its own, never at lo: Linux treats a route via the",
        "# loopback device as a reject route for forwarded packets. A dummy device where the",
        "# kernel has the driver, else a veth pair kept inside this host.",
        "if ! ip link show flrsid >/dev/null 2>&1; then",
        "  ip link add flrsid type dummy 2>/dev/null || "
        "ip link add flrsid type veth peer name flrsid0",
        "fi",
        "ip link set flrsid up",
        "ip link set flrsid0 up 2>/dev/null || true",
        'if [ "${FLATROUTE_SRV6_DATAPATH:-auto}" != bpf ] && ip -6 route replace '
        f"{view.end_sid}/128 encap seg6local action End dev flrsid; then",
        "  exit 0",
        "fi",
        "echo 'the End SID runs on the eBPF datapath (no kernel seg6local, or asked for)' >&2",
        f"exec flatroute speaker end-sid --sid {view.end_sid} --locator {view.router.locator} "
        '--bpf-dir "${FLATROUTE_BPF_DIR:-/sys/fs/bpf/flatroute-end}"',
    ]
    return "\n".join(out) + "\n"

