"""Parse what ExaBGP writes to its API process (json encoder) into typed events.

Lines are either JSON objects (state changes, received updates, notifications) or the plain
acknowledgements of our commands (`done` / `error`). Nothing past this module sees raw JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any


@dataclass(frozen=True, slots=True)
class Ack:
    ok: bool


@dataclass(frozen=True, slots=True)
class StateEvent:
    peer: str
    state: str  # connected | up | down
    reason: str = ""
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    peer: str
    #: (prefix, next hop) announced; the next hop is the global address when a 32-byte
    #: (global + link-local) IPv6 next hop was sent
    announced: tuple[tuple[str, str], ...]
    withdrawn: tuple[str, ...]
    as_path: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EorEvent:
    peer: str
    family: str  # "ipv4 unicast"


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    peer: str
    direction: str  # receive | send
    code: int
    subcode: int
    text: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """ExaBGP says it is shutting down."""


@dataclass(frozen=True, slots=True)
class Other:
    line: str


Event = Ack | StateEvent | UpdateEvent | EorEvent | NotificationEvent | Shutdown | Other


def parse_line(line: str) -> Event:
    text = line.strip()
    if text == "done":
        return Ack(True)
    if text == "error":
        return Ack(False)
    if not text.startswith("{"):
        return Other(text)
    try:
        doc = json.loads(text)
    except ValueError:
        return Other(text)
    if not isinstance(doc, dict):
        return Other(text)
    try:
        return _parse_doc(doc) or Other(text)
    except (KeyError, TypeError, ValueError, AttributeError):
        return Other(text)


def _peer(doc: dict[str, Any]) -> str:
    return str(ip_address(doc["neighbor"]["address"]["peer"]))


def _parse_doc(doc: dict[str, Any]) -> Event | None:
    kind = doc.get("type")
    if kind == "state":
        n = doc["neighbor"]
        return StateEvent(_peer(doc), str(n["state"]), str(n.get("reason", "")),
                          float(doc.get("time", 0.0)))
    if kind == "notification" and "neighbor" not in doc:
        return Shutdown() if doc.get("notification") == "shutdown" else None
    if kind == "notification":
        msg = doc["neighbor"].get("message", {}).get("notification", {})
        return NotificationEvent(_peer(doc), str(doc["neighbor"].get("direction", "receive")),
                                 int(msg.get("code", 0)), int(msg.get("subcode", 0)),
                                 str(msg.get("message", msg.get("data", ""))))
    if kind == "update":
        msg = doc["neighbor"]["message"]
        if "eor" in msg:
            eor = msg["eor"]
            return EorEvent(_peer(doc), f"{eor.get('afi')} {eor.get('safi')}")
        upd = msg.get("update", {})
        return _parse_update(_peer(doc), upd)
    return None


def _parse_update(peer: str, upd: dict[str, Any]) -> UpdateEvent:
    announced: list[tuple[str, str]] = []
    for family, by_nh in (upd.get("announce") or {}).items():
        if not family.endswith(" unicast"):
            continue
        # A 32-byte IPv6 next hop shows as two keys (global, link-local) with the same NLRI:
        # keep the global one, or the link-local only when there is nothing else.
        chosen: dict[str, str] = {}
        for nh, nlris in by_nh.items():
            for item in nlris:
                prefix = str(ip_network(item["nlri"] if isinstance(item, dict) else item,
                                        strict=False))
                addr = ip_address(nh)
                if prefix not in chosen or ip_address(chosen[prefix]).is_link_local:
                    if prefix in chosen and addr.is_link_local:
                        continue
                    chosen[prefix] = str(addr)
        announced += sorted(chosen.items())
    withdrawn: list[str] = []
    for family, nlris in (upd.get("withdraw") or {}).items():
        if not family.endswith(" unicast"):
            continue
        for item in nlris:
            withdrawn.append(str(ip_network(item["nlri"] if isinstance(item, dict) else item,
                                            strict=False)))
    path: list[int] = []
    for seg in ((upd.get("attribute") or {}).get("as-path") or {}).values():
        path += [int(x) for x in seg.get("value", ())]
    return UpdateEvent(peer, tuple(announced), tuple(withdrawn), tuple(path))
