"""The agent's graceful-restart and next-hop decisions, with fakes and a fake clock (no root)."""

from __future__ import annotations

from pathlib import Path

from flatroute import nodestate
from speaker import grace, reconcile
from tests.unit.speaker.harness import DEV_A, DEV_B, A, B, Harness, default_via, spec

BOTH = default_via((A, DEV_A), (B, DEV_B))
ONLY_A = default_via((A, DEV_A))


def started(tmp: Path, **over: object) -> Harness:
    """A speaker restarting over the learned ECMP default of its previous run."""
    h = Harness(tmp)
    h.kernel.routes[BOTH.key] = BOTH
    for r in reconcile.own_blocks(nodestate.from_spec(spec(**over))):
        h.kernel.routes[r.key] = r  # the previous run's unreachable routes stay, untouched
    h.write(spec(**over))
    h.once()
    assert h.bgp.starts == 1
    return h


def test_paths_are_held_until_end_of_rib_and_a_settle_time(tmp_path: Path) -> None:
    h = started(tmp_path)
    assert h.kernel.ops == []  # nothing established yet: the old paths stay
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B)  # tor-b is back, sent End-of-RIB, but no default (yet)
    h.once(advance=1.0)
    assert h.kernel.ops == [] and h.default() == BOTH  # not settled: EoR, but < 2 s
    assert not h.agent._all_settled()
    h.once(advance=grace.SETTLE_AFTER_EOR)
    assert h.default() == ONLY_A  # both settled: tor-b's path from before goes
    assert [op.action for op in h.kernel.ops] == ["replace"]
    assert h.agent._all_settled()


def test_without_end_of_rib_a_peer_settles_later(tmp_path: Path) -> None:
    h = started(tmp_path)
    h.up(A, routes={"0.0.0.0/0": A}, eor=False)
    h.up(B, eor=False)
    h.once(advance=grace.SETTLE_AFTER_EOR + 0.5)
    assert h.default() == BOTH  # no End-of-RIB: 2 s is not enough
    h.once(advance=grace.SETTLE_WITHOUT_EOR - grace.SETTLE_AFTER_EOR)
    assert h.default() == ONLY_A


def test_the_cap_ends_the_hold_for_peers_that_never_come_back(tmp_path: Path) -> None:
    h = started(tmp_path)  # hold time 9 s: cap 18 s
    h.once(advance=17.0)
    assert h.default() == BOTH and not h.agent._all_settled()
    h.once(advance=2.0)
    assert h.default() is None  # neither ToR came back: its paths are gone
    assert [op.action for op in h.kernel.ops] == ["delete"]
    assert h.agent._all_settled()


def test_the_cap_is_the_option_when_given(tmp_path: Path) -> None:
    h = started(tmp_path)
    object.__setattr__(h.agent.opts, "restart_hold", 3.0)
    h.once(advance=3.5)
    assert h.default() is None


def test_a_fresh_exabgp_holds_the_paths_again(tmp_path: Path) -> None:
    h = started(tmp_path)
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    h.once(advance=3.0)
    assert h.agent._all_settled() and h.default() == BOTH
    h.bgp.running = False  # ExaBGP died
    h.bgp.connected.clear()
    st = h.once()
    assert h.bgp.starts == 2
    assert h.default() == BOTH  # sessions gone, paths held
    assert not h.agent._all_settled()
    assert {s.peer: s.state for s in st.sessions} == {A: "idle", B: "idle"}
    assert st.exabgp["starts"] == 2


def test_bfd_down_removes_that_tors_next_hop_and_only_that(tmp_path: Path) -> None:
    h = started(tmp_path, bgp={"holdTime": 9, "gracefulRestart": 120, "communities": [],
                               "bfd": {"minRx": 300, "minTx": 300, "multiplier": 3}})
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    h.once(advance=3.0)
    assert h.default() == BOTH and h.bfdd.started
    h.bfdd.states[B] = "down"
    st = h.once()
    assert h.default() == ONLY_A
    by = {s.peer: s for s in st.sessions}
    assert by[B].bfd == "down" and by[B].state == "established"
    err = by[B].lastError
    assert err is not None and "BFD down" in err
    h.bfdd.states[B] = "up"
    h.once()
    assert h.default() == BOTH


def test_bfd_down_during_the_hold_is_not_held(tmp_path: Path) -> None:
    h = started(tmp_path, bgp={"holdTime": 9, "gracefulRestart": 120, "communities": [],
                               "bfd": {"minRx": 300, "minTx": 300, "multiplier": 3}})
    h.up(A, routes={"0.0.0.0/0": A}, eor=False)
    h.bfdd.states[B] = "down"
    h.once(advance=0.5)
    assert h.default() == ONLY_A  # tor-a held (unsettled), tor-b's path dropped at once


def test_session_down_drops_its_paths_after_settling(tmp_path: Path) -> None:
    h = started(tmp_path)
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    h.once(advance=3.0)
    h.down(B)
    st = h.once()
    assert h.default() == ONLY_A
    assert {s.peer: s.state for s in st.sessions}[B] == "down"
    assert st.installed["routes"] == 1
