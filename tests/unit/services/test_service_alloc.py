"""LoadBalancer allocation: never twice, stable across restarts, requests honoured, problems
instead of exceptions (property tests with hypothesis)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from flatroute.fabric.services import ServicePool
from flatroute.plan import service_ledger
from flatroute.plan.service_alloc import Allocation, Request, allocate, usage

V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network
POOLS = (
    ServicePool("a", (V4("192.0.2.0/29"),), (V6("2001:db8::/125"),)),
    ServicePool("b", (V4("198.51.100.0/30"),)),
    ServicePool("manual", (V4("203.0.113.0/30"),), auto_assign=False),
)


def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_first_free_dual_stack_skips_network_and_broadcast() -> None:
    got = allocate(POOLS, [Request("ns/x")], {})
    assert got.allocations["ns/x"] == Allocation("ns/x", "a", (addr("192.0.2.1"),
                                                              addr("2001:db8::1")))


def test_requested_address_and_pool_choice() -> None:
    got = allocate(POOLS, [Request("ns/m", addresses=(addr("203.0.113.2"),)),
                           Request("ns/b", pools=("b",), families=(4,))], {})
    assert got.allocations["ns/m"].pool == "manual"  # on request, even without autoAssign
    assert got.allocations["ns/b"].addresses == (addr("198.51.100.1"),)


def test_taken_and_outside_requests_are_problems() -> None:
    held = {"ns/x": Allocation("ns/x", "a", (addr("192.0.2.1"), addr("2001:db8::1")))}
    got = allocate(POOLS, [Request("ns/x"), Request("ns/y", addresses=(addr("192.0.2.1"),)),
                           Request("ns/z", addresses=(addr("10.9.9.9"),))], held)
    reasons = {p.key: p.reason for p in got.problems}
    assert reasons == {"ns/y": "AddressInUse", "ns/z": "AddressOutsidePools"}
    assert got.allocations["ns/x"] == held["ns/x"]


def test_exhaustion_is_a_problem_not_a_crash() -> None:
    reqs = [Request(f"ns/s{i}", pools=("b",)) for i in range(4)]
    got = allocate(POOLS, reqs, {})
    assert len(got.allocations) == 2  # a /30 hands out .1 and .2
    assert [p.reason for p in got.problems] == ["PoolExhausted", "PoolExhausted"]
    assert usage(POOLS, got.allocations)["b"] == (2, 2)


def test_unknown_pool_and_wrong_family() -> None:
    got = allocate(POOLS, [Request("ns/u", pools=("nope",)),
                           Request("ns/f", pools=("b",), families=(6,))], {})
    assert {p.reason for p in got.problems} == {"NoPool", "PoolExhausted"}


def test_deleted_service_frees_its_address() -> None:
    first = allocate(POOLS, [Request("ns/a", pools=("b",)), Request("ns/b", pools=("b",))], {})
    second = allocate(POOLS, [Request("ns/b", pools=("b",)), Request("ns/c", pools=("b",))],
                      first.allocations)
    assert second.allocations["ns/b"] == first.allocations["ns/b"]
    assert second.allocations["ns/c"].addresses == first.allocations["ns/a"].addresses


def test_ledger_round_trip() -> None:
    got = allocate(POOLS, [Request("ns/x"), Request("ns/y", pools=("b",))], {})
    text = service_ledger.to_json(got.allocations)
    assert service_ledger.from_json(text) == dict(got.allocations)


# -- properties --------------------------------------------------------------------------------
requests = st.lists(
    st.builds(Request, key=st.sampled_from([f"ns/s{i}" for i in range(12)]),
              pools=st.sampled_from([(), ("a",), ("b",), ("b", "a")]),
              families=st.sampled_from([(), (4,), (6,)])),
    max_size=12, unique_by=lambda r: r.key)


def _all_addresses(allocs: dict[str, Allocation]) -> list[str]:
    return [str(a) for al in allocs.values() for a in al.addresses]


@settings(max_examples=200, deadline=None)
@given(requests, requests)
def test_never_twice_and_stable_across_restarts(first: list[Request],
                                                second: list[Request]) -> None:
    one = allocate(POOLS, first, {})
    addrs = _all_addresses(dict(one.allocations))
    assert len(addrs) == len(set(addrs))
    assert len(one.allocations) + len(one.problems) == len(first)
    # a restart: the same requests against the persisted allocations change nothing
    restored = service_ledger.from_json(service_ledger.to_json(one.allocations))
    assert dict(allocate(POOLS, first, restored).allocations) == dict(one.allocations)
    # the input changes: whatever is still asked for the same way keeps its addresses
    two = allocate(POOLS, second, restored)
    addrs2 = _all_addresses(dict(two.allocations))
    assert len(addrs2) == len(set(addrs2))
    before = {r.key: r for r in first}
    for r in second:
        if before.get(r.key) == r and r.key in one.allocations:
            assert two.allocations[r.key] == one.allocations[r.key]
    for key, al in two.allocations.items():
        pool = next(p for p in POOLS if p.name == al.pool)
        assert all(pool.contains(a) for a in al.addresses), key
