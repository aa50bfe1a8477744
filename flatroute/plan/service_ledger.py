"""The LoadBalancer allocations on disk (static mode: `<state-dir>/services.json`).

JSON, one line per Service in key order, so `diff` shows who got or lost what. Loaded before
anything is allocated: a file that cannot be read is fatal (allocating without it could hand
out a live address twice).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flatroute.errors import InvalidInput, field_error
from flatroute.files import write_atomic
from flatroute.plan.service_alloc import Allocation

VERSION = 1


def to_json(allocations: Mapping[str, Allocation]) -> str:
    lines = ",\n".join(
        f"    {json.dumps(k)}: "
        + json.dumps({"pool": a.pool, "addresses": [str(x) for x in a.addresses]},
                     sort_keys=True)
        for k, a in sorted(allocations.items()))
    body = f"{{\n{lines}\n  }}" if lines else "{}"
    return f'{{\n  "services": {body},\n  "version": {VERSION}\n}}\n'


def from_json(text: str, source: str = "<services ledger>") -> dict[str, Allocation]:
    try:
        doc: Any = json.loads(text)
        if doc.get("version") != VERSION:
            raise ValueError(f"unsupported version {doc.get('version')!r}")
        return {str(k): Allocation(str(k), str(v["pool"]),
                                   tuple(ipaddress.ip_address(x) for x in v["addresses"]))
                for k, v in doc["services"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidInput([field_error(source, "", f"not a services ledger: {exc}")]) from exc


def load(path: str | Path) -> dict[str, Allocation]:
    p = Path(path)
    if not p.exists():
        return {}
    return from_json(p.read_text(encoding="utf-8"), str(p))


def save(path: str | Path, allocations: Mapping[str, Allocation]) -> bool:
    return write_atomic(str(path), to_json(allocations))
