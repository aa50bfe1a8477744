"""BFD per peer and as events: a ToR without BFD is judged by BGP alone; bfdd's notifications
wake the loop at once (the agent with fakes, and the control-socket codec, no root)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from flatroute import nodestate
from speaker import bfd, bfd_events
from tests.unit.speaker.harness import DEV_A, DEV_B, A, B, Harness, default_via, spec

BOTH = default_via((A, DEV_A), (B, DEV_B))
ONLY_B = default_via((B, DEV_B))
TIMERS = {"holdTime": 9, "gracefulRestart": 120, "communities": [],
          "bfd": {"minRx": 300, "minTx": 300, "multiplier": 3}}


def _only_a_runs_bfd() -> dict[str, Any]:
    s = spec(bgp=TIMERS)
    s["peers"][0]["bfd"] = True
    s["peers"][1]["bfd"] = False
    return s


def _up_both(h: Harness) -> None:
    h.once()
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    h.once(advance=3.0)


def test_a_peer_without_bfd_is_used_on_bgp_alone_and_status_says_off(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(_only_a_runs_bfd())
    h.bfdd.states[B] = "down"  # tor-b runs no BFD: bfdd would never see it up
    _up_both(h)
    st = h.status()
    assert h.default() == BOTH
    by = {s.peer: s for s in st.sessions}
    assert by[B].bfd == "off" and by[B].lastError is None
    assert by[A].bfd == "up"
    conf = bfd.render(h.bfdd.started[-1])
    assert f"peer {A}" in conf and f"peer {B}" not in conf


def test_no_peer_with_bfd_runs_no_bfdd(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = spec(bgp=TIMERS)
    for p in s["peers"]:
        p["bfd"] = False
    h.write(s)
    _up_both(h)
    assert not h.bfdd.started and h.default() == BOTH
    assert {x.bfd for x in h.status().sessions} == {"off"}


def test_a_bfd_event_wakes_the_loop_and_the_next_pass_drops_the_next_hop(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = spec(bgp=TIMERS)
    h.write(s)
    _up_both(h)
    assert h.default() == BOTH
    h.agent.trigger.clear()
    h.bfdd.event(A, "down")
    assert h.agent.trigger.is_set()  # the loop wakes now, not at the next interval
    assert {x.peer: x.bfd for x in h.agent.sessions.snapshot()}[A] == "down"
    h.once()
    assert h.default() == ONLY_B
    h.bfdd.event(A, "up")
    h.once()
    assert h.default() == BOTH


def test_node_state_peer_bfd_round_trips() -> None:
    st = nodestate.from_spec(_only_a_runs_bfd())
    assert [p.bfd for p in st.peers] == [True, False]
    assert [p.bfd for p in nodestate.from_json(nodestate.to_json(st)).peers] == [True, False]


# -- bfdd's control socket, as bytes ---------------------------------------------------------
def _msg(mtype: int, mid: int, doc: dict[str, Any]) -> bytes:
    body = json.dumps(doc).encode()
    return struct.pack("!IHBB", len(body), mid, mtype, 1) + body


def test_subscription_asks_for_peer_state_changes() -> None:
    req = bfd_events.subscribe_request()
    length, mid, mtype, ver = struct.unpack("!IHBB", req[:8])
    assert (length, mtype, ver) == (8, bfd_events.BMT_NOTIFY, 1) and mid != 0
    assert struct.unpack("=Q", req[8:]) == (bfd_events.NOTIFY_PEER_STATE,)


def test_decoder_reassembles_messages_split_across_reads() -> None:
    ok = _msg(1, bfd_events.SUBSCRIBE_ID, {"status": "ok"})
    down = _msg(4, 0, {"op": "status", "peer-address": "fd00:1::1", "state": "down"})
    init = _msg(4, 0, {"op": "status", "peer-address": "10.1.1.1", "state": "init"})
    up = _msg(4, 0, {"op": "status", "peer-address": "10.1.1.1", "state": "up"})
    data = ok + down + init + up
    dec = bfd_events.Decoder()
    msgs = dec.feed(data[:5]) + dec.feed(data[5:30]) + dec.feed(data[30:])
    assert bfd_events.subscribed(msgs[0])
    assert [bfd_events.peer_state(m) for m in msgs[1:]] == [
        ("fd00:1::1", "down"), ("10.1.1.1", "down"), ("10.1.1.1", "up")]


def test_other_messages_are_no_state() -> None:
    assert bfd_events.peer_state(bfd_events.Message(4, 0, b"{not json")) is None
    assert bfd_events.peer_state(bfd_events.Message(
        4, 0, json.dumps({"op": "add", "peer-address": "10.1.1.1"}).encode())) is None
    assert bfd_events.peer_state(bfd_events.Message(1, 0, b'{"status": "ok"}')) is None
    assert not bfd_events.subscribed(bfd_events.Message(1, 1, b'{"status": "error"}'))
