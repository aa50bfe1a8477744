"""uSIDs on the eBPF datapath, the pure parts: the flr_usids codec, the route model's uSID
routes and their map entries, and the end-sid command's uN (no root)."""

from __future__ import annotations

import sys
from ipaddress import IPv6Address, IPv6Network

import pytest
import yaml

from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from flatroute.nodestate import NodeState, from_plan
from flatroute.plan import plan
from speaker import reconcile, srv6_bpf
from speaker.bpf import maps
from speaker.bpf.maps import EncapEntry, LocatorEntry, UsidEntry
from speaker.endsid import end_entries
from speaker.routes import Seg6Local
from tests.conftest import EXAMPLES

N = IPv6Network


def test_usid_value_layout_matches_the_c_struct() -> None:
    assert (maps.USID_KEY_SIZE, maps.USID_VALUE_SIZE) == (20, 24)
    nh = IPv6Address("2001:db8::2")
    name, key, value = maps.encode(UsidEntry(N("fcbb:bb00:2:e001::/64"), "uA", nh))
    assert name == "flr_usids"
    assert key[:4] == (64).to_bytes(4, sys.byteorder)
    assert key[4:] == IPv6Address("fcbb:bb00:2:e001::").packed
    assert value[:4] == (8).to_bytes(4, sys.byteorder)  # BEH_UA
    assert value[4:8] == (64).to_bytes(4, sys.byteorder)
    assert value[8:] == nh.packed


@pytest.mark.parametrize("behavior", ["uN", "uDT4", "uDT6", "uDT46"])
def test_usid_round_trip(behavior: str) -> None:
    e = UsidEntry(N("fcbb:bb00:7::/48"), behavior)
    _, key, value = maps.encode(e)
    assert maps.decode_usid(key, value) == e


def test_usid_validation() -> None:
    with pytest.raises(ValueError, match="length 48 or 64"):
        UsidEntry(N("fcbb:bb00:7::/56"), "uN")
    with pytest.raises(ValueError, match="behavior"):
        UsidEntry(N("fcbb:bb00:7::/48"), "End")
    with pytest.raises(ValueError, match="uA needs one"):
        UsidEntry(N("fcbb:bb00:7:e001::/64"), "uA")
    with pytest.raises(ValueError, match="is for uA"):
        UsidEntry(N("fcbb:bb00:7::/48"), "uN", IPv6Address("2001:db8::1"))
    _, key, value = maps.encode(UsidEntry(N("fcbb:bb00:7::/48"), "uN"))
    with pytest.raises(ValueError, match="under the key"):
        maps.decode_usid(key, value[:4] + (64).to_bytes(4, sys.byteorder) + value[8:])


def _state(node: str) -> NodeState:
    doc = yaml.safe_load((EXAMPLES / "two-site-usid.yaml").read_text())
    p = plan(parse_fabric(yaml.safe_dump(doc)))
    return from_plan(p, p.node(node))


def test_a_nodes_usid_becomes_a_prefix_route_then_a_usid_entry() -> None:
    st = _state("tk-n1")
    routes, skipped = reconcile.srv6_routes(st, vrf=True, encap_device="(bpf)")
    assert skipped == []
    sid = next(r for r in routes if r.kind == "sid")
    assert (str(sid.dst), sid.encap) == ("fcbb:bb00:4::/48", Seg6Local("uDT46"))
    ents, problems = srv6_bpf.entries(routes, source=st.source_address, locator=st.locator)
    assert problems == []
    assert UsidEntry(N("fcbb:bb00:4::/48"), "uDT46") in ents
    assert LocatorEntry(N("fcbb:bb00:4::/48")) in ents
    encap = sorted((e for e in ents if isinstance(e, EncapEntry)), key=lambda e: str(e.prefix))
    # the whole two-waypoint path in one container, H.Encaps.Red: no SRH on the wire
    assert {(e.mode, e.segments) for e in encap} == {
        ("encap.red", (IPv6Address("fcbb:bb00:1:2:3::"),))}
    assert all(e.source == IPv6Address("fcbb:bb00:4::") for e in encap)
    assert srv6_bpf.counts(ents) == {"encap": 2, "sids": 1, "locators": 1}


def test_without_vrf_the_kernel_cannot_take_udt46() -> None:
    _, skipped = reconcile.srv6_routes(_state("os-n1"), vrf=False, encap_device="up0")
    assert [s.reason for s in skipped] == ["missing kernel feature: vrf"]


def test_end_sid_un_programs_the_whole_locator() -> None:
    assert end_entries("fcbb:bb00:1::", "fcbb:bb00:1::/48", "uN") == [
        UsidEntry(N("fcbb:bb00:1::/48"), "uN"), LocatorEntry(N("fcbb:bb00:1::/48"))]
    with pytest.raises(InvalidInput, match="block:ID::/48"):
        end_entries("fcbb:bb00:1::1", "fcbb:bb00:1::/48", "uN")
    with pytest.raises(InvalidInput, match="--behavior"):
        end_entries("fcbb:bb00:1::", "fcbb:bb00:1::/48", "uA")
