"""The reflector (list+watch, bookmarks, 410, backoff), the elector and the ledger fence,
against the fake API server."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.kube_publisher import LedgerStore
from fakekube.server import FakeApiServer
from flatroute.errors import AdapterError
from kube.api import LEASES, NODES, Conflict, KubeApi, NotFound
from kube.leader import LeaderElector, LeaseConfig
from kube.reflector import Backoff, Reflector
from tests.kube_util import api_for, eventually, fake_with_crds, node


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with fake_with_crds() as f:
        yield f


@pytest.fixture
def api(fake: FakeApiServer) -> KubeApi:
    return api_for(fake)


def test_api_errors_are_typed(api: KubeApi, fake: FakeApiServer) -> None:
    assert api.get(NODES, "nope") is None
    fake.create_object(node("n1", "r1"))
    with pytest.raises(Conflict):
        api.create(NODES, node("n1", "r1"))
    with pytest.raises(NotFound):
        api.patch(NODES, "nope", {"metadata": {"labels": {"a": "b"}}})
    obj = api.patch(NODES, "n1", [{"op": "add", "path": "/metadata/labels/x", "value": "y"}],
                    kind="json")
    assert obj["metadata"]["labels"]["x"] == "y"
    stale = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}
    with pytest.raises(Conflict):
        api.patch(NODES, "n1", {"metadata": stale["metadata"]})
    items, rv = api.list(NODES)
    assert [i["metadata"]["name"] for i in items] == ["n1"] and int(rv) > 0
    fake.expire_history()
    events = list(api.watch(NODES, "1", timeout_seconds=1))
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_reflector_follows_bookmarks_and_relists_on_410(api: KubeApi,
                                                        fake: FakeApiServer) -> None:
    fake.create_object(node("n1", "r1"))
    r = Reflector(api, NODES, watch_timeout=5, backoff=Backoff(0.2, 0.5)).start()
    try:
        assert r.synced.wait(5)
        assert list(r.items()) == ["n1"]
        eventually(lambda: r.stats.bookmarks > 0, what="a bookmark")
        fake.create_object(node("n2", "r1"))
        eventually(lambda: "n2" in r.items(), what="watch event")
        lists = r.stats.lists
        fake.restart(abrupt=True)  # watches cut (resumed after >= 0.1 s backoff) ...
        # ... and, before they resume, a change is compacted away: their version is gone
        fake.create_object(node("n3", "r1"))
        fake.expire_history()
        eventually(lambda: "n3" in r.items(), what="relisted")
        assert r.stats.gone >= 1 and r.stats.lists > lists
    finally:
        r.stop()


def test_reflector_backs_off_on_errors(api: KubeApi, fake: FakeApiServer) -> None:
    fake.fail_next(3, 500, path_contains="/nodes")
    r = Reflector(api, NODES, watch_timeout=5, backoff=Backoff(0.02, 0.1)).start()
    try:
        assert r.synced.wait(5)
        assert r.stats.errors == 3
    finally:
        r.stop()
    b = Backoff(1.0, 8.0, rng=lambda: 1.0)
    assert [b.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_lease_acquire_renew_and_release(api: KubeApi, fake: FakeApiServer) -> None:
    now = [0.0]
    cfg = LeaseConfig("flatroute-system", "l", "a", 10, 6, 1)
    a = LeaderElector(api, cfg, monotonic=lambda: now[0])
    b = LeaderElector(api, LeaseConfig("flatroute-system", "l", "b", 10, 6, 1),
                      monotonic=lambda: now[0])
    assert a.step() and not b.step()
    now[0] = 5
    assert a.step() and not b.step()
    now[0] = 12  # a renewed at 5 and b saw that renewal at 5: not expired for b until 15
    assert not b.step()
    assert not a.is_leader()  # a has not renewed for 7 s > renew deadline 6: stepped down
    now[0] = 16
    assert b.step()
    lease = fake.get_object("leases", "l", "flatroute-system", group="coordination.k8s.io")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    b.release()
    assert a.step()  # released: no need to wait for expiry
    assert api.get(LEASES, "l", "flatroute-system")["spec"]["holderIdentity"] == "a"  # type: ignore[index]
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaseConfig("ns", "l", "x", 5, 6, 1)


def test_ledger_round_trip_and_fence(api: KubeApi) -> None:
    d = Path(tempfile.mkdtemp())
    path = d / "ledger.json"
    path.write_text('{"version": 1, "nodes": {}, "racks": {}}\n')
    mine = LedgerStore(api, "flatroute-system")
    assert mine.sync(path) and not mine.sync(path)  # written once, then unchanged
    other = LedgerStore(api, "flatroute-system")
    restored = d / "restored.json"
    assert other.restore(restored) and restored.read_text() == path.read_text()
    restored.write_text('{"version": 1, "nodes": {"x": {}}, "racks": {}}\n')
    assert other.sync(restored)  # the new leader writes
    path.write_text('{"version": 1, "nodes": {"y": {}}, "racks": {}}\n')
    with pytest.raises(AdapterError, match="another controller"):
        mine.sync(path)  # the deposed one is fenced off
    time.sleep(0)
