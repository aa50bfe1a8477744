"""`<state-dir>/controller.json`: what the controller last did, for `controller status`.

    {
      "version": 1,
      "fabric": {"source": "fabric.yaml", "sha256": "..."},    # the last good input
      "lastAttemptAt": "...", "lastPlanAt": "...",              # ISO 8601 UTC
      "lastError": null | {"at": "...", "source": "...", "errors": ["file: field: msg"]},
      "problems": [{"node": "n9", "message": "IPv4 pools of site a are exhausted: ..."}],
      "heldBack": ["n9"],                                       # not (re)published: problems
      "releaseGraceSeconds": 3600,
      "retired": {"n3": {"retiredAt": "...", "releaseAt": "..."}},
      "nodes": {"n1": {"generation": "...", "publishedAt": "..."}}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatroute.files import write_atomic

RECORD_VERSION = 1
FILENAME = "controller.json"


@dataclass(slots=True)
class Record:
    fabric_source: str | None = None
    fabric_sha256: str | None = None
    last_attempt_at: str | None = None
    last_plan_at: str | None = None
    last_error: dict[str, Any] | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    release_grace_seconds: float = 0
    retired: dict[str, dict[str, str]] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "fabric": {"source": self.fabric_source, "sha256": self.fabric_sha256},
            "lastAttemptAt": self.last_attempt_at,
            "lastPlanAt": self.last_plan_at,
            "lastError": self.last_error,
            "problems": self.problems,
            "heldBack": self.held_back,
            "releaseGraceSeconds": self.release_grace_seconds,
            "retired": self.retired,
            "nodes": self.nodes,
        }


def save_record(state_dir: str | Path, record: Record) -> bool:
    text = json.dumps(record.to_doc(), indent=2, sort_keys=True) + "\n"
    return write_atomic(str(Path(state_dir) / FILENAME), text)


def load_record_doc(state_dir: str | Path) -> dict[str, Any] | None:
    """The raw record, or None when missing or unreadable (status reads it defensively)."""
    try:
        doc = json.loads((Path(state_dir) / FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
