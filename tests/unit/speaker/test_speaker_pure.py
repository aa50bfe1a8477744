"""Pure tests (no root): config render, JSON parsing, diffs, netlink packing, status."""

from __future__ import annotations

import json
import os
import struct
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

import rtnetlink as rt
from flatroute import nodestate
from flatroute import speaker_status as status
from flatroute.errors import InvalidInput
from speaker import announce, bfd, exabgp_config, reconcile, rtnl
from speaker.exabgp_json import Ack, EorEvent, Other, StateEvent, UpdateEvent, parse_line
from speaker.routes import Nexthop, Route, Seg6Encap
from speaker.sessions import Sessions, reason_words


def spec(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "node": "n1", "asn": 64512, "routerId": "10.1.1.11", "mtu": 1500,
        "bgp": {"holdTime": 9, "gracefulRestart": 120, "communities": ["65535:65281"]},
        "uplinks": [{"tor": "tor1", "ipv4": "10.1.1.11/24", "ipv6": "fd00:1:1::11/64"}],
        "peers": [{"name": "tor1", "asn": 65001, "address": "10.1.1.1",
                   "localAddress": "10.1.1.11", "families": ["ipv4"]},
                  {"name": "tor1", "asn": 65001, "address": "fd00:1:1::1",
                   "localAddress": "fd00:1:1::11", "families": ["ipv4", "ipv6"]}],
        "podBlocks": {"ipv4": ["10.244.0.0/26"], "ipv6": ["fd00:10:244::/122"]},
        "srv6": {"enabled": True, "locator": "fcbb:bb00:1:1::/64",
                 "localSids": [{"sid": "fcbb:bb00:1:1::4", "behavior": "End.DX4"},
                               {"sid": "fcbb:bb00:1:1::44", "behavior": "End.DT4"}],
                 "routes": [{"prefix": "10.245.0.0/26", "segments": ["fcbb::4", "fcbb::5"],
                             "target": "x"}]},
    }
    s.update(over)
    return s


ST = nodestate.from_spec(spec())


def test_announcements_split_by_family_with_rfc8950_next_hop() -> None:
    want = announce.desired(ST)
    by = {(a.peer, a.prefix): a.next_hop for a in want}
    assert by[("10.1.1.1", "10.244.0.0/26")] == "self"
    assert by[("fd00:1:1::1", "10.244.0.0/26")] == "fd00:1:1::11"  # explicit, not router-id
    assert by[("fd00:1:1::1", "fd00:10:244::/122")] == "fd00:1:1::11"
    assert by[("fd00:1:1::1", "fcbb:bb00:1:1::/64")] == "fd00:1:1::11"
    assert ("10.1.1.1", "fd00:10:244::/122") not in by
    assert all(a.communities == ("65535:65281",) for a in want)
    assert announce.desired(ST, drained=True) == frozenset()


def test_announcement_diff_withdraws_gone_and_replaces_changed_without_withdraw() -> None:
    a = announce.Announcement("p", "10.0.0.0/26", "self")
    b = announce.Announcement("p", "10.0.1.0/26", "self")
    b2 = announce.Announcement("p", "10.0.1.0/26", "self", ("1:1",))
    withdraw, add = announce.diff(frozenset({b2}), frozenset({a, b}))
    assert withdraw == [a] and add == [b2]
    assert announce.diff(frozenset({a}), frozenset({a})) == ([], [])


def test_validate_rejects_unknown_peer_and_bad_community() -> None:
    bad = nodestate.from_spec(spec(peers=[{"name": "elsewhere", "asn": 1, "address": "10.9.9.9",
                                           "families": ["ipv4"]}],
                                   bgp={"communities": ["x:1"]}))
    with pytest.raises(InvalidInput) as exc:
        announce.validate(bad, "f.json")
    text = str(exc.value)
    assert "unknown peer" in text and "elsewhere" in text and "communities[0]" in text


def test_validate_refuses_more_prefixes_than_the_tors_accept() -> None:
    """The ToRs' maximum-prefix (spec.bgp.maxPrefixes, carried in the node state) would tear
    the session down: the speaker refuses the state instead of announcing it."""
    announce.validate(ST, "f.json")
    tight = nodestate.from_spec(spec(bgp={"maxPrefixes": len(ST.announce) - 1}))
    with pytest.raises(InvalidInput) as exc:
        announce.validate(tight, "f.json")
    text = str(exc.value)
    assert "spec.bgp.maxPrefixes" in text and "more than its ToRs accept" in text


def test_render_config_golden_bits() -> None:
    conf = exabgp_config.render_config(ST, ["/py", "bridge", "/run/x.sock"], md5_password="pw",
                                       static=announce.desired(ST))
    assert "run /py bridge /run/x.sock;" in conf
    assert conf.count("neighbor ") == 2
    v6 = conf[conf.index("neighbor fd00:1:1::1"):]
    v4 = conf[conf.index("neighbor 10.1.1.1"):conf.index("neighbor fd00:1:1::1")]
    assert "nexthop enable;" in v6 and "ipv4 unicast ipv6;" in v6
    assert "nexthop enable;" not in v4 and "ipv6 unicast;" not in v4
    for part in (v4, v6):
        assert "graceful-restart 120;" in part and "hold-time 9;" in part
        assert "route-refresh enable;" in part  # a ToR may ask for our routes again
        assert 'md5-password "pw";' in part and "peer-as 65001;" in part
        assert "local-as 64512;" in part and "router-id 10.1.1.11;" in part
        assert "receive { parsed; update; }" in part and "neighbor-changes;" in part
    assert "route 10.244.0.0/26 next-hop self community [65535:65281];" in v4
    assert "route 10.244.0.0/26 next-hop fd00:1:1::11 community [65535:65281];" in v6


def test_render_rejects_unsafe_md5() -> None:
    with pytest.raises(InvalidInput):
        exabgp_config.render_config(ST, ["x"], md5_password='a"; }')


def test_env_has_no_inline_comments_and_unique_paths() -> None:
    env = exabgp_config.render_env(exabgp_config.Paths("/run/a", "flatroute-1"))
    assert "#" not in env and "pid = '/run/a/exabgp.pid'" in env and "ack = true" in env
    assert "pipename = 'flatroute-1'" in env


def test_commands() -> None:
    a = announce.Announcement("10.1.1.1", "10.244.0.0/26", "self")
    assert exabgp_config.announce_command(a) == \
        "neighbor 10.1.1.1 announce route 10.244.0.0/26 next-hop self"
    assert exabgp_config.withdraw_command(a).startswith("neighbor 10.1.1.1 withdraw route")


STATE_UP = ('{ "exabgp": "5.0.0", "time": 1.5, "type": "state", "neighbor": { "address": '
            '{ "local": "10.1.1.11", "peer": "10.1.1.1" }, "asn": { "local": 64512, "peer": '
            '65001 }, "state": "up" } }')
UPDATE_8950 = ('{ "type": "update", "neighbor": { "address": { "local": "fd00:1:1::11", '
               '"peer": "fd00:1:1::1" }, "direction": "receive", "message": { "update": { '
               '"attribute": { "as-path": {"0": {"element": "as-sequence", "value": [65001]}} }, '
               '"announce": { "ipv4 unicast": { "fe80::1": [ { "nlri": "0.0.0.0/0" } ], '
               '"fd00:1:1::1": [ { "nlri": "0.0.0.0/0" } ] } }, "withdraw": { "ipv4 unicast": '
               '[ { "nlri": "10.9.0.0/24" } ] } } } } }')


def test_parse_lines() -> None:
    assert parse_line("done\n") == Ack(True) and parse_line("error") == Ack(False)
    assert parse_line("garbage") == Other("garbage")
    assert parse_line("{broken") == Other("{broken")
    assert parse_line(STATE_UP) == StateEvent("10.1.1.1", "up", "", 1.5)
    ev = parse_line(UPDATE_8950)
    assert isinstance(ev, UpdateEvent)
    assert ev.announced == (("0.0.0.0/0", "fd00:1:1::1"),)  # global next hop, not link-local
    assert ev.withdrawn == ("10.9.0.0/24",) and ev.as_path == (65001,)
    eor = json.dumps({"type": "update", "neighbor": {"address": {"peer": "10.1.1.1"},
                                                     "message": {"eor": {"afi": "ipv4",
                                                                         "safi": "unicast"}}}})
    assert parse_line(eor) == EorEvent("10.1.1.1", "ipv4 unicast")


def test_sessions_and_learned_ecmp_routes() -> None:
    s = Sessions()
    s.configure({"10.1.1.1": ("tor1", False), "10.1.2.1": ("tor2", True)}, 64512)
    for peer in ("10.1.1.1", "10.1.2.1"):
        assert s.handle(StateEvent(peer, "up"))
        s.handle(UpdateEvent(peer, (("0.0.0.0/0", peer.replace(".1.1.1", ".1.1.1")),), ()))
    s.handle(UpdateEvent("10.1.1.1", (("10.244.0.0/26", "10.1.1.1"),), (), (65001, 64512)))
    st2 = nodestate.from_spec(spec(uplinks=[{"tor": "tor1"}, {"tor": "tor2"}]))
    routes = reconcile.learned_routes(st2, s.snapshot())
    assert [str(r.dst) for r in routes] == ["0.0.0.0/0"]  # our own block reflected: ignored
    assert {n.gateway for n in routes[0].nexthops} == {"10.1.1.1", "10.1.2.1"}
    s.handle(StateEvent("10.1.2.1", "down", "hold timer expired"))
    routes = reconcile.learned_routes(st2, s.snapshot())
    assert [n.gateway for n in routes[0].nexthops] == ["10.1.1.1"]
    s.set_bfd("10.1.1.1", "down")
    assert reconcile.learned_routes(st2, s.snapshot()) == []


def test_reason_words() -> None:
    assert reason_words("", md5=True, ever_connected=False) == "MD5 mismatch or peer unreachable"
    assert "hold timer" in reason_words("Hold timer expired", md5=False, ever_connected=True)



@pytest.mark.parametrize(("reason", "words"), [
    # what ExaBGP 5 really says (reactor/peer.py), and what a person reads
    ("closing connection", "the peer closed the TCP connection"),
    ("notification received (6,2)",
     "NOTIFICATION from the peer: administrative shutdown by the peer (code 6, subcode 2)"),
    ("notification received (2,2)", "peer AS mismatch (bad peer AS) (code 2, subcode 2)"),
    ("notification received (6,9)", "hard reset by the peer (code 6, subcode 9)"),
    ("notification sent (4,0)", "hold timer expired: the peer stopped answering"),
    ("notification sent (6,3)", "NOTIFICATION sent to the peer: peer de-configured us"),
    ("notification received (9,9)", "notification 9/9 (code 9, subcode 9)"),
    ("connection received before we could fully establish one (x)", "connection collision"),
    ("Connection refused", "connection refused: nothing listens on the peer's BGP port"),
    ("", "session went down"),
    ("something new", "session went down (something new)"),
])
def test_every_close_cause_in_plain_words(reason: str, words: str) -> None:
    got = reason_words(reason, md5=False, ever_connected=True)
    assert words in got and "closing connection" not in got, got


def test_a_session_that_never_connected_says_what_a_connect_found() -> None:
    from speaker.sessions import unreached_words

    assert unreached_words("refused", md5=True).startswith("connection refused")
    assert unreached_words("unreachable", md5=False) == "peer unreachable: no route to it"
    assert unreached_words("timeout", md5=True) == "MD5 mismatch or peer unreachable"
    assert unreached_words("open", md5=True).startswith("MD5 mismatch: the peer accepts")
    assert unreached_words(None, md5=False) == "peer unreachable: no TCP connection"


def test_the_tcp_probe_against_real_sockets_on_loopback() -> None:
    import socket

    from speaker import tcpprobe

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
    try:
        found = {}
        for port, name in ((listening.getsockname()[1], "open"),
                           (closed.getsockname()[1], "refused")):
            found[name] = tcpprobe.probe([("127.0.0.1", "127.0.0.1")], port=port)
        assert found == {"open": {"127.0.0.1": "open"}, "refused": {"127.0.0.1": "refused"}}
        assert tcpprobe.probe([("fe80::1", None)]) == {}  # link-local: left to discovery
    finally:
        listening.close()
        closed.close()


def test_probes_are_rate_limited() -> None:
    from speaker.tcpprobe import Probes

    calls: list[object] = []

    def fn(targets: object) -> dict[str, str]:
        calls.append(targets)
        return {"10.1.1.1": "refused"}

    p = Probes(fn, every=10)
    assert p.results([("10.1.1.1", None)], 0.0) == {"10.1.1.1": "refused"}
    assert p.results([("10.1.1.1", None)], 5.0) == {"10.1.1.1": "refused"}
    assert len(calls) == 1
    p.results([("10.1.1.1", None)], 11.0)
    assert len(calls) == 2


def r(dst: str, *gws: str, kind: str = "learned") -> Route:
    return Route(ip_network(dst), tuple(Nexthop(g, "tor1") for g in gws), kind=kind)


def test_diff_add_replace_delete_and_idempotent() -> None:
    want = [r("0.0.0.0/0", "10.1.1.1", "10.1.2.1"), r("10.9.0.0/24", "10.1.1.1")]
    have = [r("0.0.0.0/0", "10.1.1.1"), r("10.8.0.0/24", "10.1.1.1")]
    ops = reconcile.diff(want, have)
    assert sorted((o.action, str(o.route.dst)) for o in ops) == [
        ("add", "10.9.0.0/24"), ("delete", "10.8.0.0/24"), ("replace", "0.0.0.0/0")]
    assert reconcile.diff(want, want) == []


def test_hold_learned_keeps_previous_paths() -> None:
    held = reconcile.hold_learned([r("0.0.0.0/0", "10.1.1.1")],
                                  [r("0.0.0.0/0", "10.1.2.1"), r("10.7.0.0/24", "10.1.2.1")])
    assert {str(x.dst) for x in held} == {"0.0.0.0/0", "10.7.0.0/24"}
    assert {n.gateway for n in held[0].nexthops} == {"10.1.1.1", "10.1.2.1"}


def test_srv6_routes_skip_dt4_without_vrf() -> None:
    routes, skipped = reconcile.srv6_routes(ST, vrf=False, encap_device="tor1")
    assert [s.reason for s in skipped] == ["missing kernel feature: vrf"]
    kinds = sorted(x.kind for x in routes)
    assert kinds == ["encap", "sid"]
    enc = next(x for x in routes if x.kind == "encap")
    assert isinstance(enc.encap, Seg6Encap) and enc.encap.mode == "encap"


def test_rtnl_pack_parse_roundtrip() -> None:
    names = {3: "tor1", 4: "tor2"}
    index = {v: k for k, v in names.items()}
    for route in (
        Route(ip_network("0.0.0.0/0"), (Nexthop("10.1.1.1", "tor1"), Nexthop("10.1.2.1", "tor2"))),
        Route(ip_network("10.50.0.0/24"), (Nexthop("fd00::2", "tor1"),)),
        Route(ip_network("::/0"), (Nexthop("fd00::1", "tor1"), Nexthop("fd00:2::1", "tor2")),
              metric=1024),
        Route(ip_network("10.245.0.0/26"), (Nexthop(None, "tor1"),),
              Seg6Encap("encap.red", tuple(ip_network(f"fcbb::{i}/128").network_address
                                           for i in (1, 2, 3)))),
    ):
        msg = rtnl.pack_route(rtnl.Op("add", route), 7, index, 70)
        n, mtype, flags, seq, _ = struct.unpack_from("=IHHII", msg)
        assert n == len(msg) and mtype == rt.RTM_NEWROUTE and seq == 7
        assert flags & rt.NLM_F_EXCL and flags & rt.NLM_F_ACK
        back, proto = rtnl.parse_route(msg, 16, len(msg), names)
        assert proto == 70 and back.same_as(route), (back, route)
    delete = rtnl.pack_route(rtnl.Op("delete", r("10.0.0.0/8", "10.1.1.1")), 8, index, 70,
                             ack=False)
    assert struct.unpack_from("=IHHII", delete)[1] == rt.RTM_DELROUTE
    assert delete[16 + 6] == rt.RT_SCOPE_NOWHERE


def test_status_roundtrip_and_text() -> None:
    st = status.SpeakerStatus(
        node="n1", pid=1, updated_at=status.now_iso(), generation="g", applied_at=None,
        seen_generation="g", drained=False, last_reconcile_at=None, last_reconcile_ms=1.0,
        last_reconcile_ok=True, last_error=None,
        sessions=(status.SessionStatus("10.1.1.1", "tor1", "down", None,
                                       "MD5 mismatch or peer unreachable", 0, 0),),
        announced=("10.244.0.0/26",), installed={"routes": 1},
        missing_kernel_features=("vrf: x",))
    back = status.parse(st.to_json())
    assert back == st
    text = status.render_text(back)
    assert "MD5 mismatch or peer unreachable" in text and "missing kernel feature: vrf" in text
    with pytest.raises(status.StatusError):
        status.parse("{}")


def test_bfd_render_and_parse() -> None:
    conf = bfd.render(nodestate.from_spec(spec(bgp={
        "holdTime": 9, "communities": [], "bfd": {"minRx": 300, "minTx": 300,
                                                  "multiplier": 3}})))
    assert " peer 10.1.1.1 local-address 10.1.1.11" in conf and "detect-multiplier 3" in conf
    assert "exit" not in conf
    assert bfd.parse_peers('[{"peer": "10.1.1.1", "status": "up"}, '
                           '{"peer": "10.1.2.1", "status": "down"}]') == {
        "10.1.1.1": "up", "10.1.2.1": "down"}
    assert bfd.parse_peers("nonsense") == {}


def test_bfd_down_error_clears_when_bfd_recovers_under_an_established_session() -> None:
    s = Sessions()
    s.configure({"10.1.1.1": ("tor1", False)}, 64512)
    s.handle(StateEvent("10.1.1.1", "up"))
    s.set_bfd("10.1.1.1", "down")
    assert s.snapshot()[0].last_error.startswith("BFD down")
    s.set_bfd("10.1.1.1", "up")
    assert s.snapshot()[0].last_error is None
    s.handle(StateEvent("10.1.1.1", "down", "hold timer expired"))
    s.set_bfd("10.1.1.1", "down")
    s.set_bfd("10.1.1.1", "up")  # a BGP error is not BFD's to clear
    assert s.snapshot()[0].last_error == reason_words("hold timer expired", md5=False,
                                                                ever_connected=True)


def test_the_node_state_watch_wakes_on_a_rename_and_on_removal(tmp_path: Path) -> None:
    import threading

    from speaker import statewatch

    path = tmp_path / "n1.json"
    path.write_text("a")
    woke = threading.Event()
    stop = threading.Event()
    statewatch.watch(str(path), woke.set, stop, period=0.01)
    try:
        assert not woke.wait(0.1)  # nothing changed
        (tmp_path / "new").write_text("a")
        os.replace(tmp_path / "new", path)  # same bytes, a new inode: the controller's rename
        assert woke.wait(2)
        woke.clear()
        path.unlink()
        assert woke.wait(2)
    finally:
        stop.set()
