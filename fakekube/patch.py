"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a small strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

from fakekube.errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Strategic merge patch: list fields merged by key instead of replaced. Only the few fields
# flatroute is likely to patch on built-in objects are known; every other list is replaced,
# exactly like a JSON merge patch. Paths are tuples of map keys from the object root.
SMP_MERGE_KEYS: dict[tuple[str, ...], str | None] = {
    ("metadata", "finalizers"): None,  # list of strings, merged as a set
    ("metadata", "ownerReferences"): "uid",
    ("status", "conditions"): "type",
    ("status", "addresses"): "type",
    ("spec", "taints"): "key",
}


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Merge patch plus merge-by-key for the lists in :data:`SMP_MERGE_KEYS`.

    ``$setElementOrder/...`` and ``$retainKeys`` hints are ignored; other ``$`` directives
    (``$patch``, ``$deleteFromPrimitiveList/...``) are refused with 400, so a test never
    passes on a directive the fake silently misreads.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$"):
            raise bad_request(f"strategic merge patch directive {key} is not supported by the fake")
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif sub in SMP_MERGE_KEYS and isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, SMP_MERGE_KEYS[sub])
        else:
            result[key] = strategic_merge_patch(result.get(key), value, sub)
    return result


def _merge_list(current: Any, patch: list[Any], key: str | None) -> list[Any]:
    merged: list[Any] = list(copy.deepcopy(current)) if isinstance(current, list) else []
    for item in patch:
        if key is None:
            if item not in merged:
                merged.append(copy.deepcopy(item))
            continue
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map in list is missing the merge key {key!r}")
        for index, existing in enumerate(merged):
            if isinstance(existing, dict) and existing.get(key) == item[key]:
                merged[index] = merge_patch(existing, item)
                break
        else:
            merged.append(copy.deepcopy(item))
    return merged


class JsonPatchError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, message, reason="Invalid")


def _tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise bad_request(f"json patch path must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise JsonPatchError(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise JsonPatchError(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise JsonPatchError(f"path segment {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise JsonPatchError(f"cannot descend into a scalar at {token!r}")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"path {'/' + '/'.join(tokens)!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise JsonPatchError("cannot index a scalar")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"path {'/' + '/'.join(tokens)!r} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise JsonPatchError("cannot remove from a scalar")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise JsonPatchError("cannot add to a scalar")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch atomically: the input is never modified."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation {op!r}")
        kind = op["op"]
        path = _tokens(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"json patch {kind} operation needs a value")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(result, path)
        elif kind == "replace":
            _get(result, path)  # must exist
            if not path:
                result = copy.deepcopy(op["value"])
            else:
                _remove(result, path)
                result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "test":
            if _get(result, path) != op["value"]:
                raise JsonPatchError(f"testing value {op['path']} failed")
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"))
            if kind == "move" and path[: len(source)] == source and path != source:
                raise JsonPatchError("cannot move a value into one of its children")
            value = _get(result, source)
            if kind == "move":
                _remove(result, source)
            result = _add(result, path, copy.deepcopy(value))
        else:
            raise bad_request(f"unknown json patch operation {kind!r}")
    return result
