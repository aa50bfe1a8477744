"""The SRv6 benchmark's paths and its reading of the wire (bench/srv6_paths.py): pure."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from bench.srv6_paths import SR_PATHS, container, end_sid, expected_overhead, overhead

DX4 = {"A": IPv6Address("fc00:a::d4"), "B": IPv6Address("fc00:b::d4")}


def test_the_five_waypoint_usid_path_is_one_container_both_ways() -> None:
    p = SR_PATHS["usid-5"]
    assert p.segments("A", DX4) == (IPv6Address("fcbb:bb00:1:2:3:4:5:b"),)
    assert p.segments("B", DX4) == (IPv6Address("fcbb:bb00:5:4:3:2:1:a"),)
    assert SR_PATHS["usid-0"].segments("A", DX4) == (IPv6Address("fcbb:bb00:b::"),)
    assert SR_PATHS["full-2wp"].segments("B", DX4) == (end_sid("T3"), end_sid("T1"),
                                                      DX4["A"])
    with pytest.raises(ValueError, match="one to six"):
        container("T1", "T2", "T3", "T4", "T5", "A", "B")


@pytest.mark.parametrize(("path", "bytes_"), [
    ("bpf-encap", 64), ("bpf-red", 40), ("bpf-2sid", 80), ("full-2wp", 80), ("full-5wp", 128),
    ("usid-0", 40), ("usid-2", 40), ("usid-5", 40)])
def test_expected_overhead(path: str, bytes_: int) -> None:
    assert expected_overhead(SR_PATHS[path]) == bytes_


def _ipv4(total: int) -> bytes:
    return bytes([0x45, 0]) + struct.pack("!H", total) + bytes(16)


def test_overhead_read_off_a_frame() -> None:
    eth6, eth4 = bytes(12) + b"\x86\xdd", bytes(12) + b"\x08\x00"
    ip6 = bytes(6) + bytes([4]) + bytes(33)                    # next header IPv4
    assert overhead(eth6 + ip6 + _ipv4(84), 14 + 40 + 84) == 40
    srh = bytes([4, 4]) + bytes(6) + bytes(32)                 # 2 segments, then IPv4
    ip6_srh = bytes(6) + bytes([43]) + bytes(33)
    assert overhead(eth6 + ip6_srh + srh + _ipv4(84), 14 + 40 + 40 + 84) == 80
    assert overhead(eth4 + _ipv4(84), 14 + 84) == 0
    outer = bytes([0x45]) + bytes(8) + bytes([17]) + bytes(10)  # IPv4, UDP
    udp = struct.pack("!HH", 40000, 4789) + bytes(4)
    vx = eth4 + outer + udp + bytes(8) + bytes(14) + _ipv4(84)
    assert overhead(vx, 14 + 20 + 8 + 8 + 14 + 84) == 50
    assert overhead(eth6 + bytes(6) + bytes([58]) + bytes(33) + bytes(8), 100) is None
