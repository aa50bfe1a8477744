"""Plan output for people (a table) and machines (JSON, YAML). Deterministic, byte for byte."""

from __future__ import annotations

import json
from ipaddress import IPv6Network
from typing import Any

import yaml

from flatroute.plan.ledger import ledger_to_doc
from flatroute.plan.model import Plan, Segment, Sid
from flatroute.plan.usid import text as usid_text


def plan_to_doc(p: Plan) -> dict[str, Any]:
    return {
        "fabric": p.fabric,
        "mtu": p.mtu,
        "nodes": [
            {
                "name": n.name, "site": n.site, "rack": n.rack, "role": n.role.value,
                "asn": n.asn, "routerId": str(n.router_id) if n.router_id else None,
                "podBlocks": {"ipv4": [str(b) for b in n.ipv4_blocks],
                              "ipv6": [str(b) for b in n.ipv6_blocks]},
                "uplinks": [{"tor": u.tor, "ipv4": str(u.ipv4) if u.ipv4 else None,
                             "ipv6": str(u.ipv6) if u.ipv6 else None,
                             "unnumbered": u.unnumbered} for u in n.uplinks],
                "peers": [{"tor": pp.tor, "asn": pp.asn,
                           "address": str(pp.address) if pp.address else None,
                           "localAddress": str(pp.local_address) if pp.local_address else None,
                           "families": [f.value for f in pp.families]} for pp in n.peers],
                "locator": str(n.locator) if n.locator else None,
                "sids": [_sid_doc(s) for s in n.sids],
                "announce": [str(a) for a in n.announcements],
            }
            for n in p.nodes
        ],
        "sites": [
            {
                "name": s.name,
                "aggregates": [str(a) for a in s.aggregates],
                "locatorBlock": str(s.locator_block) if s.locator_block else None,
                "gateways": list(s.gateways),
                "segments": [_segment_doc(g) for g in s.segments],
            }
            for s in p.sites
        ],
        "problems": [str(x) for x in p.problems],
        "ledger": ledger_to_doc(p.ledger),
    } | ({"format": p.srv6.format,
          "routers": [{"name": r.name, "locator": str(r.locator),
                       "sids": [_sid_doc(x) for x in r.sids]} for r in p.routers]}
         if p.srv6.format != "full" else {})


def _sid_doc(s: Sid) -> dict[str, object]:
    doc: dict[str, object] = {"sid": str(s.sid), "behavior": s.behavior.value}
    if s.length != 128:
        doc |= {"length": s.length, "usid": usid_text(_net(s))}
    return doc


def _net(s: Sid) -> IPv6Network:
    return IPv6Network((int(s.sid), s.length))


def _segment_doc(g: Segment) -> dict[str, object]:
    doc: dict[str, object] = {"prefix": str(g.prefix), "segments": [str(x) for x in g.segments],
                              "target": g.target, "policy": g.policy}
    if g.usids:
        doc["usids"] = [usid_text(u) for u in g.usids]
    return doc


def _sid_cell(s: Sid) -> str:
    if s.length == 128:
        return f"{s.behavior.value}={s.sid}"
    return f"{s.behavior.value}={usid_text(_net(s))} ({s.sid}/{s.length})"


def _path_cell(g: Segment) -> str:
    """A uSID path as its uSIDs, then the containers on the wire."""
    if not g.usids:
        return " -> ".join(str(x) for x in g.segments)
    return (" > ".join(usid_text(u) for u in g.usids)
            + " = [" + ", ".join(str(x) for x in g.segments) + "]")


def plan_to_json(p: Plan) -> str:
    return json.dumps(plan_to_doc(p), indent=2, sort_keys=True) + "\n"


def plan_to_yaml(p: Plan) -> str:
    return yaml.safe_dump(plan_to_doc(p), sort_keys=True, default_flow_style=False)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def plan_to_table(p: Plan) -> str:
    parts = [f"fabric {p.fabric}: {len(p.nodes)} nodes in {len(p.sites)} sites, pod MTU {p.mtu}"]
    rows = []
    for n in p.nodes:
        peers = ", ".join(sorted({f"{pp.tor} AS{pp.asn}" for pp in n.peers}))
        blocks = " ".join(str(b) for b in (*n.ipv4_blocks, *n.ipv6_blocks)) or "-"
        sids = " ".join(_sid_cell(s) for s in n.sids) or "-"
        rows.append([n.name, n.site, n.rack, str(n.asn or "-"), str(n.router_id or "-"),
                     blocks, peers or "-", str(n.locator or "-"), sids])
    parts.append("")
    parts.append(_table(["NODE", "SITE", "RACK", "ASN", "ROUTER-ID", "POD BLOCKS", "PEERS",
                         "LOCATOR", "SIDS"], rows))
    parts.append("")
    srows = [[s.name, " ".join(str(a) for a in s.aggregates), str(s.locator_block or "-"),
              ", ".join(s.gateways) or "-", str(len(s.segments))] for s in p.sites]
    parts.append(_table(["SITE", "AGGREGATES", "LOCATOR BLOCK", "GATEWAYS", "SEGMENTS"], srows))
    if p.routers:
        parts.append("")
        parts.append(_table(["USID ROUTER", "LOCATOR", "SIDS"], [
            [r.name, str(r.locator), " ".join(_sid_cell(x) for x in r.sids)] for r in p.routers]))
    seg_rows = [[s.name, str(g.prefix), _path_cell(g), g.target,
                 g.policy or "-"] for s in p.sites for g in s.segments]
    if seg_rows:
        parts.append("")
        parts.append(_table(["FROM SITE", "PREFIX", "SEGMENT LIST", "DECAP AT", "POLICY"],
                            seg_rows))
    if p.problems:
        parts.append("")
        parts.append("PROBLEMS")
        parts.extend(f"  {x}" for x in p.problems)
    return "\n".join(parts) + "\n"
