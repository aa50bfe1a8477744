"""Patch helpers, conditions and the speaker's status document."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fakekube.patch import merge_patch
from kube.objects import (
    Condition,
    NodeStatus,
    SessionStatus,
    merge_conditions,
    merge_patch_for,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=2), inner, max_size=3), max_leaves=10)
docs = st.dictionaries(st.text(max_size=2), json_values.filter(lambda v: v is not None),
                       max_size=4)


def _no_nulls(v: object) -> bool:
    if isinstance(v, dict):
        return all(x is not None and _no_nulls(x) for x in v.values())
    if isinstance(v, list):
        return all(_no_nulls(x) for x in v)
    return True


@given(docs, docs)
def test_merge_patch_for_turns_current_into_desired(cur: dict, want: dict) -> None:  # type: ignore[type-arg]
    if _no_nulls(want):
        assert merge_patch(cur, merge_patch_for(cur, want)) == want


def test_conditions_keep_their_time_unless_they_flip() -> None:
    first = merge_conditions(None, [Condition("Ready", "True", "Ok")], 1, now="T1")
    same = merge_conditions(first, [Condition("Ready", "True", "Ok")], 1, now="T2")
    assert same == first
    flipped = merge_conditions(first, [Condition("Ready", "False", "Down")], 1, now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_status_document_is_deterministic() -> None:
    s = NodeStatus(True, "h", 3, sessions=(SessionStatus("t1", "Established"),
                                           SessionStatus("t2", "Active")),
                   announced=("10.0.0.0/26",), missing_features=("vrf",))
    a = s.to_doc(now="T1")
    assert s.to_doc(a, now="T2") == a
    assert a["sessionsUp"] == "1/2" and a["observedGeneration"] == 3
    conds = {c["type"]: (c["status"], c["reason"]) for c in a["conditions"]}
    assert conds == {"Ready": ("True", "Ready"), "Applied": ("True", "Applied"),
                     "BGPEstablished": ("False", "Degraded"),
                     "KernelFeatures": ("False", "Missing")}
    failed = NodeStatus(False, last_error="netlink: EPERM").to_doc(now="T")
    assert {c["type"]: c["reason"] for c in failed["conditions"]}["Ready"] == "ApplyFailed"
