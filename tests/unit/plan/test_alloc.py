"""The allocator's fast paths: what they build and write must be what ipaddress builds and
writes, on tricky values (zero runs, v4-mapped/-compatible IPv6, /0 and full-length prefixes)."""

from __future__ import annotations

import copy
import ipaddress
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatroute.plan import alloc
from flatroute.plan.alloc import (
    BlockPool,
    HostPool,
    _state,
    addr_text,
    address,
    net_text,
    network,
    parse_addr,
    parse_net,
)

V4_EDGES = [0, 1, 0x7F000001, 0x0A000001, 0xC0A80101, 0xFFFFFFFE, 0xFFFFFFFF]
V6_EDGES = [
    0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, 1 << 32,  # ::, ::1, IPv4-compatible
    0xFFFF << 32, (0xFFFF << 32) | 0x0A000001, (0xFFFE << 32) | 1,  # IPv4-mapped and beside
    1 << 127, (1 << 128) - 1, 0xFD00 << 112,
    (0x2001 << 112) | (0xDB8 << 96) | 1,  # 2001:db8::1
    (0x2001 << 112) | (0xDB8 << 96) | (1 << 48) | 1,  # 2001:db8:0:1::1: two zero runs
    (0xFCBB << 112) | (1 << 64) | 0x46, (0xFE80 << 112) | 1,
]
v4_values = st.one_of(st.sampled_from(V4_EDGES), st.integers(0, 2**32 - 1))
v6_values = st.one_of(
    st.sampled_from(V6_EDGES), st.integers(0, 2**128 - 1), st.integers(0, 2**48),
    st.integers(0, 2**32 - 1).map(lambda v: (0xFFFF << 32) | v),
    st.integers(0, 0xFFFF).flatmap(lambda h: st.sampled_from([h << s for s in range(0, 128, 16)])),
)
families = st.one_of(v4_values.map(lambda v: (4, v)), v6_values.map(lambda v: (6, v)))


def same(fast: Any, made: Any) -> None:
    """Equal, and indistinguishable: type, attributes, text, hash, pickling."""
    assert type(fast) is type(made)
    assert fast == made
    # /31 and /32 networks carry `hosts`, a method bound to themselves: compare its results
    state_fast, state_made = _state(fast), _state(made)
    assert ("hosts" in state_fast) == ("hosts" in state_made)
    if "hosts" in state_fast:
        assert list(state_fast.pop("hosts")()) == list(state_made.pop("hosts")())
    assert state_fast == state_made
    assert (str(fast), repr(fast), hash(fast)) == (str(made), repr(made), hash(made))
    assert pickle.loads(pickle.dumps(fast)) == made
    assert copy.deepcopy(fast) == made


def test_builders_are_used_on_this_python() -> None:
    # False would mean this Python lays ipaddress objects out differently: the planner then
    # falls back to the constructors, correct but about a third slower on a cold plan.
    assert alloc.FAST


@settings(max_examples=300, deadline=None)
@given(fv=families)
def test_address_and_text_are_ipaddress(fv: tuple[int, int]) -> None:
    version, value = fv
    made = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    same(address(value, version), made)
    text = addr_text(value, version)
    assert text == str(made)
    assert parse_addr(text) == made


@settings(max_examples=300, deadline=None)
@given(fv=families, data=st.data())
def test_network_and_text_are_ipaddress(fv: tuple[int, int], data: st.DataObject) -> None:
    version, value = fv
    bits = 32 if version == 4 else 128
    prefixlen = data.draw(st.one_of(st.sampled_from([0, 1, bits - 2, bits - 1, bits]),
                                    st.integers(0, bits)))
    start = value >> (bits - prefixlen) << (bits - prefixlen)
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    made = cls((start, prefixlen))
    fast = network(start, prefixlen, version)
    same(fast, made)
    assert (fast.broadcast_address, fast.hostmask, fast.with_netmask, fast.num_addresses) == (
        made.broadcast_address, made.hostmask, made.with_netmask, made.num_addresses)
    assert fast.subnet_of(made) and made.subnet_of(fast)  # type: ignore[arg-type]
    if prefixlen >= bits - 2:
        assert list(fast.hosts()) == list(made.hosts())
    text = net_text(fast)
    assert text == str(made)
    assert parse_net(text) is fast


@settings(max_examples=300, deadline=None)
@given(fv=families, data=st.data())
def test_interface_is_ipaddress(fv: tuple[int, int], data: st.DataObject) -> None:
    version, value = fv
    bits = 32 if version == 4 else 128
    prefixlen = data.draw(st.one_of(st.sampled_from([0, 1, bits - 1, bits]),
                                    st.integers(0, bits)))
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    subnet = cls((value, prefixlen), strict=False)
    pool = HostPool(subnet)
    text = addr_text(value, version)
    fast, addr = pool.interface(text)
    made = (ipaddress.IPv4Interface if version == 4 else ipaddress.IPv6Interface)((value,
                                                                                  prefixlen))
    same(fast, made)
    assert fast.network is subnet  # shared, not rebuilt
    assert addr == made.ip and type(addr) is type(made.ip)
    assert (fast.ip, fast.with_prefixlen, fast.hostmask) == (made.ip, made.with_prefixlen,
                                                              made.hostmask)


@pytest.mark.parametrize(("subnet", "text"), [
    ("10.1.0.0/24", "10.2.0.5"),          # off the subnet: a hand-edited ledger
    ("10.1.0.0/24", "fd00::5"),           # the wrong family
    ("fe80::/64", "fe80::5%eth0"),        # a scoped address
])
def test_interface_off_the_fast_path_is_ipaddress_too(subnet: str, text: str) -> None:
    net = ipaddress.ip_network(subnet)
    fast, addr = HostPool(net).interface(text)
    plain = ipaddress.ip_address(text)
    made = (ipaddress.IPv4Interface if plain.version == 4 else ipaddress.IPv6Interface)(
        (int(plain), net.prefixlen))
    same(fast, made)
    assert addr == made.ip


def naive_blocks(pools: list[str], prefixlen: int, skip_first: int) -> list[str]:
    out: list[str] = []
    for p in pools:
        out += [str(s) for s in ipaddress.ip_network(p).subnets(new_prefix=prefixlen)]
    return out[skip_first:]


@settings(max_examples=200, deadline=None)
@given(v6=st.booleans(), extra=st.integers(0, 3), skip_first=st.integers(0, 2),
       taken=st.sets(st.integers(0, 40), max_size=12))
def test_block_pool_hands_out_the_first_free_blocks(v6: bool, extra: int, skip_first: int,
                                                     taken: set[int]) -> None:
    pools = (["fd00:1::/120", "fd00:9::/122", "::ffff:0:0/124"] if v6
             else ["10.0.0.0/28", "10.9.0.0/30", "0.0.0.0/29"])
    prefixlen = (124 if v6 else 30) + extra % 2
    expect = naive_blocks(pools, prefixlen, skip_first)
    pool = BlockPool([ipaddress.ip_network(p) for p in pools], prefixlen, skip_first=skip_first)
    claimed = {expect[i] for i in taken if i < len(expect)}
    for block in claimed:
        assert pool.claim(ipaddress.ip_network(block))
    got = []
    while (net := pool.allocate()) is not None:
        got.append(net)
    assert [str(n) for n in got] == [b for b in expect if b not in claimed]
    for net in got:
        same(net, ipaddress.ip_network(str(net)))
    assert pool.allocate() is None
    # the same blocks as ledger text, remembered for parse_net
    pool = BlockPool([ipaddress.ip_network(p) for p in pools], prefixlen, skip_first=skip_first)
    for block in claimed:
        pool.claim(ipaddress.ip_network(block))
    texts: list[str] = []
    while (text := pool.allocate_text()) is not None:
        texts.append(text)
        same(parse_net(text), ipaddress.ip_network(text))
    assert texts == [str(n) for n in got]
