"""controller.json: byte for byte the indented JSON of the record; cheap when nodes stay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.record import FILENAME, Record, load_record_doc, save_record

ODD = ['quote " and \\ backslash', "new\nline", "nœud ✓", "\x00flatroute:record-section\x00",
       '\n  "nodes": "\\u0000flatroute:record-section\\u0000"', ""]


def record(n: int = 3) -> Record:
    return Record(
        fabric_source="fabric.yaml", fabric_sha256="ab" * 32,
        last_attempt_at="2027-01-15T08:00:00+00:00", last_plan_at="2027-01-15T08:00:00+00:00",
        last_error={"at": "x", "source": "fabric.yaml", "errors": ODD},
        problems=[{"node": s, "message": s} for s in ODD], held_back=ODD,
        release_grace_seconds=3600,
        retired={s: {"retiredAt": s, "releaseAt": "later"} for s in ODD},
        nodes={f"n{i}": {"generation": f"{i:016x}", "publishedAt": "2027-01-15T08:00:00+00:00"}
               for i in range(n)} | {s: {"generation": s, "publishedAt": s} for s in ODD})


def plain(rec: Record) -> str:
    return json.dumps(rec.to_doc(), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("rec", [Record(), record(0), record(3), record(200)],
                         ids=["empty", "odd-only", "small", "bigger"])
def test_text_is_exactly_the_indented_json(rec: Record) -> None:
    assert rec.to_json() == plain(rec)
    assert rec.to_json() == plain(rec)  # and again, from the cache


def test_changes_are_never_hidden_by_the_cache() -> None:
    rec = record()
    rec.to_json()
    rec.nodes["n1"]["generation"] = "changed in place"
    assert rec.to_json() == plain(rec)
    rec.nodes = {}
    assert rec.to_json() == plain(rec)
    rec.retired["gone"] = {"retiredAt": "a", "releaseAt": "b"}
    assert rec.to_json() == plain(rec)
    rec.last_attempt_at = "2027-01-15T08:00:30+00:00"
    assert rec.to_json() == plain(rec)


def test_unchanged_per_node_maps_are_not_serialised_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record(1000)
    rec.to_json()
    seen: list[Any] = []
    real = json.dumps

    def spy(obj: Any, **kw: Any) -> str:
        seen.append(obj)
        return real(obj, **kw)

    monkeypatch.setattr(json, "dumps", spy)
    rec.last_attempt_at = "2027-01-15T08:00:30+00:00"  # what changes every cycle
    rec.nodes = {k: dict(v) for k, v in rec.nodes.items()}  # equal, not the same object
    text = rec.to_json()
    for obj in seen:  # neither map on its own, nor inside the whole document
        assert obj is not rec.nodes and obj is not rec.retired
        assert not (isinstance(obj, dict) and isinstance(obj.get("nodes"), dict))
    monkeypatch.setattr(json, "dumps", real)
    assert text == plain(rec)


def test_save_skips_an_unchanged_file(tmp_path: Path) -> None:
    rec = record()
    assert save_record(tmp_path, rec) is True
    st = (tmp_path / FILENAME).stat()
    assert save_record(tmp_path, rec) is False
    assert (tmp_path / FILENAME).stat().st_ino == st.st_ino
    assert load_record_doc(tmp_path) == json.loads(plain(rec))
    rec.last_attempt_at = "2027-01-15T08:00:30+00:00"
    assert save_record(tmp_path, rec) is True
    assert (tmp_path / FILENAME).read_text(encoding="utf-8") == plain(rec)
