"""A node removed from the fabric (its tombstone published) withdraws everything at once and
ends its sessions with a NOTIFICATION; a missing or unreadable node state never does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from flatroute import tombstone
from speaker import farewell
from speaker.exabgp_json import StateEvent
from tests.unit.speaker.harness import DEV_A, DEV_B, A, B, Harness, spec

GONE = tombstone.Removed("n1", "2026-01-01T00:00:30+00:00")


def _applied(tmp_path: Path) -> Harness:
    """A node with both sessions established, its block announced, a learned default."""
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    st = h.once()
    assert st.announced == ("10.244.0.0/26",) and h.default() is not None
    assert (tmp_path / "run" / "node.json").exists()
    return h


def _tors_answer(h: Harness) -> None:
    """What the ToRs do: a fresh ExaBGP's sessions come up (no graceful restart this time);
    a teardown makes ExaBGP send the NOTIFICATION and report the session down."""
    bgp = h.bgp
    plain_send, plain_supervise = bgp.send, bgp.supervise

    def come_up() -> None:
        for peer in (A, B):
            bgp.emit(StateEvent(peer, "up", time=h.clock.time() + 0.5))

    def supervise(config: Callable[[], str], env: str) -> bool:
        started = plain_supervise(config, env)
        if started:
            threading.Timer(0.05, come_up).start()
        return started

    def send(commands: Sequence[str], timeout: float = 10.0) -> list[bool]:
        out = plain_send(commands, timeout)
        for c in commands:
            if c.endswith(" teardown 3"):
                bgp.emit(StateEvent(c.split()[1], "down", "notification sent (6,3)",
                                    time=h.clock.time() + 1))
        return out

    bgp.supervise, bgp.send = supervise, send  # type: ignore[method-assign]


def test_a_tombstone_withdraws_everything_at_once_then_notifies_every_tor(
        tmp_path: Path) -> None:
    h = _applied(tmp_path)
    starts = h.bgp.starts
    h.write(tombstone.to_json(GONE))
    st = h.once()
    # 1. withdrawn through the API (the ToRs drop the block now, graceful restart or not)
    withdrawn = [c for c in h.bgp.sent if " withdraw route 10.244.0.0/26" in c]
    assert sorted(c.split()[1] for c in withdrawn) == [A, B]
    assert st.announced == ()
    # ... and ExaBGP restarted without graceful restart, so it can send a NOTIFICATION
    assert h.bgp.kills == 1 and h.bgp.starts == starts + 1 and h.bgp.reloads == []
    assert h.bgp.config is not None and "graceful-restart disable;" in h.bgp.config
    assert "route 10.244.0.0/26" not in h.bgp.config
    assert st.removed is not None and st.removed["state"] == "leaving"
    assert st.removed["at"] == GONE.at
    # 2. the sessions come back without graceful restart: each gets a Cease NOTIFICATION
    h.up(A, eor=False)
    h.bgp.emit(StateEvent(A, "up", time=h.clock.time() + 1))
    h.bgp.emit(StateEvent(B, "up", time=h.clock.time() + 1))
    h.clock.advance(2)
    h.once()
    assert f"neighbor {A} teardown 3" in h.bgp.sent and f"neighbor {B} teardown 3" in h.bgp.sent
    assert h.bgp.alive()  # not killed before the NOTIFICATIONs went out
    # 3. once both went down, ExaBGP stops, our routes and the node file go
    h.clock.advance(1)
    h.bgp.emit(StateEvent(A, "down", "notification sent", time=h.clock.time()))
    h.bgp.emit(StateEvent(B, "down", "notification sent", time=h.clock.time()))
    st = h.once()
    assert not h.bgp.alive() and h.bgp.starts == starts + 1
    assert h.default() is None
    assert not (tmp_path / "run" / "node.json").exists()
    assert st.removed == {"at": GONE.at, "reason": "not in the fabric", "state": "left",
                          "why": "notified"}
    assert st.generation == tombstone.generation(GONE) and st.last_error is None
    assert st.sessions == ()
    events = h.bgp.events()
    h.once(advance=30)  # left: nothing more happens
    assert h.bgp.events() == events and not h.bgp.alive()


def test_tors_that_never_come_back_end_the_farewell_at_the_deadline(tmp_path: Path) -> None:
    h = _applied(tmp_path)
    h.write(tombstone.to_json(GONE))
    h.once()
    h.down(A)
    h.down(B)
    st = h.once(advance=1)
    assert st.removed is not None and st.removed["state"] == "leaving" and h.bgp.alive()
    st = h.once(advance=farewell.wait_for(h.agent.resolved.state))  # type: ignore[union-attr]
    assert st.removed is not None and st.removed["why"] == "deadline"
    assert not h.bgp.alive() and h.default() is None


def test_without_the_api_exabgp_restarts_without_graceful_restart_and_no_routes(
        tmp_path: Path) -> None:
    h = _applied(tmp_path)
    h.bgp.connected.clear()  # the API connection is gone
    h.write(tombstone.to_json(GONE))
    st = h.once()
    assert h.bgp.kills == 1 and h.bgp.starts == 2
    assert h.bgp.config is not None and "graceful-restart disable;" in h.bgp.config
    assert "route 10.244.0.0/26" not in h.bgp.config and st.announced == ()


def test_a_missing_node_state_is_never_a_removal(tmp_path: Path) -> None:
    h = _applied(tmp_path)
    events = h.bgp.events()
    (tmp_path / "nodes" / "n1.json").unlink()
    st = h.once()
    assert st.last_error is not None and "no node state" in st.last_error
    assert st.announced == ("10.244.0.0/26",) and st.removed is None
    assert h.bgp.events() == events and h.default() is not None


def test_a_tombstone_before_anything_was_applied_starts_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(tombstone.to_json(GONE))
    st = h.once()
    assert h.bgp.events() == (0, 0, 0, 0) and h.kernel.touched() == 0
    assert st.removed is not None and st.removed["why"] == "nothing applied"
    assert st.last_error is None and st.generation == tombstone.generation(GONE)


def test_sigterm_on_a_removed_node_finishes_leaving_first(tmp_path: Path) -> None:
    h = _applied(tmp_path)
    _tors_answer(h)
    h.write(tombstone.to_json(GONE))  # published, not yet read by a pass
    h.agent.stop()
    assert f"neighbor {A} teardown 3" in h.bgp.sent and f"neighbor {B} teardown 3" in h.bgp.sent
    assert any(" withdraw route 10.244.0.0/26" in c for c in h.bgp.sent)
    st = h.status()
    assert st.removed is not None and st.removed["why"] == "notified"
    assert h.default() is None


def test_sigterm_on_a_node_in_the_fabric_keeps_graceful_restart(tmp_path: Path) -> None:
    h = _applied(tmp_path)
    sent = list(h.bgp.sent)
    h.agent.stop()
    assert h.bgp.sent == sent and h.bgp.reloads == []  # no withdrawal, no teardown
    assert h.default() is not None  # kernel routes stay


def test_a_node_back_in_the_fabric_announces_again(tmp_path: Path) -> None:
    h = _applied(tmp_path)
    _tors_answer(h)
    h.write(tombstone.to_json(GONE))
    for _ in range(4):
        h.once(advance=1)
        time.sleep(0.1)  # the fake ToRs answer from a timer
    assert not h.bgp.alive()
    h.write(spec())
    st = h.once()
    assert st.removed is None and h.bgp.alive()
    assert h.bgp.config is not None and "route 10.244.0.0/26" in h.bgp.config
    assert "graceful-restart 120;" in h.bgp.config
    assert (tmp_path / "run" / "node.json").exists()
    assert st.announced == ("10.244.0.0/26",) and DEV_A and DEV_B
