"""`flatroute controller status|run`, the run loop, and byte-identity of rendered states."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import main
from controller.inventory import StaticFileInventory
from controller.publisher import FilePublisher
from controller.reconciler import Reconciler
from controller.states import StateBuilder
from controller.status import gather, render
from flatroute.fabric import load_fabric
from flatroute.nodestate import from_plan, to_json
from flatroute.plan import plan
from tests.conftest import EXAMPLES, ROOT
from tests.unit.controller.fabrics import fabric_doc, to_fabric, write


def _run_once(tmp_path: Path, doc: dict[str, object] | None = None) -> Path:
    fabric = write(tmp_path / "fabric.yaml", doc or fabric_doc(2))
    state = tmp_path / "state"
    assert main(["controller", "run", "--once", "--fabric", str(fabric), "--state-dir",
                 str(state), "--log-level", "error"]) == 0
    return state


def test_status_shows_nodes_sites_segments_and_speaker_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = [{"name": "via-wan", "from": {"site": "s0"}, "to": {"site": "s1"},
            "waypoints": ["wan1"]}]
    state = _run_once(tmp_path, fabric_doc(2, policies=pol))
    gen = json.loads((state / "nodes" / "s0-n0.json").read_text())["generation"]
    (state / "status").mkdir()
    (state / "status" / "s0-n0.json").write_text(json.dumps(
        {"node": "s0-n0", "generation": gen, "applied_at": "2026-01-01T00:00:00+00:00"}))
    (state / "status" / "s0-n1.json").write_text(json.dumps(
        {"node": "s0-n1", "generation": "0123456789abcdef", "applied_at": "x"}))
    (state / "status" / "s1-n0.json").write_text("{broken")
    view = gather(state)
    speakers = {n["name"]: n["speaker"]["state"] for n in view["nodes"]}
    assert speakers == {"s0-n0": "applied", "s0-n1": "stale",
                        "s1-n0": "not reported (malformed report)", "s1-n1": "not reported"}
    s0 = next(s for s in view["sites"] if s["name"] == "s0")
    assert s0["policies"] == ["via-wan"]
    assert len(s0["segments"]) == 4  # 2 remote nodes x (IPv4 + IPv6 block)
    assert all(n["publishedAt"] for n in view["nodes"])
    capsys.readouterr()
    assert main(["controller", "status", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "not reported" in out
    assert f"applied {gen}" in out
    assert "via-wan" in out
    assert "End.DX4=" in out
    assert main(["controller", "status", "--state-dir", str(state), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["controller"]["lastError"] is None
    assert len(doc["nodes"]) == 4


def test_status_of_an_empty_or_missing_dir(tmp_path: Path) -> None:
    assert "no record" in render(gather(tmp_path))
    assert main(["controller", "status", "--state-dir", str(tmp_path / "nope")]) == 2


def test_run_once_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _run_once(tmp_path)
    bad = fabric_doc(2)
    bad["spec"]["sites"][0]["pools"]["ipv4"] = ["10.0.0.0/33"]
    write(tmp_path / "fabric.yaml", bad)
    args = ["controller", "run", "--once", "--fabric", str(tmp_path / "fabric.yaml"),
            "--state-dir", str(state), "--log-level", "error"]
    assert main(args) == 2
    assert "spec.sites[0].pools.ipv4[0]" in capsys.readouterr().err
    write(tmp_path / "fabric.yaml", fabric_doc(2, {0: ["a", "b", "c"]}, v4_pool_prefix=25))
    assert main(args) == 1
    assert "exhausted" in capsys.readouterr().err
    assert main(["controller", "run", "--once", "--fabric", str(tmp_path / "missing.yaml"),
                 "--state-dir", str(state)]) == 2


def test_run_loop_follows_file_edits_and_stops(tmp_path: Path) -> None:
    fabric = write(tmp_path / "fabric.yaml", fabric_doc(1, {0: ["a"]}))
    state = tmp_path / "state"
    ctl = Reconciler(StaticFileInventory(str(fabric)), FilePublisher(state), state,
                     log=_Quiet())
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,),
                              kwargs={"interval": 60, "poll": 0.02, "settle": 0.02})
    thread.start()
    try:
        _wait((state / "nodes" / "a.json").exists)
        write(fabric, fabric_doc(1, {0: ["a", "b"]}))
        _wait((state / "nodes" / "b.json").exists)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_sigterm_stops_the_controller_cleanly(tmp_path: Path) -> None:
    fabric = write(tmp_path / "fabric.yaml", fabric_doc(1))
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "controller", "run", "--fabric", str(fabric),
         "--state-dir", str(state), "--poll", "0.05"],
        stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        _wait((state / "controller.json").exists, timeout=20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"controller_stopped" in err


def test_second_controller_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    import fcntl

    state = _run_once(tmp_path)
    fd = os.open(state / ".controller.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert main(["controller", "run", "--once", "--fabric", str(tmp_path / "fabric.yaml"),
                     "--state-dir", str(state)]) == 1
    finally:
        os.close(fd)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_rendered_states_are_byte_identical_to_nodestate(example: str) -> None:
    p = plan(load_fabric(EXAMPLES / example))
    docs = StateBuilder().build(p)
    for node in p.nodes:
        assert docs[node.name].text == to_json(from_plan(p, node))
        assert docs[node.name].generation == json.loads(docs[node.name].text)["generation"]
        assert docs[node.name].state() == from_plan(p, node)
        assert (docs[node.name].site, docs[node.name].rack) == (node.site, node.rack)


@settings(max_examples=25, deadline=None)
@given(sites=st.integers(1, 4), scope=st.sampled_from(["node", "site"]),
       mode=st.sampled_from(["encap", "encap.red"]), per_site=st.integers(1, 3))
def test_rendered_states_match_nodestate_on_generated_fabrics(
        sites: int, scope: str, mode: str, per_site: int) -> None:
    nodes = {i: [f"s{i}-n{j}" for j in range(per_site)] for i in range(sites)}
    pol = [{"name": "p", "to": {"site": "s0"}, "waypoints": ["wan1"]}]
    p = plan(to_fabric(fabric_doc(sites, nodes, scope=scope, gateways=True, encap_mode=mode,
                                  policies=pol)))
    builder = StateBuilder()
    docs = builder.build(p)
    for node in p.nodes:
        assert docs[node.name].text == to_json(from_plan(p, node))
    assert builder.build(p) == docs
    assert builder.rendered == 0


class _Quiet:
    def __getattr__(self, _name: str) -> object:
        return lambda *_a, **_k: None


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")
