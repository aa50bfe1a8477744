"""The Kubernetes bridge hands the NodeState to the agent and reports the agent's own status."""

from __future__ import annotations

import json
from pathlib import Path

from flatroute import nodestate, speaker_status, tombstone
from flatroute.fabric import load_fabric
from flatroute.plan import plan
from kube.objects import node_state_object, parse_node_state
from speaker.kube_bridge import Bridge
from speaker.kube_source import Desired
from tests.conftest import EXAMPLES


def _state() -> nodestate.NodeState:
    f = load_fabric(EXAMPLES / "two-site.yaml")
    p = plan(f)
    return nodestate.from_plan(p, p.node("tk-n1"))


def _speaker_report(path: Path, generation: str | None, state: str = "established") -> None:
    doc = {
        "apiVersion": "flatroute.dev/v1", "kind": "SpeakerStatus", "node": "tk-n1", "pid": 1,
        "updatedAt": speaker_status.now_iso(), "generation": generation,
        "appliedAt": speaker_status.now_iso(), "seenGeneration": generation, "drained": False,
        "lastReconcile": {"at": speaker_status.now_iso(), "durationMs": 1.0, "ok": True},
        "lastError": None,
        "sessions": [{"peer": "10.1.1.1", "name": "tk-r1-a", "state": state,
                      "uptimeSeconds": 3.0, "lastError": None, "prefixesSent": 1,
                      "prefixesReceived": 1, "bfd": None, "flaps": 0}],
        "announced": ["10.244.0.0/26"], "installed": {"routes": 2, "encap": 4, "sids": 3},
        "skipped": [], "missingKernelFeatures": ["vrf: no VRF devices"],
        "exabgp": {"running": True, "starts": 1, "lastExit": None},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_bridge_writes_state_and_reports_applied(tmp_path: Path) -> None:
    st = _state()
    state_file, status_file = tmp_path / "run" / "nodestate.json", tmp_path / "status.json"
    bridge = Bridge("tk-n1", str(state_file), str(status_file))
    desired = Desired(st, generation=3, spec_hash="h3")
    pending = bridge.apply(desired)
    assert not pending.applied
    assert pending.last_error is not None
    assert "not reported" in pending.last_error
    assert nodestate.from_json(state_file.read_text()) == st
    gen = json.loads(state_file.read_text())["generation"]
    _speaker_report(status_file, gen)
    done = bridge.apply(desired)
    assert done.applied
    assert done.generation == 3
    assert done.sessions[0].established
    assert done.sessions[0].peer == "tk-r1-a"
    assert done.encap_routes == 4
    assert done.announced == ("10.244.0.0/26",)
    assert done.missing_features == ("vrf",)
    _speaker_report(status_file, "older-generation", state="active")
    stale = bridge.apply(desired)
    assert not stale.applied
    assert not stale.sessions[0].established


def test_missing_spec_keeps_the_last_good_file(tmp_path: Path) -> None:
    st = _state()
    state_file = tmp_path / "nodestate.json"
    bridge = Bridge("tk-n1", str(state_file), str(tmp_path / "status.json"))
    bridge.apply(Desired(st, generation=1))
    before = state_file.read_text()
    report = bridge.apply(Desired(None, error="spec.peers[0].asn: must be an integer"))
    assert state_file.read_text() == before
    assert report.last_error == "spec.peers[0].asn: must be an integer"


def test_a_tombstone_resource_reaches_the_agent_as_a_tombstone_file(tmp_path: Path) -> None:
    """Kubernetes mode: the controller keeps the NodeState with `spec.removed`; the bridge
    hands it to the agent like any state, and reports it applied once the agent has left."""
    state_file, status_file = tmp_path / "nodestate.json", tmp_path / "status.json"
    bridge = Bridge("tk-n1", str(state_file), str(status_file))
    bridge.apply(Desired(_state(), generation=1))
    gone = tombstone.Removed("tk-n1", "2026-01-01T00:00:30+00:00")
    obj = node_state_object("tk-n1", tombstone.spec_doc(gone), tombstone.generation(gone),
                            site="tokyo", rack="r1", fabric="f")
    removed = parse_node_state(obj)
    assert removed == gone
    report = bridge.apply(Desired(removed, generation=2))
    assert tombstone.from_json(state_file.read_text()) == gone
    assert not report.applied
    _speaker_report(status_file, tombstone.generation(gone))
    assert bridge.apply(Desired(removed, generation=2)).applied
