"""Watches through kubernetes.watch.Watch: events, bookmarks, timeouts, 410 Gone, restarts."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.watch.watch import iter_resp_lines

from fakekube import FakeApiServer, client_configuration
from tests.unit.fakekube.conftest import GROUP, nodestate


def collect(stream: Any, count: int, w: watch.Watch) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for event in stream:
        events.append((event["type"], event["raw_object"]))
        if len(events) == count:
            w.stop()
    return events


def test_watch_from_resource_version_sees_changes_in_order(core: client.CoreV1Api) -> None:
    start = core.list_node().metadata.resource_version
    core.create_node({"metadata": {"name": "n1"}})
    core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    core.delete_node("n1")
    w = watch.Watch()
    events = collect(w.stream(core.list_node, resource_version=start, timeout_seconds=5), 3, w)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "n1"), ("MODIFIED", "n1"), ("DELETED", "n1")]
    versions = [int(o["metadata"]["resourceVersion"]) for _, o in events]
    assert versions == sorted(versions)
    assert events[1][1]["metadata"]["labels"] == {"a": "b"}
    assert w.resource_version == str(versions[-1])


def test_watch_without_resource_version_starts_with_current_state(
        core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    core.create_node({"metadata": {"name": "n2"}})
    w = watch.Watch()
    events = collect(w.stream(core.list_node, timeout_seconds=5), 2, w)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "n1"), ("ADDED", "n2")]


def test_watch_receives_live_events(core: client.CoreV1Api) -> None:
    rv = core.list_node().metadata.resource_version

    def writer() -> None:
        time.sleep(0.2)
        core.create_node({"metadata": {"name": "live"}})

    thread = threading.Thread(target=writer)
    thread.start()
    w = watch.Watch()
    events = collect(w.stream(core.list_node, resource_version=rv, timeout_seconds=5), 1, w)
    thread.join()
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "live")]


def test_timeout_seconds_ends_the_stream(core: client.CoreV1Api) -> None:
    """Also: no BOOKMARK events unless asked for (the fixture's interval is 0.2 s)."""
    began = time.monotonic()
    events = list(watch.Watch().stream(core.list_node, resource_version="1", timeout_seconds=1))
    elapsed = time.monotonic() - began
    assert events == []
    assert 0.9 <= elapsed < 3


def test_expired_history_gives_410_api_exception(
        core: client.CoreV1Api, fake: FakeApiServer) -> None:
    old = core.create_node({"metadata": {"name": "n1"}}).metadata.resource_version
    core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    fake.expire_history()
    with pytest.raises(client.ApiException) as info:
        list(watch.Watch().stream(core.list_node, resource_version=old, timeout_seconds=2))
    assert info.value.status == 410
    assert "Expired" in info.value.reason
    # without a timeout the client retries once from the same version, then raises
    with pytest.raises(client.ApiException) as info:
        list(watch.Watch().stream(core.list_node, resource_version=old))
    assert info.value.status == 410
    # the current version (from a fresh list) still works
    fresh = core.list_node().metadata.resource_version
    core.delete_node("n1")
    w = watch.Watch()
    events = collect(w.stream(core.list_node, resource_version=fresh, timeout_seconds=5), 1, w)
    assert [t for t, _ in events] == ["DELETED"]


def test_bounded_history_expires_old_versions() -> None:
    with FakeApiServer(history_size=3) as fake:
        core = client.CoreV1Api(client.ApiClient(client_configuration(fake.url)))
        first = core.create_node({"metadata": {"name": "n0"}}).metadata.resource_version
        for i in range(1, 5):
            core.create_node({"metadata": {"name": f"n{i}"}})
        with pytest.raises(client.ApiException) as info:
            list(watch.Watch().stream(core.list_node, resource_version=first,
                                      timeout_seconds=1))
        assert info.value.status == 410
        recent = str(fake.resource_version - 2)
        w = watch.Watch()
        events = collect(w.stream(core.list_node, resource_version=recent, timeout_seconds=2),
                         2, w)
        assert [o["metadata"]["name"] for _, o in events] == ["n3", "n4"]


def test_bookmarks_carry_the_current_resource_version(
        core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    rv = core.list_node().metadata.resource_version
    created = custom.create_namespaced_custom_object(GROUP, "v1", "default", "nodestates",
                                                     nodestate("a"))
    w = watch.Watch()
    seen: list[str] = []
    for event in w.stream(core.list_node, resource_version=rv, allow_watch_bookmarks=True,
                          timeout_seconds=5):
        seen.append(event["type"])
        if event["type"] == "BOOKMARK":
            assert set(event["raw_object"]) == {"kind", "apiVersion", "metadata"}
            assert event["raw_object"]["kind"] == "Node"
            w.stop()
    assert seen == ["BOOKMARK"]  # the NodeState write is not a Node event...
    # ...but the bookmark moves the watcher's version past it
    assert w.resource_version == created["metadata"]["resourceVersion"]


def test_send_initial_events_ends_with_annotated_bookmark(
        core: client.CoreV1Api, api: client.ApiClient) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    response = api.call_api(
        "GET", f"{api.configuration.host}/api/v1/nodes?watch=true&sendInitialEvents=true"
        "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=10")
    events = []
    for line in iter_resp_lines(response.response):
        events.append(json.loads(line))
        if len(events) == 2:
            break
    response.response.close()
    assert [e["type"] for e in events][:2] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


def test_selector_watch_turns_leaving_objects_into_deletes(core: client.CoreV1Api) -> None:
    rv = core.list_node().metadata.resource_version
    core.create_node({"metadata": {"name": "n1", "labels": {"pool": "a"}}})
    core.create_node({"metadata": {"name": "n2", "labels": {"pool": "b"}}})
    core.patch_node("n1", {"metadata": {"labels": {"pool": "b"}}})
    core.patch_node("n2", {"metadata": {"labels": {"pool": "a"}}})
    w = watch.Watch()
    events = collect(w.stream(core.list_node, resource_version=rv, label_selector="pool=a",
                              timeout_seconds=5), 3, w)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "n1"), ("DELETED", "n1"), ("ADDED", "n2")]


def test_namespaced_custom_object_watch(custom: client.CustomObjectsApi) -> None:
    rv = custom.list_namespaced_custom_object(GROUP, "v1", "default", "nodestates")[
        "metadata"]["resourceVersion"]
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "nodestates", nodestate("a"))
    custom.patch_namespaced_custom_object_status(GROUP, "v1", "default", "nodestates", "a",
                                                 {"status": {"ok": True}})
    w = watch.Watch()
    events = collect(w.stream(custom.list_namespaced_custom_object, GROUP, "v1", "default",
                              "nodestates", resource_version=rv, timeout_seconds=5), 2, w)
    assert [t for t, _ in events] == ["ADDED", "MODIFIED"]
    assert events[1][1]["status"] == {"ok": True}


def run_watch_in_thread(core: client.CoreV1Api) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        began = time.monotonic()
        try:
            outcome["events"] = list(watch.Watch().stream(
                core.list_node, resource_version="1", timeout_seconds=30))
        except Exception as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - began

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_for_watch(fake: FakeApiServer) -> None:
    deadline = time.monotonic() + 5
    while fake.open_watches == 0:
        assert time.monotonic() < deadline, "watch never opened"
        time.sleep(0.01)


def test_restart_ends_open_watches_and_keeps_data(
        core: client.CoreV1Api, fake: FakeApiServer) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    thread, outcome = run_watch_in_thread(core)
    wait_for_watch(fake)
    fake.restart()
    thread.join(5)
    assert not thread.is_alive()
    assert "error" not in outcome
    assert outcome["elapsed"] < 5
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]


def test_abrupt_restart_cuts_the_connection(
        core: client.CoreV1Api, fake: FakeApiServer) -> None:
    thread, outcome = run_watch_in_thread(core)
    wait_for_watch(fake)
    fake.restart(abrupt=True)
    thread.join(5)
    assert isinstance(outcome.get("error"), urllib3.exceptions.ProtocolError)


def test_restart_dropping_data_expires_old_versions(
        core: client.CoreV1Api, fake: FakeApiServer) -> None:
    rv = core.create_node({"metadata": {"name": "n1"}}).metadata.resource_version
    fake.restart(drop_data=True)
    assert core.list_node().items == []
    assert "default" in [n.metadata.name for n in core.list_namespace().items]
    with pytest.raises(client.ApiException) as info:
        list(watch.Watch().stream(core.list_node, resource_version=rv, timeout_seconds=5))
    assert info.value.status == 410


def test_stop_with_an_open_watch_is_prompt() -> None:
    fake = FakeApiServer()
    fake.start()
    core = client.CoreV1Api(client.ApiClient(client_configuration(fake.url)))
    thread, _ = run_watch_in_thread(core)
    wait_for_watch(fake)
    began = time.monotonic()
    fake.stop()
    thread.join(5)
    assert time.monotonic() - began < 3
    assert not thread.is_alive()
