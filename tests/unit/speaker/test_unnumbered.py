"""Unnumbered uplinks in the speaker: resolving address-less peers, and what is rendered."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address
from typing import Any

import pytest

from flatroute import nodestate
from flatroute.errors import InvalidInput
from speaker import announce, bfd, exabgp_config, ndisc
from speaker.unnumbered import LinkAddresses, resolve, unnumbered_uplinks

TOR_A, TOR_B = IPv6Address("fe80::a"), IPv6Address("fe80::b")
OWN_A, OWN_B = IPv6Address("fe80::1:a"), IPv6Address("fe80::1:b")


def spec(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "node": "n1", "asn": 64512, "routerId": "10.244.0.0", "mtu": 1500,
        "bgp": {"holdTime": 9, "gracefulRestart": 120, "communities": [],
                "bfd": {"minRx": 300, "minTx": 300, "multiplier": 3}},
        "uplinks": [{"tor": "tor-a", "unnumbered": True}, {"tor": "tor-b", "unnumbered": True}],
        "peers": [{"name": "tor-a", "asn": 65001, "families": ["ipv4", "ipv6"]},
                  {"name": "tor-b", "asn": 65002, "families": ["ipv4", "ipv6"]}],
        "podBlocks": {"ipv4": ["10.244.0.0/26"], "ipv6": ["fd00:10:244::/122"]},
        "srv6": {"enabled": False},
    }
    s.update(over)
    return s


ST = nodestate.from_spec(spec())
BOTH = {"tor-a": LinkAddresses(TOR_A, OWN_A), "tor-b": LinkAddresses(TOR_B, OWN_B)}


def test_address_less_peers_become_link_local_sessions_bound_to_their_uplink() -> None:
    assert unnumbered_uplinks(ST) == ["tor-a", "tor-b"]
    st, problems = resolve(ST, BOTH)
    assert problems == []
    a, b = st.peers
    assert (a.address, a.interface, a.ipv6_next_hop, a.local_address) == (
        TOR_A, "tor-a", OWN_A, None)
    assert (b.address, b.interface, b.ipv6_next_hop) == (TOR_B, "tor-b", OWN_B)
    # everything announced on a link carries our link-local address there, IPv4 too (RFC 8950)
    want = announce.desired(st)
    assert {(x.peer, x.prefix, x.next_hop) for x in want} == {
        (str(TOR_A), "10.244.0.0/26", str(OWN_A)), (str(TOR_A), "fd00:10:244::/122", str(OWN_A)),
        (str(TOR_B), "10.244.0.0/26", str(OWN_B)), (str(TOR_B), "fd00:10:244::/122", str(OWN_B))}


def test_exabgp_and_bfdd_get_the_link_named() -> None:
    st, _ = resolve(ST, BOTH)
    conf = exabgp_config.render_config(st, ["bridge"], static=announce.desired(st))
    block = conf[conf.index(f"neighbor {TOR_A} {{"):conf.index(f"neighbor {TOR_B} {{")]
    assert "\tsource-interface tor-a;" in block
    assert "local-address" not in block  # the kernel picks our link-local on that link
    assert "nexthop enable;" in block and "ipv4 unicast ipv6;" in block
    assert f"route 10.244.0.0/26 next-hop {OWN_A};" in block
    # bfdd tells sessions apart by peer, local address and interface: all three named, and a
    # zebra beside it (bfdd learns interfaces from zebra only)
    assert f" peer {TOR_A} local-address {OWN_A} interface tor-a" in bfd.render(st)
    assert bfd.needs_zebra(st) and not bfd.needs_zebra(ST)
    numbered = exabgp_config.render_config(nodestate.from_spec(spec(
        uplinks=[{"tor": "tor-a", "ipv6": "fd00::2/64"}],
        peers=[{"name": "tor-a", "asn": 65001, "address": "fd00::1",
                "localAddress": "fd00::2", "families": ["ipv6"]}])), ["bridge"])
    assert "source-interface" not in numbered
    assert not bfd.needs_zebra(nodestate.from_spec(spec(
        uplinks=[{"tor": "tor-a", "ipv6": "fd00::2/64"}],
        peers=[{"name": "tor-a", "asn": 65001, "address": "fd00::1",
                "localAddress": "fd00::2", "families": ["ipv6"]}])))


def test_a_link_not_yet_known_leaves_only_its_peer_out_and_says_why() -> None:
    st, problems = resolve(ST, {"tor-a": LinkAddresses(None, OWN_A),
                                "tor-b": LinkAddresses(TOR_B, OWN_B)})
    assert [p.name for p in st.peers] == ["tor-b"]
    assert len(problems) == 1 and "no router advertisement on unnumbered uplink tor-a" in \
        problems[0]
    st, problems = resolve(ST, {"tor-b": LinkAddresses(TOR_B, None)})
    assert st.peers == ()
    assert "uplink tor-a has no IPv6 link-local address" in problems[0]
    assert "uplink tor-b has no IPv6 link-local address" in problems[1]


def test_two_tors_with_the_same_link_local_address_are_refused() -> None:
    st, problems = resolve(ST, {"tor-a": LinkAddresses(TOR_A, OWN_A),
                                "tor-b": LinkAddresses(TOR_A, OWN_B)})
    assert [p.name for p in st.peers] == ["tor-a"]
    assert f"{TOR_A} is also tor-a's" in problems[0]


def test_numbered_states_are_left_exactly_as_they_are() -> None:
    st = nodestate.from_spec(spec(
        uplinks=[{"tor": "tor-a", "ipv4": "10.1.1.11/24"}],
        peers=[{"name": "tor-a", "asn": 65001, "address": "10.1.1.1",
                "localAddress": "10.1.1.11", "families": ["ipv4"]}]))
    assert unnumbered_uplinks(st) == []
    assert resolve(st, {}) == (st, [])


def test_a_peer_without_address_needs_an_unnumbered_uplink() -> None:
    bad = nodestate.from_spec(spec(uplinks=[{"tor": "tor-a", "ipv4": "10.1.1.11/24"},
                                            {"tor": "tor-b", "unnumbered": True}]))
    with pytest.raises(InvalidInput) as exc:
        announce.validate(bad, "n1.json")
    assert [e.path for e in exc.value.errors] == ["spec.peers[0].address"]
    announce.validate(ST, "n1.json")  # both unnumbered: fine


def test_advertisement_is_a_router_advertisement_that_routes_nothing() -> None:
    mac = bytes.fromhex("020000000001")
    ra = ndisc.advertisement(mac)
    kind, code, _sum, hop, flags, lifetime, reachable, retrans = struct.unpack(
        "!BBHBBHII", ra[:16])
    assert (kind, code, hop, flags, lifetime, reachable, retrans) == (134, 0, 0, 0, 0, 0, 0)
    assert ra[16:] == bytes([1, 1]) + mac  # source link-layer address option, 8 bytes
    assert len(ndisc.advertisement(None)) == 16


def test_icmp6_filter_passes_only_router_advertisements() -> None:
    words = struct.unpack("=8I", ndisc._only_advertisements())
    passed = [t for t in range(256) if not words[t >> 5] & (1 << (t & 31))]
    assert passed == [134]
