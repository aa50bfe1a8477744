"""Pure pieces: RFC 6902 / RFC 7386 / strategic merge patches and selector parsing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fakekube.errors import ApiError
from fakekube.patch import json_patch, merge_patch, strategic_merge_patch
from fakekube.selectors import (
    field_value,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

DOC: dict[str, Any] = {"a": {"b": 1, "c": [1, 2, 3]}, "d~e": 0, "f/g": 1}


@pytest.mark.parametrize(("ops", "expected"), [
    ([{"op": "add", "path": "/a/x", "value": 2}], {**DOC, "a": {**DOC["a"], "x": 2}}),
    ([{"op": "add", "path": "/a/c/1", "value": 9}], {**DOC, "a": {"b": 1, "c": [1, 9, 2, 3]}}),
    ([{"op": "add", "path": "/a/c/-", "value": 4}], {**DOC, "a": {"b": 1, "c": [1, 2, 3, 4]}}),
    ([{"op": "remove", "path": "/a/c/0"}], {**DOC, "a": {"b": 1, "c": [2, 3]}}),
    ([{"op": "replace", "path": "/d~0e", "value": 5}], {**DOC, "d~e": 5}),
    ([{"op": "remove", "path": "/f~1g"}], {"a": DOC["a"], "d~e": 0}),
    ([{"op": "move", "from": "/a/b", "path": "/z"}], {**DOC, "a": {"c": [1, 2, 3]}, "z": 1}),
    ([{"op": "copy", "from": "/a/c", "path": "/z"}], {**DOC, "z": [1, 2, 3]}),
    ([{"op": "test", "path": "/a/b", "value": 1}], DOC),
    ([{"op": "replace", "path": "", "value": {"new": True}}], {"new": True}),
])
def test_json_patch_operations(ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(DOC)
    assert json_patch(DOC, ops) == expected
    assert before == DOC  # input untouched


@pytest.mark.parametrize(("ops", "code"), [
    ([{"op": "test", "path": "/a/b", "value": 2}], 422),
    ([{"op": "remove", "path": "/nope"}], 422),
    ([{"op": "replace", "path": "/nope", "value": 1}], 422),
    ([{"op": "add", "path": "/a/c/7", "value": 1}], 422),
    ([{"op": "add", "path": "/a/c/01", "value": 1}], 422),
    ([{"op": "move", "from": "/a", "path": "/a/b/x"}], 422),
    ([{"op": "add", "path": "/a"}], 400),
    ([{"op": "frobnicate", "path": "/a"}], 400),
    ({"op": "add"}, 400),
])
def test_json_patch_errors(ops: Any, code: int) -> None:
    with pytest.raises(ApiError) as info:
        json_patch(DOC, ops)
    assert info.value.code == code


def test_json_patch_is_atomic() -> None:
    doc = {"a": 1}
    with pytest.raises(ApiError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2},
                         {"op": "test", "path": "/a", "value": 0}])
    assert doc == {"a": 1}


def test_merge_patch_rfc7386_examples() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890",
             "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": "b"}, {"a": {"c": None}}) == {"a": {}}


def test_strategic_merge_patch_known_lists() -> None:
    node = {"metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            "spec": {"podCIDRs": ["10.0.0.0/24"]}}
    patched = strategic_merge_patch(node, {
        "$setElementOrder/conditions": [{"type": "Ready"}],
        "metadata": {"finalizers": ["b", "a"], "ownerReferences": [{"uid": "1", "name": "y"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"},
                                  {"type": "Other", "status": "True"}]},
        "spec": {"podCIDRs": ["10.0.1.0/24"]},  # not a known list: replaced
    })
    assert patched["metadata"]["finalizers"] == ["a", "b"]
    assert patched["metadata"]["ownerReferences"] == [{"uid": "1", "name": "y"}]
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                               {"type": "Other", "status": "True"}]
    assert patched["spec"]["podCIDRs"] == ["10.0.1.0/24"]
    with pytest.raises(ApiError) as info:
        strategic_merge_patch(node, {"metadata": {"$patch": "replace"}})
    assert info.value.code == 400


def obj(labels: dict[str, str] | None = None, **top: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "labels": labels or {}}, **top}


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("a=1", {"a": "1"}, True),
    ("a==1", {"a": "2"}, False),
    ("a!=1", {}, True),
    ("a!=1", {"a": "1"}, False),
    ("a in (1, 2)", {"a": "2"}, True),
    ("a in (1,2)", {}, False),
    ("a notin (1,2)", {}, True),
    ("a notin (1,2),b", {"a": "3", "b": ""}, True),
    ("!a", {"a": "1"}, False),
    ("example.com/role=edge,a", {"example.com/role": "edge", "a": "x"}, True),
    ("", {"a": "1"}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert labels_match(parse_label_selector(selector), obj(labels)) is matches


@pytest.mark.parametrize("bad", ["a in", "a=(b", "!a in (b)", "a >< b"])
def test_bad_label_selectors(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(bad)
    assert info.value.code == 400


def test_field_selectors() -> None:
    def supported(name: str) -> bool:
        return name in ("metadata.name", "spec.unschedulable")

    target = obj(spec={"unschedulable": True})
    assert field_value(target, "spec.unschedulable") == "true"
    assert field_value(target, "spec.missing") == ""
    assert fields_match(parse_field_selector("metadata.name=x", supported), target)
    assert fields_match(parse_field_selector("metadata.name==x,spec.unschedulable=true",
                                             supported), target)
    assert not fields_match(parse_field_selector("metadata.name!=x", supported), target)
    with pytest.raises(ApiError, match=r"field label not supported: spec\.other"):
        parse_field_selector("spec.other=1", supported)
