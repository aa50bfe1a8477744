"""SONiC: a config_db.json fragment, plus the FRR configuration for split mode.

SONiC routes with FRR, configured one of two ways; flatroute renders both and the network
team picks one per switch:
- `<router>.json` (unified mode, `frr_mgmt_framework_config: true`): CONFIG_DB tables that
  SONiC's frrcfgd turns into FRR commands: BGP_GLOBALS(_AF), BGP_NEIGHBOR(_AF),
  BGP_PEER_GROUP(_AF), PREFIX_SET/PREFIX, ROUTE_MAP, aggregate and network tables, plus the
  interface tables (VLAN_INTERFACE / INTERFACE with `ipv6_use_link_local_only` for unnumbered
  links). Load with `sudo config load <router>.json` (merges). Table and field names follow
  the SONiC "Unified FRR management interface" design (frrcfgd) and the SONiC configuration
  guide (https://github.com/sonic-net/SONiC/wiki/Configuration).
- `<router>.frr.conf` (split-unified mode, `docker_routing_config_mode: split-unified`):
  the same routing configuration as the `frr` platform (checked with the real bgpd),
  without the interface addresses, which SONiC owns in CONFIG_DB. Install it as
  /etc/sonic/frr/frr.conf and load only the DEVICE_METADATA and interface tables of the JSON.

JSON cannot hold comments: the header sits in a `FLATROUTE_RENDER` table no SONiC daemon reads.
"""

from __future__ import annotations

import json
from typing import Any

from flatroute.plan.model import Family
from render import frr
from render.common import Feature, RenderedFile, families_of, header_lines
from render.view import (
    DEFAULT_V4,
    DEFAULT_V6,
    FROM_NODES,
    MAX_PATHS,
    RouterView,
)

NAME = "sonic"
#: SONiC runs FRR: it expresses everything the fabric can ask
UNSUPPORTED: dict[Feature, str] = {}
VRF = "default"


def render(view: RouterView) -> list[RenderedFile]:
    name = view.router.name
    files = [RenderedFile(name, NAME, f"{name}.json", config_db(view)),
             RenderedFile(name, NAME, f"{name}.frr.conf",
                          frr.frr_conf(view, NAME, interface_addresses=False))]
    if view.end_sid is not None:
        files.append(RenderedFile(name, NAME, f"{name}.srv6.sh", frr.srv6_script(view, NAME)))
    return files


def _af(fam: Family) -> str:
    return f"{fam.value}_unicast"


def _iface_table(name: str) -> str:
    if name.startswith("Vlan"):
        return "VLAN_INTERFACE"
    if name.startswith("PortChannel"):
        return "PORTCHANNEL_INTERFACE"
    return "INTERFACE"


def config_db(view: RouterView) -> str:
    r = view.router
    bgp = view.bgp
    db: dict[str, dict[str, Any]] = {}

    def put(table: str, key: str, **fields: Any) -> None:
        db.setdefault(table, {})[key] = {k: v for k, v in fields.items() if v is not None}

    bfd_note = (f"BFD timers rx {bgp.bfd.min_rx_ms} ms, tx {bgp.bfd.min_tx_ms} ms, multiplier "
                f"{bgp.bfd.multiplier}: CONFIG_DB enables BFD per neighbour only; set these "
                "timers on the switch (or use the split-mode .frr.conf, which has them)",)
    extra = bfd_note if view.uses_bfd else ()
    put("FLATROUTE_RENDER", "header", lines=header_lines(view, NAME, extra))
    put("DEVICE_METADATA", "localhost", hostname=r.name, bgp_asn=str(r.asn),
        docker_routing_config_mode="unified", frr_mgmt_framework_config="true")
    _interfaces(view, put)
    _prefix_sets(view, put)
    if view.sessions and view.communities:
        put("ROUTE_MAP", f"{FROM_NODES}|10", route_operation="permit",
            set_community_inline=list(view.communities))
    gr = bgp.graceful_restart > 0
    put("BGP_GLOBALS", VRF, local_asn=str(r.asn), router_id=str(r.router_id),
        holdtime=str(bgp.hold_time), keepalive=str(bgp.keepalive),
        load_balance_mp_relax="true", log_nbr_state_changes="true",
        graceful_restart_enable="true" if gr else "false",
        gr_restart_time=str(bgp.graceful_restart) if gr else None,
        ebgp_requires_policy="true", default_ipv4_unicast="false",
        network_import_check="false" if view.networks else None)
    fams = families_of(view) or ((Family.IPV6,) if view.networks else ())
    for fam in fams:
        put("BGP_GLOBALS_AF", f"{VRF}|{_af(fam)}", max_ebgp_paths=str(MAX_PATHS))
    for n in view.networks:
        put("BGP_GLOBALS_AF_NETWORK", f"{VRF}|{_af(Family.IPV6)}|{n}")
    for a in view.aggregates:
        put("BGP_GLOBALS_AF_AGGREGATE_ADDR", f"{VRF}|{_af(Family.IPV6)}|{a}")
    _nodes(view, put)
    for lk in view.links:
        put("BGP_NEIGHBOR", f"{VRF}|{lk.interface}", asn=str(lk.asn),
            name=f"{lk.role.value} {lk.neighbor}", admin_status="up",
            bfd="true" if lk.bfd else None, capability_ext_nexthop="true")
        for fam in lk.families:
            imp, exp = ((lk.import_v4, lk.export_v4) if fam is Family.IPV4
                        else (lk.import_v6, lk.export_v6))
            put("BGP_NEIGHBOR_AF", f"{VRF}|{lk.interface}|{_af(fam)}", admin_status="true",
                prefix_list_in=imp, prefix_list_out=exp, send_community="both")
    return json.dumps(db, indent=4, sort_keys=True) + "\n"


def _interfaces(view: RouterView, put: Any) -> None:
    """The server-facing interface with its addresses; link-local-only router links."""
    if view.servers_v4 or view.servers_v6:
        table = _iface_table(view.servers_interface)
        put(table, view.servers_interface)
        for addr in (view.servers_v4, view.servers_v6):
            if addr is not None:
                put(table, f"{view.servers_interface}|{addr}")
    for iface in sorted({lk.interface for lk in view.links}
                        | {s.interface for s in view.sessions if s.interface}):
        put(_iface_table(iface), iface, ipv6_use_link_local_only="enable")


def _prefix_sets(view: RouterView, put: Any) -> None:
    """PREFIX_SET and PREFIX: an empty list denies everything, as FRR's would."""
    for pl in view.prefix_lists:
        put("PREFIX_SET", pl.name, mode="IPv4" if pl.version == 4 else "IPv6")
        if not pl.rules:
            anyp = "0.0.0.0/0" if pl.version == 4 else "::/0"
            put("PREFIX", f"{pl.name}|5|{anyp}|{0}..{32 if pl.version == 4 else 128}",
                action="deny")
        for i, rule in enumerate(pl.rules):
            rng = "exact" if rule.ge is None else f"{rule.ge}..{rule.le}"
            put("PREFIX", f"{pl.name}|{5 * (i + 1)}|{rule.prefix}|{rng}", action="permit")


def _nodes(view: RouterView, put: Any) -> None:
    bgp = view.bgp
    grouped = view.peer_group
    shared: dict[str, Any] = {
        "auth_password": view.md5, "bfd": "true" if view.node_bfd else None}

    def af_shared(fam: Family) -> dict[str, Any]:
        return {"admin_status": "true", "send_default_route": "true",
                "prefix_list_out": DEFAULT_V4 if fam is Family.IPV4 else DEFAULT_V6,
                "max_prefix_limit": str(bgp.max_prefixes),
                "route_map_in": [FROM_NODES] if view.communities else None}

    if grouped:
        for g in sorted({s.group for s in view.sessions}):
            s0 = next(s for s in view.sessions if s.group == g)
            ext = "true" if s0.extended_nexthop and s0.address is not None else None
            put("BGP_PEER_GROUP", f"{VRF}|{g}", admin_status="up",
                capability_ext_nexthop=ext, **shared)
            for fam in s0.families:
                put("BGP_PEER_GROUP_AF", f"{VRF}|{g}|{_af(fam)}", **af_shared(fam))
    for s in view.sessions:
        key = f"{VRF}|{s.peer}"
        ext = "true" if s.extended_nexthop else None
        if grouped:
            put("BGP_NEIGHBOR", key, asn=str(s.asn), name=f"node {s.node}",
                peer_group_name=s.group, admin_status="up", capability_ext_nexthop=ext)
        else:
            put("BGP_NEIGHBOR", key, asn=str(s.asn), name=f"node {s.node}",
                admin_status="up", capability_ext_nexthop=ext, **shared)
        for fam in s.families:
            accept = s.accept_v4 if fam is Family.IPV4 else s.accept_v6
            fields = {"admin_status": "true", "prefix_list_in": accept}
            if not grouped:
                fields = {**af_shared(fam), **fields}
            put("BGP_NEIGHBOR_AF", f"{key}|{_af(fam)}", **fields)
