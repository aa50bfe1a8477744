"""The SRv6 datapath's map codecs and validation (speaker/bpf/maps.py): pure, no root."""

from __future__ import annotations

import struct
import sys
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.bpf import maps
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry

A = IPv6Address("fc00:a::1")
SEGS = tuple(IPv6Address(f"fc00:b::{i + 1:x}") for i in range(6))


def test_layout_sizes_match_the_c_structs() -> None:
    assert maps.ENCAP4_KEY_SIZE == 8
    assert maps.ENCAP6_KEY_SIZE == 20
    assert maps.ENCAP_VALUE_SIZE == 8 + 16 + 16 * maps.MAX_SEGMENTS == 120
    assert (maps.SID_KEY_SIZE, maps.SID_VALUE_SIZE) == (16, 8)
    assert (maps.LOCATOR_KEY_SIZE, maps.LOCATOR_VALUE_SIZE) == (20, 4)


def test_encap_key_is_host_order_prefixlen_then_network_order_address() -> None:
    key = maps.encode_encap_key(IPv4Network("10.1.2.0/24"))
    assert key[:4] == (24).to_bytes(4, sys.byteorder)
    assert key[4:] == bytes([10, 1, 2, 0])


def test_encap_value_layout() -> None:
    e = EncapEntry(IPv6Network("fd00::/64"), "encap.red", SEGS[:2], A)
    name, key, value = maps.encode(e)
    assert name == "flr_enc6"
    assert len(key) == 20
    assert value[0] == 2 and value[1] == 2 and value[2:8] == bytes(6)
    assert value[8:24] == A.packed
    assert value[24:40] == SEGS[0].packed and value[40:56] == SEGS[1].packed
    assert value[56:] == bytes(16 * 4)


@pytest.mark.parametrize("prefix", ["10.0.0.0/8", "10.1.2.3/32", "0.0.0.0/0", "fd00::/48",
                                    "fd00:1::2/128", "::/0"])
@pytest.mark.parametrize("mode", ["encap", "encap.red"])
@pytest.mark.parametrize("n", [1, 2, 6])
def test_encap_round_trip(prefix: str, mode: str, n: int) -> None:
    e = EncapEntry(ip_network(prefix), mode, SEGS[:n], A)
    name, key, value = maps.encode(e)
    assert name == ("flr_enc4" if e.prefix.version == 4 else "flr_enc6")
    assert maps.decode_encap(key, value) == e


@given(st.integers(min_value=0, max_value=128), st.integers(min_value=0, max_value=2**128 - 1),
       st.lists(st.integers(min_value=0, max_value=2**128 - 1), min_size=1, max_size=6))
def test_encap_round_trip_any_v6(plen: int, addr: int, segs: list[int]) -> None:
    prefix = IPv6Network((addr, plen), strict=False)
    e = EncapEntry(prefix, "encap", tuple(IPv6Address(s) for s in segs), A)
    assert maps.decode_encap(*maps.encode_encap(e)) == e


@pytest.mark.parametrize("behavior", sorted(maps.BEHAVIORS))
def test_sid_round_trip(behavior: str) -> None:
    e = SidEntry(IPv6Address("fc00:b::100"), behavior)
    name, key, value = maps.encode(e)
    assert name == "flr_sids" and key == e.sid.packed
    assert struct.unpack("=I4x", value)[0] == maps.BEHAVIORS[behavior]
    assert maps.decode_sid(key, value) == e


def test_locator_round_trip() -> None:
    e = LocatorEntry(IPv6Network("fc00:b::/48"))
    name, key, value = maps.encode(e)
    assert name == "flr_locs" and len(key) == 20 and len(value) == 4
    assert maps.decode_locator(key) == e


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"segments": ()}, "1 to 6 segments"),
    ({"segments": SEGS + SEGS[:1]}, "1 to 6 segments"),
    ({"mode": "inline"}, "encap mode"),
    ({"segments": [SEGS[0]]}, "tuple"),
    ({"segments": ("fc00::1",)}, "not an IPv6Address"),
    ({"source": "fc00::1"}, "source"),
    ({"prefix": "10.0.0.0/8"}, "IPv4Network or IPv6Network"),
])
def test_encap_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"prefix": IPv4Network("10.0.0.0/8"), "mode": "encap",
                               "segments": SEGS[:1], "source": A}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        EncapEntry(**args)  # type: ignore[arg-type]


def test_sid_and_locator_validation() -> None:
    with pytest.raises(ValueError, match="behavior must be one of"):
        SidEntry(IPv6Address("fc00::1"), "End.X")
    with pytest.raises(ValueError, match="not an IPv6Address"):
        SidEntry("fc00::1", "End")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an IPv6Network"):
        LocatorEntry(IPv4Network("10.0.0.0/8"))  # type: ignore[arg-type]


def test_decode_rejects_bad_bytes() -> None:
    key, value = maps.encode_encap(EncapEntry(IPv4Network("10.0.0.0/8"), "encap", SEGS[:1], A))
    with pytest.raises(ValueError, match="unknown mode"):
        maps.decode_encap(key, b"\x09" + value[1:])
    with pytest.raises(ValueError, match="segments"):
        maps.decode_encap(key, value[:1] + b"\x07" + value[2:])
    with pytest.raises(ValueError, match="bytes"):
        maps.decode_encap(key, value[:-1])
    with pytest.raises(ValueError, match="LPM key of 3 bytes"):
        maps.decode_encap(b"abc", value)
    with pytest.raises(ValueError, match="prefix length 33"):
        maps.decode_encap((33).to_bytes(4, sys.byteorder) + bytes(4), value)
    with pytest.raises(ValueError, match="unknown behavior"):
        maps.decode_sid(bytes(16), struct.pack("=I4x", 99))


def test_sum_percpu() -> None:
    raw = b"".join(struct.pack("=Q", v) for v in (1, 2, 3))
    assert maps.sum_percpu(raw, 3) == 6
    with pytest.raises(ValueError, match="per-CPU"):
        maps.sum_percpu(raw, 4)
