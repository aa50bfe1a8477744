"""Kubernetes mode against the FAKE API server (fakekube): the real kubernetes client,
real HTTP, the real controller (reconciler, planner, publisher) and the speakers' Kubernetes
layer (NodeState source + status writer). The speakers' kernel and BGP parts are replaced by
a stand-in `apply` that reports the desired state as applied with every session up: what is
tested here is the API contract, not the data plane. No root needed."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.kube_inventory import KubeController
from fakekube.server import FakeApiServer
from flatroute.tombstone import Removed
from kube.leader import LeaderElector, LeaseConfig
from kube.objects import NodeStatus, SessionStatus
from kube.reflector import Backoff
from speaker import kube_source
from speaker.kube_source import Desired, KubeNodeStateSource, KubeStatusWriter
from tests.kube_util import api_for, eventually, fake_with_crds, node, seed

NS = "flatroute-system"
GROUP = "flatroute.dev"


def stand_in_apply(desired: Desired) -> NodeStatus:
    if desired.state is None:
        return NodeStatus(applied=False, last_error=desired.error)
    if isinstance(desired.state, Removed):  # the tombstone: withdrawn, no session left
        return NodeStatus(applied=True, spec_hash=desired.spec_hash,
                          generation=desired.generation)
    st = desired.state
    return NodeStatus(
        applied=True, spec_hash=desired.spec_hash, generation=desired.generation,
        sessions=tuple(SessionStatus(p.name, "Established", str(p.address), p.asn)
                       for p in st.peers),
        announced=tuple(str(p) for p in st.announce), encap_routes=len(st.encap_routes),
        sids=tuple(str(s.sid) for s in st.local_sids))


class Running:
    """Threads of one test, stopped at the end."""

    def __init__(self, fake: FakeApiServer) -> None:
        self.fake = fake
        self.stops: list[tuple[threading.Event, threading.Thread, Any]] = []

    def controller(self, identity: str = "ctl-a", *, lease: tuple[float, float, float] = (
            2.0, 1.2, 0.1), state_dir: str | None = None) -> KubeController:
        ctl = KubeController(api_for(self.fake), namespace=NS,
                             lease=LeaseConfig(NS, "flatroute-controller", identity, *lease),
                             state_dir=state_dir or tempfile.mkdtemp(prefix="frkube-"),
                             release_grace=3600, watch_timeout=5, backoff=Backoff(0.05, 0.5))
        stop = threading.Event()
        t = threading.Thread(target=ctl.run, args=(stop,),
                             kwargs={"interval": 2.0, "poll": 0.05, "settle": 0.05},
                             daemon=True)
        t.start()
        self.stops.append((stop, t, None))
        return ctl

    def speaker(self, name: str) -> tuple[KubeNodeStateSource, KubeStatusWriter]:
        api = api_for(self.fake)
        source = KubeNodeStateSource(api, name, watch_timeout=5,
                                     backoff=Backoff(0.05, 0.5)).start()
        writer = KubeStatusWriter(api, source)
        stop = threading.Event()
        t = threading.Thread(target=kube_source.run, args=(source, writer, stand_in_apply, stop),
                             kwargs={"interval": 0.5}, daemon=True)
        t.start()
        self.stops.append((stop, t, source))
        return source, writer

    def stop_all(self) -> None:
        for stop, _t, _src in self.stops:
            stop.set()
        for _stop, t, src in self.stops:
            if src is not None:
                src.stop()
            t.join(timeout=10)


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with fake_with_crds() as f:
        yield f
        assert f.server_errors == []


@pytest.fixture
def running(fake: FakeApiServer) -> Iterator[Running]:
    r = Running(fake)
    try:
        yield r
    finally:
        r.stop_all()


def nodestates(fake: FakeApiServer) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in fake.objects("nodestates", GROUP)}


def converged(fake: FakeApiServer, name: str) -> bool:
    o = nodestates(fake).get(name)
    if not o or "status" not in o:
        return False
    s = o["status"]
    return (s.get("observedGeneration") == o["metadata"]["generation"]
            and s.get("lastError") == "" and s["sessionsEstablished"] == s["sessionsTotal"] > 0)


def nodestate_writes(fake: FakeApiServer, status: bool | None = None) -> list[Any]:
    out = []
    for r in fake.requests:
        if r.method in ("POST", "PUT", "PATCH", "DELETE") and "/nodestates" in r.path:
            is_status = r.path.endswith("/status")
            if status is None or status == is_status:
                out.append(r)
    return out


def test_controller_and_two_speakers_converge(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "two-site")
    running.controller()
    running.speaker("tk-n1")
    running.speaker("os-n1")
    eventually(lambda: converged(fake, "tk-n1") and converged(fake, "os-n1"), what="converge")
    states = nodestates(fake)
    assert sorted(states) == ["os-n1", "os-n2", "tk-n1", "tk-n2"]
    tk = states["tk-n1"]
    # what kubectl shows: the printer columns' fields
    assert tk["status"]["sessionsUp"] == "4/4"
    assert tk["status"]["announcedCount"] == len(tk["status"]["announced"]) == 3
    assert tk["spec"]["asn"] > 0 and tk["spec"]["srv6"]["locator"]
    ready = {c["type"]: c["status"] for c in tk["status"]["conditions"]}
    assert ready == {"Ready": "True", "Applied": "True", "BGPEstablished": "True"}
    # nodes without a speaker have no status: visible as such
    assert "status" not in states["tk-n2"]
    # the FabricConfig's status is written after the NodeStates: wait for it, do not race it
    cfg = eventually(lambda: (fake.get_object("fabricconfigs", "default", group=GROUP) or {})
                     if "status" in (fake.get_object("fabricconfigs", "default", group=GROUP)
                                     or {}) else None, what="FabricConfig status")
    assert cfg["status"]["nodes"] == 4
    assert {c["type"]: c["status"] for c in cfg["status"]["conditions"]}["Ready"] == "True"


def test_node_add_and_remove_propagate(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "two-site")
    running.controller()
    eventually(lambda: len(nodestates(fake)) == 4, what="4 NodeStates")
    fake.create_object(node("tk-n3", "tk-r1", "tokyo"))
    running.speaker("tk-n3")
    eventually(lambda: converged(fake, "tk-n3"), what="new node converged")
    # the new node's blocks are routed from the other site: its spec changed too
    os_routes = {r["target"] for r in nodestates(fake)["os-n1"]["spec"]["srv6"]["routes"]}
    assert "tk-n3" in os_routes
    fake.store.delete(fake._type("nodes", ""), None, "tk-n3", None, False)
    # its NodeState becomes its tombstone (its speaker withdraws), not a missing object
    eventually(lambda: (nodestates(fake).get("tk-n3") or {}).get("spec", {}).get("removed"),
               what="NodeState tombstoned")
    spec = nodestates(fake)["tk-n3"]["spec"]
    assert set(spec) == {"node", "removed"} and spec["removed"]["reason"] == "not in the fabric"
    n3 = KubeNodeStateSource(api_for(fake), "tk-n3", watch_timeout=5).start()
    try:
        eventually(lambda: isinstance(n3.desired().state, Removed), what="speaker sees it")
    finally:
        n3.stop()
    eventually(lambda: (nodestates(fake)["tk-n3"].get("status") or {}).get(
        "observedGeneration") == nodestates(fake)["tk-n3"]["metadata"]["generation"],
        what="the speaker reported the tombstone applied")
    eventually(lambda: "tk-n3" not in {
        r["target"] for r in nodestates(fake)["os-n1"]["spec"]["srv6"]["routes"]},
        what="routes withdrawn")
    # a mislabelled node is left out and reported, the fabric keeps working
    fake.create_object(node("stray", "no-such-rack"))
    eventually(lambda: (fake.get_object("fabricconfigs", "default", group=GROUP) or {})
               .get("status", {}).get("unplacedNodes"), what="unplaced reported")
    assert "stray" not in nodestates(fake)


def test_restarted_controller_changes_nothing(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "leaf-spine")
    first = running.controller("ctl-a", lease=(1.0, 0.6, 0.1))
    eventually(lambda: len(nodestates(fake)) == 8 and first.cycles > 0, what="published")
    before = {n: (o["spec"], o["metadata"]["resourceVersion"])
              for n, o in nodestates(fake).items()}
    running.stop_all()  # releases the Lease
    fake.clear_requests()
    # a new replica, fresh local disk: everything it knows comes from the API
    second = running.controller("ctl-b", lease=(1.0, 0.6, 0.1))
    eventually(lambda: second.cycles >= 1, what="second controller planned")
    time.sleep(0.3)
    after = {n: (o["spec"], o["metadata"]["resourceVersion"])
             for n, o in nodestates(fake).items()}
    assert after == before
    assert nodestate_writes(fake) == []
    assert not [r for r in fake.requests if "/configmaps" in r.path and r.method != "GET"]


def test_two_electors_never_both_lead(fake: FakeApiServer) -> None:
    cfg = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.05}
    a = LeaderElector(api_for(fake), LeaseConfig(NS, "l", "a", **cfg))
    b = LeaderElector(api_for(fake), LeaseConfig(NS, "l", "b", **cfg))
    stop = threading.Event()
    both = []

    def watchdog() -> None:
        while not stop.is_set():
            if a.is_leader() and b.is_leader():
                both.append(time.monotonic())
            time.sleep(0.005)

    w = threading.Thread(target=watchdog, daemon=True)
    a.start(stop)
    eventually(a.is_leader, what="a leads")
    b.start(stop)
    w.start()
    time.sleep(0.5)
    assert a.is_leader() and not b.is_leader()
    a.crash()  # killed: no release, the Lease must expire
    crashed = time.monotonic()
    eventually(b.is_leader, timeout=5, what="b takes over")
    took = b.terms[-1][0] - crashed
    stop.set()
    w.join()
    assert took >= 0.6  # not before a's lease could have expired (a observed >= 1 s ago)
    assert both == []
    a_end = a.terms[-1][1]
    assert a_end <= b.terms[-1][0]
    lease = fake.get_object("leases", "l", NS, group="coordination.k8s.io")
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1


def test_only_the_leader_publishes(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "single-rack")
    a = running.controller("ctl-a")
    eventually(lambda: a.cycles > 0, what="a published")
    b = running.controller("ctl-b")
    time.sleep(1.0)
    assert b.cycles == 0 and not b.elector.is_leader()


def test_api_restart_with_expired_watch_recovers(fake: FakeApiServer,
                                                 running: Running) -> None:
    seed(fake, "two-site")
    ctl = running.controller()
    src, _ = running.speaker("tk-n1")
    eventually(lambda: converged(fake, "tk-n1"), what="converged")
    fake.restart(abrupt=True)  # every watch cut (they resume after a backoff) ...
    fake.create_object(node("tk-n3", "tk-r1", "tokyo"))
    fake.expire_history()  # ... from a resourceVersion compacted away: 410, relist
    eventually(lambda: "tk-n3" in nodestates(fake), what="add after restart")
    # a node in the other site changes tk-n1's own NodeState (its SRv6 routes): the speaker,
    # whose watch was cut and expired too, must see it
    fake.create_object(node("os-n9", "os-r1", "osaka"))
    eventually(lambda: "os-n9" in {r["target"] for r in
                                   nodestates(fake)["tk-n1"]["spec"]["srv6"]["routes"]},
               what="tk-n1 spec updated")
    eventually(lambda: converged(fake, "tk-n1"), what="speaker applied the new generation")
    for r in (ctl.inventory.nodes, src.reflector):
        assert r.stats.gone >= 1 and r.stats.lists >= 2, r.stats  # 410 -> relist


def test_api_restart_losing_data_relists(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "single-rack")
    ctl = running.controller()
    eventually(lambda: len(nodestates(fake)) == 3, what="published")
    fake.restart(drop_data=True)  # an etcd restore to empty: every object gone, 410 on resume
    seed(fake, "single-rack")
    fake.create_object({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": NS}})
    eventually(lambda: len(nodestates(fake)) == 3, timeout=15, what="republished")
    assert ctl.inventory.nodes.stats.gone >= 1


def test_status_written_only_on_change(fake: FakeApiServer, running: Running) -> None:
    seed(fake, "single-rack")
    running.controller()
    eventually(lambda: len(nodestates(fake)) == 3, what="published")
    api = api_for(fake)
    source = KubeNodeStateSource(api, "node1", watch_timeout=5).start()
    try:
        eventually(lambda: source.desired().state is not None, what="source synced")
        writer = KubeStatusWriter(api, source)
        report = stand_in_apply(source.desired())
        fake.clear_requests()
        for _ in range(5):
            writer.report(report)
            time.sleep(0.05)
        assert len(nodestate_writes(fake, status=True)) == 1
        # a restarted speaker with the same state finds it in place and writes nothing
        again = KubeStatusWriter(api, source)
        eventually(lambda: "status" in (source.object() or {}), what="status in cache")
        assert again.report(stand_in_apply(source.desired())) is False
        assert len(nodestate_writes(fake, status=True)) == 1
        # a session going down is a change: one more write, and the Ready condition flips
        down = NodeStatus(True, report.spec_hash, report.generation,
                          sessions=(SessionStatus(report.sessions[0].peer, "Active"),),
                          announced=report.announced)
        assert writer.report(down) is True
        assert writer.report(down) is False
        assert len(nodestate_writes(fake, status=True)) == 2
        st = nodestates(fake)["node1"]["status"]
        assert st["sessionsUp"] == "0/1"
        assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
        # the speaker never writes the spec
        assert all(r.path.endswith("/status") for r in nodestate_writes(fake))
    finally:
        source.stop()


def test_speaker_watches_only_its_own_nodestate(fake: FakeApiServer,
                                                running: Running) -> None:
    seed(fake, "single-rack")
    running.controller()
    fake.clear_requests()
    src, _ = running.speaker("node2")
    eventually(lambda: converged(fake, "node2"), what="node2 converged")
    # (the controller lists every NodeState, without a selector; the speaker never does)
    reads = [r for r in fake.requests if r.method == "GET" and "/nodestates" in r.path
             and "fieldSelector" in r.query]
    assert len(reads) >= 2  # a list and a watch
    assert all(r.query["fieldSelector"] == "metadata.name=node2" for r in reads)
    assert list(src.reflector.items()) == ["node2"]
