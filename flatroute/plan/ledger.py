"""The allocation ledger on disk: JSON, sorted, round-trips exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flatroute.errors import InvalidInput, field_error
from flatroute.files import write_atomic
from flatroute.plan.model import Ledger, LedgerEntry

LEDGER_VERSION = 1


def ledger_to_doc(ledger: Ledger) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for name in sorted(ledger.nodes):
        e = ledger.nodes[name]
        entry: dict[str, Any] = {
            "asn": e.asn,
            "ipv4Blocks": list(e.ipv4_blocks),
            "ipv6Blocks": list(e.ipv6_blocks),
            "locator": e.locator,
            "uplinks": [{"tor": t, "ipv4": v4, "ipv6": v6} for t, v4, v6 in e.uplinks],
        }
        if e.retired_at:
            entry["retiredAt"] = e.retired_at
        nodes[name] = entry
    doc: dict[str, Any] = {"version": LEDGER_VERSION, "nodes": nodes,
                           "racks": {k: ledger.racks[k] for k in sorted(ledger.racks)}}
    if ledger.routers:  # uSID routers' node IDs; absent otherwise, as before
        doc["routers"] = {k: _router_doc(ledger.routers[k]) for k in sorted(ledger.routers)}
    return doc


def _router_doc(e: LedgerEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"locator": e.locator}
    if e.retired_at:
        out["retiredAt"] = e.retired_at
    return out


def ledger_to_json(ledger: Ledger) -> str:
    """The ledger as JSON with one line per node and per rack, in name order.

    A line per allocation keeps the file readable and makes `diff` (or git, for those who
    keep it) show exactly which node got or lost what. Each line comes from the C encoder:
    at 5,000 nodes `json.dumps(indent=2)`, which is pure Python, took ~0.4 s."""
    doc = ledger_to_doc(ledger)
    nodes = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                       for k, v in doc["nodes"].items())
    racks = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["racks"].items())
    routers = ""
    if "routers" in doc:
        lines = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                           for k, v in doc["routers"].items())
        routers = f'  "routers": {_block(lines)},\n'
    return (f'{{\n  "nodes": {_block(nodes)},\n  "racks": {_block(racks)},\n{routers}'
            f'  "version": {doc["version"]}\n}}\n')


def _block(lines: str) -> str:
    return f"{{\n{lines}\n  }}" if lines else "{}"


def ledger_from_doc(doc: Any, source: str = "<ledger>") -> Ledger:
    try:
        if doc.get("version") != LEDGER_VERSION:
            raise ValueError(f"unsupported ledger version {doc.get('version')!r}")
        nodes = {
            str(name): LedgerEntry(
                asn=e.get("asn"),
                ipv4_blocks=tuple(e.get("ipv4Blocks") or ()),
                ipv6_blocks=tuple(e.get("ipv6Blocks") or ()),
                locator=e.get("locator"),
                uplinks=tuple((u["tor"], u.get("ipv4"), u.get("ipv6"))
                              for u in e.get("uplinks") or ()),
                retired_at=e.get("retiredAt"),
            )
            for name, e in (doc.get("nodes") or {}).items()
        }
        racks = {str(k): int(v) for k, v in (doc.get("racks") or {}).items()}
        routers = {str(name): LedgerEntry(locator=str(e["locator"]),
                                          retired_at=e.get("retiredAt"))
                   for name, e in (doc.get("routers") or {}).items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput([field_error(source, "", f"malformed ledger: {exc}")]) from exc
    return Ledger(nodes, racks, routers)


def load_ledger(path: str | Path) -> Ledger:
    p = Path(path)
    if not p.exists():
        return Ledger()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput([field_error(str(p), "", f"cannot read ledger: {exc}")]) from exc
    return ledger_from_doc(doc, str(p))


def save_ledger(path: str | Path, ledger: Ledger) -> bool:
    return write_atomic(str(path), ledger_to_json(ledger))


def expire(ledger: Ledger, now: float, grace_seconds: float) -> Ledger:
    """Free the allocations of nodes retired for longer than the grace period."""
    from datetime import datetime

    def kept(entries: dict[str, LedgerEntry]) -> dict[str, LedgerEntry]:
        keep = {}
        for name, e in entries.items():
            if e.retired_at is not None:
                retired = datetime.fromisoformat(e.retired_at).timestamp()
                if now - retired >= grace_seconds:
                    continue
            keep[name] = e
        return keep

    return Ledger(kept(ledger.nodes), dict(ledger.racks), kept(ledger.routers))
