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
    #: the JSON text of the per-node maps as last saved, with a copy of what it shows
    _texts: dict[str, tuple[dict[str, dict[str, str]], str]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

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

    def to_json(self) -> str:
        """`json.dumps(to_doc(), indent=2, sort_keys=True)`, byte for byte, but cheap when the
        per-node maps did not change: at 5,000 nodes they are ~0.6 MB that the indenting
        (pure Python) encoder takes ~40 ms to write, while the timestamps change every cycle.
        """
        doc = self.to_doc()
        sections = {}
        for key in _PER_NODE:
            value: dict[str, dict[str, str]] = doc[key]
            cached = self._texts.get(key)
            if cached is None or cached[0] != value:
                # Nested one level down: every line after the first is indented once more.
                text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
                cached = ({k: dict(v) for k, v in value.items()}, text)
                self._texts[key] = cached
            doc[key] = _MARK
            sections[key] = cached[1]
        text = json.dumps(doc, indent=2, sort_keys=True)
        for key, section in sections.items():
            # Only a top-level key starts a line with exactly two spaces: the splice is exact.
            at = f'\n  "{key}": {_MARK_JSON}'
            text = text.replace(at, f'\n  "{key}": {section}', 1)
        return text + "\n"


#: The maps with an entry per node, cached by `Record.to_json`.
_PER_NODE = ("nodes", "retired")
_MARK = "\x00flatroute:record-section\x00"
_MARK_JSON = json.dumps(_MARK)


def save_record(state_dir: str | Path, record: Record) -> bool:
    """Write the record; False (and no write) when the file already says exactly this."""
    return write_atomic(str(Path(state_dir) / FILENAME), record.to_json())


def load_record_doc(state_dir: str | Path) -> dict[str, Any] | None:
    """The raw record, or None when missing or unreadable (status reads it defensively)."""
    try:
        doc = json.loads((Path(state_dir) / FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
