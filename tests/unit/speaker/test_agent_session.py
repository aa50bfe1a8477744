"""The agent's ExaBGP decisions through the session adapter, with a fake ExaBGP (no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatroute.errors import AdapterError
from speaker import announce, exabgp_config
from speaker import session as session_mod
from speaker.exabgp_config import Paths
from speaker.session import ExaBGPSession
from tests.unit.speaker.fakes import FakeExaBGP
from tests.unit.speaker.harness import A, B, Harness, spec

C = "10.1.3.1"
WITH_C = spec(
    uplinks=[*spec()["uplinks"], {"tor": "tor-c", "ipv4": "10.1.3.11/24"}],
    peers=[*spec()["peers"], {"name": "tor-c", "asn": 65003, "address": C,
                              "localAddress": "10.1.3.11", "families": ["ipv4"]}])


def test_first_start_announces_from_the_config_and_sends_nothing_more(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    st = h.once()
    assert h.bgp.starts == 1 and h.bgp.config is not None
    assert "route 10.244.0.0/26" in h.bgp.config  # replayed as static routes
    assert h.bgp.sent == []  # already sent from the config
    assert st.announced == ("10.244.0.0/26",)
    h.once()
    assert h.bgp.events() == (1, 0, 0, 0)  # a second pass changes nothing


def test_an_announcement_change_goes_through_the_api(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    h.write(spec(podBlocks={"ipv4": ["10.244.0.64/26"], "ipv6": []}))
    st = h.once()
    assert h.bgp.starts == 1 and h.bgp.reloads == []
    withdrawn = [c for c in h.bgp.sent if " withdraw route 10.244.0.0/26" in c]
    assert sorted(c.split()[1] for c in withdrawn) == [A, B]
    assert h.bgp.sent[:2] == withdrawn  # withdrawals first
    assert len([c for c in h.bgp.sent if "announce route 10.244.0.64/26" in c]) == 2
    assert st.announced == ("10.244.0.64/26",)


def test_a_peer_change_reloads_while_the_api_is_connected(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    h.write({**WITH_C, "podBlocks": {"ipv4": ["10.244.0.64/26"], "ipv6": []}})
    h.once()
    assert (h.bgp.starts, len(h.bgp.reloads), h.bgp.kills) == (1, 1, 0)
    # the surviving sessions were brought up to date through the API before the reload
    assert all(C not in c for c in h.bgp.sent) and len(h.bgp.sent) == 4
    assert f"neighbor {C}" in h.bgp.reloads[0]
    assert "route 10.244.0.64/26" in h.bgp.reloads[0]
    assert h.agent.session.running_peers == {A, B, C}


def test_a_peer_change_restarts_without_the_api(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "CONNECT_WAIT", 0.0)
    h = Harness(tmp_path, connect=False)
    h.write(spec())
    h.once()
    assert h.bgp.starts == 1 and not h.bgp.connected.is_set()
    h.write(WITH_C)
    st = h.once()
    assert (h.bgp.starts, len(h.bgp.reloads), h.bgp.kills) == (2, 0, 1)  # SIGKILL, restart
    assert h.bgp.config is not None and f"neighbor {C}" in h.bgp.config
    assert h.bgp.sent == []
    assert st.exabgp["starts"] == 2 and st.exabgp["running"] is True


def test_drain_withdraws_everything(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.once()
    (tmp_path / "run" / "drain").write_text("")
    st = h.once()
    assert st.drained and st.announced == ()
    assert sorted(c.split()[1] for c in h.bgp.sent) == [A, B]
    assert all(" withdraw route 10.244.0.0/26" in c for c in h.bgp.sent)


def test_refused_commands_are_reported_and_not_remembered(tmp_path: Path) -> None:
    from flatroute import nodestate

    st = nodestate.from_spec(spec())
    proc = FakeExaBGP(Paths(str(tmp_path), "p"), lambda _: None)
    restarts: list[int] = []
    session = ExaBGPSession(proc, proc.paths, log=_Log(), on_restart=lambda: restarts.append(1))
    session.set(st, frozenset())  # started with nothing
    assert restarts == [1] and session.connected() and session.alive()
    want = announce.desired(st)
    proc.refuse = {exabgp_config.announce_command(a) for a in want if a.peer == B}
    with pytest.raises(AdapterError, match=f"ExaBGP refused: announce 10.244.0.0/26 to {B}"):
        session.set(st, want)
    assert {a.peer for a in session.applied} == {A}
    proc.refuse = set()
    session.set(st, want)  # the next pass retries only what is missing
    assert session.applied == want and len(proc.sent) == 3
    assert session.starts == 1 and session.last_exit is None
    session.close()
    assert not session.alive()


class _Log:
    def info(self, *_: object, **__: object) -> None:
        pass
