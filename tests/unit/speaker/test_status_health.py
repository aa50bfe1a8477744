"""`flatroute speaker status` exits with the speaker's health: a BGP outage is never 0."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from flatroute import speaker_status as status
from flatroute.speaker_status import SessionStatus, SpeakerStatus

NOW = 1_700_000_000.0


def _session(peer: str, state: str = "established", **kw: Any) -> SessionStatus:
    return SessionStatus(peer, f"tor-{peer[-3]}", state, 3.0 if state == "established" else None,
                         kw.pop("lastError", None), 1, 1, **kw)


def _status(**over: Any) -> SpeakerStatus:
    st = SpeakerStatus(
        node="n1", pid=1, updated_at=status.now_iso(NOW), generation="g1", applied_at="t",
        seen_generation="g1", drained=False, last_reconcile_at="t", last_reconcile_ms=1.0,
        last_reconcile_ok=True, last_error=None,
        sessions=(_session("10.1.1.1"), _session("10.1.2.1")), announced=("10.244.0.0/26",),
        exabgp={"running": True, "starts": 1, "lastExit": None})
    return dataclasses.replace(st, **over)


MD5 = "MD5 mismatch or peer unreachable"


@pytest.mark.parametrize(("over", "code", "words"), [
    ({}, status.HEALTHY, "healthy"),
    ({"sessions": (_session("10.1.1.1"), _session("10.1.2.1", "down", lastError=MD5))},
     status.DEGRADED, "session tor-2 (10.1.2.1) down: MD5"),
    ({"sessions": (_session("10.1.1.1"), _session("10.1.2.1", bfd="down"))},
     status.DEGRADED, "10.1.2.1"),
    ({"sessions": (_session("10.1.1.1", "down", lastError=MD5),
                   _session("10.1.2.1", "connect", lastError=MD5))},
     status.DOWN, "no BGP session is up"),
    ({"sessions": ()}, status.DOWN, "no BGP session configured"),
    ({"exabgp": {"running": False, "starts": 3, "lastExit": "ExaBGP exited with status 1: "
                 "could not find the configuration file"}},
     status.DOWN, "could not find the configuration file"),
    ({"generation": None, "seen_generation": None}, status.DOWN, "no node state applied"),
    ({"seen_generation": "g2"}, status.DEGRADED, "generation g2 seen, g1 applied"),
    ({"last_error": "route 0.0.0.0/0: No such device"}, status.DEGRADED, "No such device"),
    ({"drained": True}, status.DEGRADED, "drained"),
    ({"updated_at": status.now_iso(NOW - 60)}, status.NOT_RUNNING, "not refreshed"),
    ({"removed": {"state": "leaving"}, "sessions": ()}, status.DEGRADED, "leaving"),
    ({"removed": {"state": "left"}, "sessions": (), "exabgp": {"running": False}},
     status.HEALTHY, "removed from the fabric"),
])
def test_health(over: dict[str, Any], code: int, words: str) -> None:
    h = status.health(_status(**over), NOW)
    assert h.code == code and words in h.words, h


def _cli(tmp_path: Path, st: SpeakerStatus, *extra: str) -> int:
    path = tmp_path / "status" / "n1.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(st.to_json())
    return main(["speaker", "status", "--node", "n1", "--state-dir", str(tmp_path), *extra])


def test_the_exit_codes_and_the_probes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    fresh = status.now_iso(time.time())
    down = _status(updated_at=fresh, sessions=(
        _session("10.1.1.1", "down", lastError=MD5), _session("10.1.2.1", "down", lastError=MD5)))
    assert _cli(tmp_path, down) == status.DOWN  # the case: it used to exit 0
    assert "health: down: no BGP session is up" in capsys.readouterr().out
    assert _cli(tmp_path, down, "--json") == status.DOWN
    assert json.loads(capsys.readouterr().out)["node"] == "n1"
    assert _cli(tmp_path, down, "--probe", "live") == 0  # a restart would not fix the ToRs
    assert _cli(tmp_path, down, "--probe", "ready") == status.DOWN
    assert capsys.readouterr().out.startswith("down: no BGP session is up")
    one = dataclasses.replace(down, sessions=(_session("10.1.1.1"), down.sessions[1]))
    assert _cli(tmp_path, one) == status.DEGRADED
    assert _cli(tmp_path, one, "--probe", "ready") == 0
    stale = _status()
    assert _cli(tmp_path, stale, "--probe", "live") == status.NOT_RUNNING
    assert _cli(tmp_path, dataclasses.replace(stale, updated_at=fresh)) == status.HEALTHY
    capsys.readouterr()
    assert main(["speaker", "status", "--node", "n2", "--state-dir", str(tmp_path)]) \
        == status.ERROR


def test_the_daemonset_probes_use_the_status_exit_codes() -> None:
    import yaml

    from tests.conftest import ROOT

    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "speaker.yaml").read_text()) if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    c = next(x for x in ds["spec"]["template"]["spec"]["containers"] if x["name"] == "speaker")
    state_dir = next(a for a in c["args"] if a.startswith("--state-dir="))
    for probe, mode in (("startupProbe", "live"), ("livenessProbe", "live"),
                        ("readinessProbe", "ready")):
        cmd = c[probe]["exec"]["command"]
        assert cmd[:3] == ["flatroute", "speaker", "status"] and f"--probe={mode}" in cmd
        assert state_dir in cmd  # the status the speaker writes, not the default path
    assert any(e["name"] == "NODE_NAME" for e in c["env"])  # --node comes from it
