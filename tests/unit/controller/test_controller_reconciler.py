"""The static-mode controller: publish, restart, churn, bad edits, grace, exhaustion."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from controller.inventory import StaticFileInventory
from controller.publisher import FilePublisher
from controller.reconciler import Reconciler, iso
from flatroute import tombstone
from flatroute.errors import InvalidInput
from flatroute.nodestate import from_json, from_plan, to_json
from flatroute.plan import load_ledger
from tests.unit.controller.fabrics import fabric_doc, write

T0 = 1_800_000_000.0


class Log:
    """Records events instead of printing them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def emit(event: str, **kw: Any) -> None:
            self.events.append((level, event, kw))
        return emit

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.events if e == event]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, tmp: Path, doc: dict[str, Any], grace: float = 3600) -> None:
        self.fabric = write(tmp / "fabric.yaml", doc)
        self.dir = tmp / "state"
        self.clock = Clock()
        self.grace = grace
        self.log = Log()
        self.ctl = self.new()

    def new(self) -> Reconciler:
        """A fresh controller process on the same state directory."""
        return Reconciler(StaticFileInventory(str(self.fabric)), FilePublisher(self.dir),
                          self.dir, release_grace=self.grace, clock=self.clock, log=self.log)

    def edit(self, doc: dict[str, Any]) -> None:
        write(self.fabric, doc)
        st = self.fabric.stat()  # make sure the signature moves even within one mtime tick
        os.utime(self.fabric, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    def docs(self) -> dict[str, str]:
        return {p.stem: p.read_text() for p in sorted((self.dir / "nodes").glob("*.json"))}

    def stamps(self) -> dict[str, tuple[int, int]]:
        files = [*(self.dir / "nodes").glob("*.json"), self.dir / "ledger.json"]
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def test_publishes_every_node_state_and_the_ledger(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(2))
    result = env.ctl.reconcile()
    assert result.ok
    assert result.exit_status == 0
    assert sorted(result.publish.written) == ["s0-n0", "s0-n1", "s1-n0", "s1-n1"]
    docs = env.docs()
    assert env.ctl.plan is not None
    for node in env.ctl.plan.nodes:
        assert docs[node.name] == to_json(from_plan(env.ctl.plan, node))
        assert from_json(docs[node.name]).node == node.name
    assert sorted(load_ledger(env.dir / "ledger.json").nodes) == sorted(docs)
    record = json.loads((env.dir / "controller.json").read_text())
    assert record["lastError"] is None
    assert record["fabric"]["source"] == str(env.fabric)
    assert set(record["nodes"]) == set(docs)
    gen = json.loads(docs["s0-n0"])["generation"]
    assert record["nodes"]["s0-n0"]["generation"] == gen


def test_second_cycle_and_restart_write_nothing(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(2))
    env.ctl.reconcile()
    before = env.stamps()
    again = env.ctl.reconcile()
    assert again.publish.written == ()
    assert again.rendered == 0  # nothing even re-rendered
    env.clock.now += 60
    restarted = env.new().reconcile()
    assert restarted.ok
    assert restarted.publish.written == ()
    assert restarted.publish.removed == ()
    assert restarted.publish.unchanged == 4
    assert env.stamps() == before  # same inode, same mtime: not one file rewritten


def test_adding_a_node_with_node_scope_touches_only_what_really_changes(
        tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(3))
    env.ctl.reconcile()
    before = env.docs()
    env.edit(fabric_doc(3, {0: ["s0-n0", "s0-n1", "s0-n2"], 1: ["s1-n0", "s1-n1"],
                            2: ["s2-n0", "s2-n1"]}))
    assert env.ctl.inventory.changed()
    result = env.ctl.reconcile()
    # The new node, and the nodes of other sites: they get encap routes to its block.
    assert sorted(result.publish.written) == ["s0-n2", "s1-n0", "s1-n1", "s2-n0", "s2-n1"]
    after = env.docs()
    assert after["s0-n0"] == before["s0-n0"]
    assert after["s0-n1"] == before["s0-n1"]
    new_block = json.loads(after["s0-n2"])["spec"]["podBlocks"]["ipv4"][0]
    routes = json.loads(after["s1-n0"])["spec"]["srv6"]["routes"]
    assert new_block in {r["prefix"] for r in routes}


def test_adding_a_worker_with_site_scope_rewrites_only_that_node(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(3, scope="site", gateways=True))
    env.ctl.reconcile()
    env.edit(fabric_doc(3, {0: ["s0-n0", "s0-n1", "s0-n2"], 1: ["s1-n0", "s1-n1"],
                            2: ["s2-n0", "s2-n1"]}, scope="site", gateways=True))
    result = env.ctl.reconcile()
    assert result.publish.written == ("s0-n2",)
    assert result.rendered == 1


def test_removed_node_is_withdrawn_at_once_and_released_after_the_grace(
        tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(2), grace=600)
    env.ctl.reconcile()
    gone = json.loads(env.docs()["s0-n1"])["spec"]
    env.clock.now += 10
    env.edit(fabric_doc(2, {0: ["s0-n0"], 1: ["s1-n0", "s1-n1"]}))
    result = env.ctl.reconcile()
    # Its document becomes a tombstone (its speaker withdraws at once), not a missing file
    # (which a speaker cannot tell from a wiped state directory).
    assert "s0-n1" in result.publish.written and result.publish.removed == ()
    removed = tombstone.from_json(env.docs()["s0-n1"])
    assert removed == tombstone.Removed("s0-n1", iso(env.clock.now))
    # Its routes are withdrawn everywhere: no other node still points at its SIDs.
    sids = {s["sid"] for s in gone["srv6"]["localSids"]}
    for name, text in env.docs().items():
        if name != "s0-n1":
            for route in json.loads(text)["spec"]["srv6"]["routes"]:
                assert not sids & set(route["segments"])
    ledger = load_ledger(env.dir / "ledger.json")
    assert ledger.nodes["s0-n1"].retired_at is not None
    record = json.loads((env.dir / "controller.json").read_text())
    assert "s0-n1" in record["retired"] and "s0-n1" not in record["nodes"]
    assert record["retired"]["s0-n1"]["tombstone"] == tombstone.generation(removed)
    env.ctl.reconcile()  # quiet: the tombstone is not written again
    assert env.ctl.reconcile().publish.written == ()

    # Within the grace period a newcomer does not get the retired node's block.
    env.clock.now += 300
    env.edit(fabric_doc(2, {0: ["s0-n0", "s0-x"], 1: ["s1-n0", "s1-n1"]}))
    env.ctl.reconcile()
    x_block = json.loads(env.docs()["s0-x"])["spec"]["podBlocks"]["ipv4"]
    assert x_block != gone["podBlocks"]["ipv4"]

    # After the grace period (time injected), the allocation is freed for the next node.
    env.clock.now += 600
    env.edit(fabric_doc(2, {0: ["s0-n0", "s0-x", "s0-y"], 1: ["s1-n0", "s1-n1"]}))
    released = env.ctl.reconcile()
    assert "s0-n1" not in load_ledger(env.dir / "ledger.json").nodes
    assert "s0-n1" in released.publish.removed and "s0-n1" not in env.docs()  # no tombstone
    assert env.log.named("allocations_released")[0]["node"] == "s0-n1"
    y_block = json.loads(env.docs()["s0-y"])["spec"]["podBlocks"]["ipv4"]
    assert y_block == gone["podBlocks"]["ipv4"]


def test_a_node_that_comes_back_within_the_grace_keeps_its_blocks(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(2))
    env.ctl.reconcile()
    before = env.docs()["s1-n1"]
    env.edit(fabric_doc(2, {0: ["s0-n0", "s0-n1"], 1: ["s1-n0"]}))
    env.ctl.reconcile()
    env.edit(fabric_doc(2))
    env.ctl.reconcile()
    assert env.docs()["s1-n1"] == before
    assert load_ledger(env.dir / "ledger.json").nodes["s1-n1"].retired_at is None


def test_bad_edit_is_rejected_whole_and_the_last_good_state_stays(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(2))
    env.ctl.reconcile()
    before, stamps = env.docs(), env.stamps()
    bad = fabric_doc(2, {0: ["s0-n0", "s0-n1", "s0-new"], 1: ["s1-n0"]})
    bad["spec"]["nodes"][2]["rack"] = "nowhere"
    env.edit(bad)
    result = env.ctl.reconcile()
    assert not result.ok
    assert result.exit_status == 2
    assert result.error is not None
    assert any("spec.nodes[2].rack" in str(e) for e in result.error.errors)
    assert env.docs() == before
    assert env.stamps() == stamps  # not even the removed node's doc went away
    record = json.loads((env.dir / "controller.json").read_text())
    assert any("spec.nodes[2].rack" in e for e in record["lastError"]["errors"])
    env.ctl.reconcile()
    assert len(env.log.named("fabric_rejected")) == 1  # logged once, not every cycle
    # A fresh controller facing the same bad file changes nothing either.
    assert not env.new().reconcile().ok
    assert env.stamps() == stamps
    env.edit(fabric_doc(2, {0: ["s0-n0", "s0-n1", "s0-new"], 1: ["s1-n0", "s1-n1"]}))
    fixed = env.ctl.reconcile()
    assert fixed.ok
    assert "s0-new" in env.docs()
    assert json.loads((env.dir / "controller.json").read_text())["lastError"] is None
    assert env.log.named("fabric_accepted")


def test_unparseable_yaml_is_rejected_with_its_position(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(1))
    env.ctl.reconcile()
    env.fabric.write_text("spec: [unclosed\n")
    result = env.ctl.reconcile()
    assert result.error is not None
    assert "not valid YAML" in str(result.error)


def test_waypoint_without_a_sid_is_rejected_not_a_crash(tmp_path: Path) -> None:
    pol = [{"name": "p", "to": {"site": "s1"}, "waypoints": ["wan1"]}]
    env = Env(tmp_path, fabric_doc(2))
    env.ctl.reconcile()
    before = env.docs()
    env.edit(fabric_doc(2, policies=pol, wan_locator=False))
    result = env.ctl.reconcile()
    assert result.exit_status == 2
    assert "waypoints[0]" in str(result.error)
    assert env.docs() == before


def test_exhaustion_is_reported_and_the_other_nodes_still_published(tmp_path: Path) -> None:
    # A /25 pool holds two /26 blocks: the third node of site 0 gets none.
    doc = fabric_doc(2, {0: ["s0-a", "s0-b", "s0-c"], 1: ["s1-a"]}, v4_pool_prefix=25)
    env = Env(tmp_path, doc)
    result = env.ctl.reconcile()
    assert result.ok
    assert result.exit_status == 1
    assert result.held_back == ("s0-c",)
    assert any("exhausted" in p.message for p in result.problems)
    assert sorted(env.docs()) == ["s0-a", "s0-b", "s1-a"]
    record = json.loads((env.dir / "controller.json").read_text())
    assert record["heldBack"] == ["s0-c"]
    assert "exhausted" in record["problems"][0]["message"]
    assert env.log.named("plan_problem")


def test_unreadable_ledger_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ledger.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="ledger"):
        Env(tmp_path, fabric_doc(1))


def test_foreign_and_stale_files_in_the_nodes_dir(tmp_path: Path) -> None:
    env = Env(tmp_path, fabric_doc(1))
    env.ctl.reconcile()
    nodes = env.dir / "nodes"
    (nodes / "ghost.json").write_text("{}")
    (nodes / ".tmp-crash.json").write_text("partial")
    (nodes / "s0-n0.json").write_text("tampered")
    result = env.ctl.reconcile()
    assert result.publish.removed == ("ghost",)
    assert result.publish.written == ("s0-n0",)  # level-triggered: the disk is the truth
    assert not (nodes / ".tmp-crash.json").exists()


def test_exhaustion_stays_reported_and_heals_when_room_appears(tmp_path: Path) -> None:
    doc = fabric_doc(2, {0: ["s0-a", "s0-b", "s0-c"], 1: ["s1-a"]}, v4_pool_prefix=25)
    env = Env(tmp_path, doc, grace=0)
    env.ctl.reconcile()
    again = env.ctl.reconcile()  # re-planned from the previous plan: still a problem
    assert again.exit_status == 1
    assert again.held_back == ("s0-c",)
    # s0-a leaves; with no grace its block is free again and s0-c gets it.
    env.clock.now += 1
    env.edit(fabric_doc(2, {0: ["s0-b", "s0-c"], 1: ["s1-a"]}, v4_pool_prefix=25))
    env.ctl.reconcile()
    env.clock.now += 1
    healed = env.ctl.reconcile()
    assert healed.exit_status == 0
    assert "s0-c" in env.docs()


def test_ledger_is_serialised_only_when_it_changed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import controller.reconciler as rec

    saved: list[int] = []
    real = rec.save_ledger

    def counting(path: Any, ledger: Any) -> bool:
        saved.append(len(ledger.nodes))
        return real(path, ledger)

    monkeypatch.setattr(rec, "save_ledger", counting)
    env = Env(tmp_path, fabric_doc(2))
    assert env.ctl.reconcile().ok
    assert env.ctl.reconcile().ok  # steady: nothing allocated, nothing to save
    assert saved == [4]
    env.edit(fabric_doc(2, {0: ["s0-n0", "s0-n1", "s0-n2"], 1: ["s1-n0", "s1-n1"]}))
    assert env.ctl.reconcile().ok
    assert saved == [4, 5]
    assert load_ledger(env.dir / "ledger.json").nodes.keys() == {
        "s0-n0", "s0-n1", "s0-n2", "s1-n0", "s1-n1"}
    # A new process writes it once (its format may have moved on), then stays quiet.
    env.ctl = env.new()
    assert env.ctl.reconcile().ok and env.ctl.reconcile().ok
    assert saved == [4, 5, 5]
