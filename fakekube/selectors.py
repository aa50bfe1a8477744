"""Label selectors and field selectors, parsed once per request."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fakekube.errors import bad_request

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:\s(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label too, as in Kubernetes.
        return labels.get(self.key) not in self.values


def _split(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    if not selector:
        return ()
    requirements: list[Requirement] = []
    for part in _split(selector):
        eq = _EQ.match(part)
        if eq:
            key, op, value = eq.groups()
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", frozenset([value])))
            continue
        match = _SET.match(part)
        if not match:
            raise bad_request(f"unable to parse requirement: {part!r}")
        negate, key, set_op, values = match.groups()
        if set_op:
            if negate:
                raise bad_request(f"unable to parse requirement: {part!r}")
            items = frozenset(v.strip() for v in values.split(",") if v.strip())
            requirements.append(Requirement(key, set_op, items))
        else:
            requirements.append(Requirement(key, "!" if negate else "exists"))
    return tuple(requirements)


def labels_match(requirements: tuple[Requirement, ...], obj: Mapping[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool


def parse_field_selector(
    selector: str | None, supported: Callable[[str], bool]
) -> tuple[FieldRequirement, ...]:
    if not selector:
        return ()
    requirements: list[FieldRequirement] = []
    for part in selector.split(","):
        if not part.strip():
            continue
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                break
        else:
            raise bad_request(f"invalid field selector: {part!r}")
        field = field.strip()
        if not supported(field):
            raise bad_request(f'field label not supported: {field}')
        requirements.append(FieldRequirement(field, value.strip(), op == "!="))
    return tuple(requirements)


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string form the real server compares: missing is "", booleans are lower case."""
    node: Any = obj
    for part in field.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all((field_value(obj, r.field) == r.value) != r.negate for r in requirements)
