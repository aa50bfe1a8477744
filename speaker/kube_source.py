"""Kubernetes mode of the speaker: its own NodeState is the desired state; status goes back
on that NodeState's status subresource, and only when it changed.

- `KubeNodeStateSource` watches exactly one object: list+watch of nodestates with
  `fieldSelector=metadata.name=<node>` (what RBAC `resourceNames` can authorise), relisting
  on 410 and backing off on errors (`kube.reflector`). `desired()` parses the spec
  with the one NodeState parser; a malformed spec is reported, never applied.
- `KubeStatusWriter.report(status)` builds the status document deterministically (condition
  timestamps move only on transitions; no heartbeat fields) and sends a merge patch of the
  status subresource only when the document differs from what the object already carries:
  a speaker restarted into the same state writes nothing.
- `run(source, writer, apply, stop)` is the loop: on every change of the NodeState, and every
  `interval`, call `apply(state)` (the speaker's reconcile: kernel and ExaBGP) and report
  what it returns. The speaker wires its real `apply`; tests pass a stand-in.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flatroute.errors import InvalidInput
from flatroute.logging import get_logger
from flatroute.nodestate import NodeState
from flatroute.tombstone import Removed
from kube.api import KubeApi, KubeError, connect
from kube.objects import (
    NODESTATES,
    NodeStatus,
    canonical_hash,
    merge_patch_for,
    parse_node_state,
    strip_nulls,
)
from kube.reflector import Backoff, Reflector


@dataclass(frozen=True, slots=True)
class Desired:
    """What the NodeState asks for right now."""

    #: None: no NodeState (yet), or its spec is invalid; Removed: the node's tombstone
    state: NodeState | Removed | None
    generation: int | None = None
    spec_hash: str | None = None
    error: str | None = None  # the spec's validation errors, for status


class KubeNodeStateSource:
    def __init__(self, api: KubeApi, node: str, *, watch_timeout: int = 300,
                 backoff: Backoff | None = None) -> None:
        self.api = api
        self.node = node
        self.reflector = Reflector(api, NODESTATES, field_selector=f"metadata.name={node}",
                                   watch_timeout=watch_timeout, backoff=backoff)
        self._parsed: tuple[str, Desired] | None = None

    def start(self) -> KubeNodeStateSource:
        self.reflector.start()
        return self

    def stop(self) -> None:
        self.reflector.stop()

    @property
    def revision(self) -> int:
        return self.reflector.revision

    def wait_for_change(self, revision: int, timeout: float) -> int:
        return self.reflector.wait_for_change(revision, timeout)

    def object(self) -> Mapping[str, Any] | None:
        return self.reflector.get(self.node)

    def desired(self) -> Desired:
        obj = self.object()
        if obj is None:
            return Desired(None)
        rv = str(obj["metadata"].get("resourceVersion"))
        if self._parsed is not None and self._parsed[0] == rv:
            return self._parsed[1]
        gen = obj["metadata"].get("generation")
        spec_hash = canonical_hash(strip_nulls(obj.get("spec")))
        try:
            out = Desired(parse_node_state(obj), gen, spec_hash)
        except InvalidInput as exc:
            out = Desired(None, gen, spec_hash, "; ".join(str(e) for e in exc.errors))
        self._parsed = (rv, out)
        return out


class KubeStatusWriter:
    def __init__(self, api: KubeApi, source: KubeNodeStateSource) -> None:
        self.api = api
        self.source = source
        self.node = source.node
        self.writes = 0
        self._last: dict[str, Any] | None = None  # what we last wrote (or found in place)
        self.log = get_logger(component="speaker", node=source.node)

    def report(self, status: NodeStatus) -> bool:
        """Write `status` if it differs from the object's; True when a write happened."""
        obj = self.source.object()
        if obj is None:
            return False  # nothing to report on (deleted, or not published yet)
        current = obj.get("status") or {}
        # The watch may lag our own write: compare against what we wrote last too.
        base = self._last if self._last is not None and current != self._last else current
        doc = status.to_doc(base)
        if doc in (current, self._last):
            self._last = doc
            return False
        patch = merge_patch_for(current, doc)
        try:
            self.api.patch(NODESTATES, self.node, {"status": patch}, status=True)
        except KubeError as exc:
            self.log.warning("status_write_failed", error=str(exc))
            return False
        self.writes += 1
        self._last = doc
        self.log.info("status_written", sessions_up=doc["sessionsUp"],
                      generation=doc.get("observedGeneration"))
        return True


Apply = Callable[[Desired], NodeStatus]


def run(source: KubeNodeStateSource, writer: KubeStatusWriter, apply: Apply,
        stop: threading.Event, *, interval: float = 10.0) -> None:
    """Apply the desired state on every change and every `interval`; report the result."""
    log = get_logger(component="speaker", node=source.node)
    revision = -1
    while not stop.is_set():
        revision = source.revision
        try:
            status = apply(source.desired())
            writer.report(status)
        except Exception as exc:  # the loop must outlive a failing apply
            log.exception("speaker_apply_failed", error=str(exc))
        if stop.is_set():
            break
        source.wait_for_change(revision, interval)


def add_arguments(run_parser: argparse.ArgumentParser) -> None:
    """The flags `flatroute speaker run --kubernetes` needs (for speaker/cli.py)."""
    run_parser.add_argument("--kubernetes", action="store_true",
                            help="Kubernetes mode: desired state from this node's NodeState")
    run_parser.add_argument("--node", help="this node's name (default: $NODE_NAME)")
    run_parser.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster)")
    run_parser.add_argument("--server", help="API server URL without auth (the test fake)")


def open_source(args: argparse.Namespace) -> tuple[KubeNodeStateSource, KubeStatusWriter]:
    """Source and status writer from parsed CLI flags (started; stop() the source)."""
    import os

    node = getattr(args, "node", None) or os.environ.get("NODE_NAME")
    if not node:
        from flatroute.errors import field_error

        raise InvalidInput([field_error("--node", "", "required with --kubernetes (or set "
                                                      "NODE_NAME)")])
    api = connect(getattr(args, "kubeconfig", None), getattr(args, "server", None))
    source = KubeNodeStateSource(api, node).start()
    return source, KubeStatusWriter(api, source)
