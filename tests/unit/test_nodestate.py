"""NodeState parsing: through the fabric loader's field-path Reader, every error at once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flatroute import nodestate
from flatroute.errors import InvalidInput
from flatroute.fabric import load_fabric
from flatroute.fabric.model import GRACEFUL_RESTART, HOLD_TIME, KEEPALIVE, POD_MTU
from flatroute.plan import plan
from tests.conftest import EXAMPLES


def _spec() -> dict[str, Any]:
    p = plan(load_fabric(EXAMPLES / "two-site.yaml"))
    return nodestate.spec_doc(nodestate.from_plan(p, p.nodes[0]))


def _errors(spec: Any) -> list[str]:
    with pytest.raises(InvalidInput) as exc:
        nodestate.from_spec(spec, "n.json")
    return [f"{e.path}: {e.message}" for e in exc.value.errors]


def test_a_published_spec_round_trips() -> None:
    spec = _spec()
    assert nodestate.spec_doc(nodestate.from_spec(spec)) == spec


def test_every_bad_field_is_named_by_its_path_in_one_run() -> None:
    spec = _spec()
    spec["srv6"]["datapath"] = "xdp"
    spec["srv6"]["encapMode"] = "inline"
    spec["peers"][0]["asn"] = "65001"
    spec["uplinks"][0]["ipv4"] = "10.0.0.1"
    spec["srv6"]["routes"] = [{"prefix": "10.9.0.0/26", "segments": []}]
    spec["podBlocks"]["ipv6"] = ["10.1.0.0/26"]
    del spec["node"]
    assert _errors(spec) == [
        "spec.uplinks[0].ipv4: needs a prefix length, like 10.1.1.1/24",
        "spec.peers[0].asn: must be an integer",
        _ipv6_error(spec["podBlocks"]["ipv6"]),
        "spec.srv6.routes[0]: needs at least one segment",
        "spec.srv6.encapMode: must be encap or encap.red",
        "spec.srv6.datapath: must be auto, kernel or bpf",
        "spec.node: is required",
    ]


def _ipv6_error(blocks: list[str]) -> str:
    """The error for a bad IPv6 block alone (its text comes from the ipaddress module)."""
    (only,) = _errors({"podBlocks": {"ipv6": blocks}, "node": "n", "asn": 1,
                       "routerId": "10.0.0.1"})
    assert only.startswith("spec.podBlocks.ipv6[0]: is not an IPv6 network")
    return only


def test_not_a_mapping() -> None:
    assert _errors([]) == ["spec: must be a mapping"]
    spec = _spec()
    spec["bgp"] = True
    assert _errors(spec) == ["spec.bgp: must be a mapping"]


def test_defaults_are_the_fabric_model_s() -> None:
    spec = _spec()
    for key in ("bgp", "mtu"):
        spec.pop(key)
    st = nodestate.from_spec(copy.deepcopy(spec))
    assert (st.bgp.hold_time, st.bgp.keepalive, st.bgp.graceful_restart, st.mtu) == (
        HOLD_TIME, KEEPALIVE, GRACEFUL_RESTART, POD_MTU)
    assert not st.bgp.bfd.enabled
