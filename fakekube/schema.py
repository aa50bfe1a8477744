"""A small subset of CRD structural-schema handling: defaulting, pruning, type validation.

Supported keywords: type, properties, additionalProperties (schema or bool), items, required,
enum, nullable, default, minimum, maximum, minLength, maxLength, minItems, maxItems, pattern,
x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string, x-kubernetes-embedded-resource
(treated as preserve). Not supported (silently accepted): format, oneOf/anyOf/allOf/not,
x-kubernetes-validations (CEL), x-kubernetes-list-type/map-keys, multipleOf, uniqueItems.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fakekube.errors import ApiError

if TYPE_CHECKING:
    from fakekube.resources import ResourceType

_TOP_LEVEL = ("apiVersion", "kind", "metadata")


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _check(
    schema: Mapping[str, Any], value: Any, path: str, problems: list[tuple[str, str]]
) -> Any:
    """Returns the defaulted, pruned value; appends (field, message) for each violation."""
    if not _check_type(schema, value, path, problems):
        return value
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        problems.append((path, f"Unsupported value: {json.dumps(value)}: supported values: "
                               f"{allowed}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, problems)
    if isinstance(value, str):
        _check_string(schema, value, path, problems)
    if isinstance(value, list):
        _check_list_size(schema, value, path, problems)
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [_check(items, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return value
    if isinstance(value, dict):
        return _check_object(schema, value, path, problems)
    return value


def _check_type(
    schema: Mapping[str, Any], value: Any, path: str, problems: list[tuple[str, str]]
) -> bool:
    """Checks null, int-or-string and `type`; False when checking stops at this value."""
    if value is None:
        if not schema.get("nullable", False):
            expected = schema.get("type", "object")
            problems.append((path, f'Invalid value: "null": {path} in body must be of type '
                                   f"{expected}"))
        return False
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok("integer", value)):
            problems.append((path, f"Invalid value: {json.dumps(value)}: {path} in body must be "
                                   "of type integer or string"))
        return False
    expected = schema.get("type")
    if expected and not _type_ok(str(expected), value):
        problems.append((path, f"Invalid value: {json.dumps(value)}: {path} in body must be of "
                               f"type {expected}: {json.dumps(type(value).__name__)}"))
        return False
    return True


def _check_number(
    schema: Mapping[str, Any], value: float, path: str, problems: list[tuple[str, str]]
) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        problems.append((path, f"Invalid value: {value}: {path} in body should be greater "
                               f"than or equal to {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        problems.append((path, f"Invalid value: {value}: {path} in body should be less than "
                               f"or equal to {schema['maximum']}"))


def _check_string(
    schema: Mapping[str, Any], value: str, path: str, problems: list[tuple[str, str]]
) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append((path, f"Invalid value: {json.dumps(value)}: {path} in body should "
                               f"be at least {schema['minLength']} chars long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append((path, f"Too long: may not be more than {schema['maxLength']} "
                               "bytes"))
    if "pattern" in schema and not re.search(str(schema["pattern"]), value):
        problems.append((path, f"Invalid value: {json.dumps(value)}: {path} in body should "
                               f"match '{schema['pattern']}'"))


def _check_list_size(
    schema: Mapping[str, Any], value: list[Any], path: str, problems: list[tuple[str, str]]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append((path, f"Invalid value: {len(value)}: {path} in body should have "
                               f"at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append((path, f"Too many: {len(value)}: must have at most "
                               f"{schema['maxItems']} items"))


def _check_object(
    schema: Mapping[str, Any], value: dict[str, Any], path: str, problems: list[tuple[str, str]]
) -> dict[str, Any]:
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields")
                    or schema.get("x-kubernetes-embedded-resource"))
    properties: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        if key not in value and isinstance(sub, Mapping) and "default" in sub:
            value = {**value, key: copy.deepcopy(sub["default"])}
    prefix = f"{path}." if path else ""
    for key, item in value.items():
        if key in properties:
            out[key] = _check(properties[key], item, f"{prefix}{key}", problems)
        elif isinstance(additional, Mapping):
            out[key] = _check(additional, item, f"{prefix}{key}", problems)
        elif additional is True or preserve or (not path and key in _TOP_LEVEL):
            out[key] = item
        # anything else is pruned, as the real server does for structural schemas
    for key in schema.get("required") or ():
        if key not in out:
            problems.append((f"{prefix}{key}", "Required value"))
    return out


def validate_and_prune(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Default, prune and validate ``obj`` in place against the type's openAPIV3Schema."""
    if rt.schema is None:
        return
    problems: list[tuple[str, str]] = []
    root = dict(rt.schema)
    props = dict(root.get("properties") or {})
    props.pop("metadata", None)  # metadata is validated by the server itself, not the schema
    root["properties"] = props
    checked = _check_object(root, obj, "", problems)
    if problems:
        name = str(obj.get("metadata", {}).get("name", ""))
        causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in problems]
        summary = ", ".join(f"{f}: {m}" for f, m in problems)
        qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        raise ApiError(422, f'{qualified} "{name}" is invalid: [{summary}]', reason="Invalid",
                       details={"name": name, "group": rt.group, "kind": rt.kind,
                                "causes": causes})
    obj.clear()
    obj.update(checked)
