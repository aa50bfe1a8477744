"""Parse and validate a fabric description at the boundary, reporting every error at once.

`parse_fabric` is pure (text in, Fabric or InvalidInput out); `load_fabric` adds the file.
The document is read by `flatroute.fabric.parse` and checked as a whole by
`flatroute.fabric.checks`; both record their errors, with field paths, in one Reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flatroute.errors import InvalidInput, field_error
from flatroute.fabric.checks import check_fabric
from flatroute.fabric.model import Fabric
from flatroute.fabric.parse import FabricParser
from flatroute.fabric.reader import Reader

# libyaml's safe loader when present: 10x faster on large fabrics, same result.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_fabric(path: str | Path) -> Fabric:
    """Read and validate a fabric file. Raises InvalidInput (never a traceback-worthy error)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput([field_error(source, "", f"cannot read file: {exc.strerror}")]) from exc
    return parse_fabric(text, source)


def parse_fabric(text: str, source: str = "<fabric>") -> Fabric:
    try:
        doc = yaml.load(text, Loader=_YamlLoader)  # CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput([field_error(source, where, f"not valid YAML: {problem}")]) from exc
    r = Reader(source)
    fabric = FabricParser(r).document(doc)
    if fabric is None:
        raise InvalidInput(r.errors)
    # Cross-checks run even after field errors, so one run reports everything.
    check_fabric(fabric, r)
    if r.errors:
        raise InvalidInput(r.errors)
    return fabric
