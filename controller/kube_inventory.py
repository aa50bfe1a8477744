"""Kubernetes mode of the controller: inventory from the API, leader election, the loop.

`KubeInventory` implements the `Inventory` protocol from watch caches of Nodes, RackPeerings
and one FabricConfig: `changed()` is true only when the *fabric* the objects describe
changed (kubelet heartbeats that touch Node status every few seconds change nothing), and
`snapshot()` parses only then.

`KubeController` runs the static-mode `Reconciler` unchanged, with `KubePublisher`, while
this replica holds the Lease; it restores the ledger from the API at the start of every term
and reports what it did on the FabricConfig's status (only when that changes).

`run_kubernetes(args)` is the CLI entry point (`flatroute controller run --kubernetes`).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from controller.inventory import Snapshot
from controller.kube_publisher import KubePublisher, LedgerStore, ledger_path
from controller.kube_services import KubeServices
from controller.reconciler import DEFAULT_RELEASE_GRACE, CycleResult, Reconciler
from flatroute import logging as flog
from flatroute.errors import AdapterError, InvalidInput
from flatroute.logging import get_logger
from kube.api import NODES, KubeApi, KubeError, connect
from kube.fabric import Assembled, Discovery, Unplaced, assemble
from kube.leader import LeaderElector, LeaseConfig
from kube.objects import (
    FABRICCONFIGS,
    NODESTATES,
    RACKPEERINGS,
    Condition,
    merge_conditions,
    merge_patch_for,
)
from kube.reflector import Backoff, Reflector, wait_synced

DEFAULT_NAMESPACE = "flatroute-system"
DEFAULT_LEASE = "flatroute-controller"
DEFAULT_FABRIC = "default"


class KubeInventory:
    """Fabric snapshots from the API (see the module docstring)."""

    def __init__(self, api: KubeApi, fabric: str = DEFAULT_FABRIC, *,
                 watch_timeout: int = 300, backoff: Backoff | None = None) -> None:
        self.api = api
        self.fabric = fabric
        kw: dict[str, Any] = {"watch_timeout": watch_timeout}
        self.configs = Reflector(api, FABRICCONFIGS, field_selector=f"metadata.name={fabric}",
                                 backoff=backoff or Backoff(), **kw)
        self.racks = Reflector(api, RACKPEERINGS, backoff=backoff or Backoff(), **kw)
        self.nodes = Reflector(api, NODES, backoff=backoff or Backoff(), **kw)
        self.reflectors = [self.configs, self.racks, self.nodes]
        self._revisions: tuple[int, ...] | None = None
        self._assembled: Assembled | None = None
        self._last_digest: str | None = None  # of the last snapshot taken
        self._parsed: tuple[str, Snapshot | InvalidInput] | None = None

    def start(self) -> KubeInventory:
        for r in self.reflectors:
            r.start()
        return self

    def stop(self) -> None:
        for r in self.reflectors:
            r.stop()

    def wait_synced(self, timeout: float) -> bool:
        return wait_synced(self.reflectors, timeout)

    def describe(self) -> str:
        return f"kubernetes:FabricConfig/{self.fabric}"

    @property
    def config(self) -> Mapping[str, Any] | None:
        return self.configs.get(self.fabric)

    @property
    def unplaced(self) -> tuple[Unplaced, ...]:
        return self._assembled.unplaced if self._assembled else ()

    def _assemble(self) -> Assembled | None:
        revisions = tuple(r.revision for r in self.reflectors)
        if revisions != self._revisions or self._assembled is None:
            config = self.config
            if config is None:
                self._assembled = None
            else:
                disc = Discovery.from_spec(config.get("spec"))
                nodes: list[Mapping[str, Any]] = list(self.nodes.items().values())
                if disc.label_selector:
                    nodes = [n for n in nodes if _selected(n, disc.label_selector)]
                self._assembled = assemble(config, self.racks.items().values(), nodes)
            self._revisions = revisions
        return self._assembled

    def changed(self) -> bool:
        a = self._assemble()
        digest = a.digest if a is not None else None
        return digest != self._last_digest or self._parsed is None

    def snapshot(self) -> Snapshot:
        if not all(r.synced.is_set() for r in self.reflectors):
            raise AdapterError("kubernetes inventory not synced yet")
        a = self._assemble()
        if a is None:
            self._last_digest = None
            raise InvalidInput([_no_config(self.fabric)])
        self._last_digest = a.digest
        if self._parsed is not None and self._parsed[0] == a.digest:
            result = self._parsed[1]
        else:
            try:
                result = Snapshot(a.parse(), self.describe(), a.digest)
            except InvalidInput as exc:
                result = exc
            self._parsed = (a.digest, result)
        if isinstance(result, InvalidInput):
            raise InvalidInput(list(result.errors))
        return result


def _no_config(name: str) -> Any:
    from flatroute.errors import field_error

    return field_error(f"FabricConfig/{name}", "", "not found")


def _selected(node: Mapping[str, Any], selector: str) -> bool:
    """Equality-based label selectors (`a=b,c!=d,e`): the subset the docs promise."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (x.strip() for x in term.split("=", 1))
            if labels.get(k.rstrip("=")) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeController:
    """Leader-elected reconciler over the API (see the module docstring)."""

    def __init__(self, api: KubeApi, *, namespace: str = DEFAULT_NAMESPACE,
                 fabric: str = DEFAULT_FABRIC, lease: LeaseConfig, state_dir: str | Path,
                 release_grace: float = DEFAULT_RELEASE_GRACE, watch_timeout: int = 300,
                 backoff: Backoff | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.fabric = fabric
        self.state_dir = Path(state_dir)
        self.release_grace = release_grace
        self.log = get_logger(component="controller", identity=lease.identity)
        self.elector = LeaderElector(api, lease)
        self.inventory = KubeInventory(api, fabric, watch_timeout=watch_timeout,
                                       backoff=backoff)
        self.nodestates = Reflector(api, NODESTATES, watch_timeout=watch_timeout,
                                    backoff=backoff or Backoff())
        self.ledger = LedgerStore(api, namespace)
        #: set by the Service and EndpointSlice watches: an endpoint change is acted on at
        #: once, not at the next poll
        self.wake = threading.Event()
        self.services = KubeServices(api, log=self.log, fence=self.elector.is_leader,
                                     watch_timeout=watch_timeout, backoff=backoff,
                                     on_change=self.wake.set)
        self.reconciler: Reconciler | None = None
        self.last_result: CycleResult | None = None
        self.cycles = 0
        self._status_written: dict[str, Any] | None = None

    def start_watches(self) -> None:
        self.inventory.start()
        self.nodestates.start()
        self.services.start()

    def stop_watches(self) -> None:
        self.inventory.stop()
        self.nodestates.stop()
        self.services.stop()

    # -- one term of leadership ---------------------------------------------------------------
    def _begin_term(self) -> Reconciler:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = ledger_path(self.state_dir)
        self.ledger.restore(path)
        publisher = KubePublisher(self.api, self.nodestates, self.ledger, path,
                                  fabric=self.fabric, fence=self.elector.is_leader)
        self._status_written = None
        return Reconciler(self.inventory, publisher, self.state_dir,
                          release_grace=self.release_grace, log=self.log,
                          services=self.services)

    def cycle(self) -> CycleResult | None:
        """One reconcile (the caller holds the Lease); None when it could not run."""
        if self.reconciler is None:
            self.reconciler = self._begin_term()
        try:
            result = self.reconciler.reconcile()
        except (AdapterError, KubeError) as exc:
            self.log.warning("reconcile_failed", error=str(exc))
            return None
        self.cycles += 1
        self.last_result = result
        try:
            self._report(result)
        except KubeError as exc:
            self.log.warning("fabric_status_failed", error=str(exc))
        return result

    def end_term(self) -> None:
        if self.reconciler is not None:
            self.log.info("term_ended")
        self.reconciler = None

    # -- FabricConfig status --------------------------------------------------------------------
    def _report(self, result: CycleResult) -> None:
        config = self.inventory.config
        if config is None:
            return
        gen = (config.get("metadata") or {}).get("generation")
        prev = config.get("status") or {}
        rec = self.reconciler.record if self.reconciler else None
        if result.ok:
            problems = [{"node": p.node, "message": p.message} for p in result.problems]
            ready = Condition("Ready", "False" if problems else "True",
                              "PlanProblems" if problems else "Published",
                              "; ".join(f"{p['node']}: {p['message']}" for p in problems))
            status: dict[str, Any] = {
                "observedGeneration": gen, "nodes": len(result.publish.published),
                "published": len(result.publish.published),
                "unplacedNodes": [{"name": u.name, "reason": u.reason}
                                  for u in self.inventory.unplaced],
                "heldBack": list(result.held_back), "problems": problems, "errors": []}
            accepted = Condition("Accepted", "True", "Valid", "")
        else:
            errors = [str(e) for e in (result.error.errors if result.error else ())]
            ready = Condition("Ready", "False", "InvalidInput",
                              "last good state stays published: " + "; ".join(errors[:3]))
            accepted = Condition("Accepted", "False", "InvalidInput", "; ".join(errors[:10]))
            status = {k: prev.get(k) for k in ("observedGeneration", "nodes", "published",
                                                "unplacedNodes", "heldBack", "problems")
                      if prev.get(k) is not None}
            status["errors"] = errors[:1000]
        status["leader"] = self.elector.config.identity
        status["conditions"] = merge_conditions(prev.get("conditions"), [ready, accepted],
                                                gen if isinstance(gen, int) else None)
        status = {k: v for k, v in status.items() if v is not None}
        if rec is not None and status == self._status_written:
            return
        if _status_equal(prev, status):
            self._status_written = status
            return
        patch = merge_patch_for(prev, status)
        self.api.patch(FABRICCONFIGS, self.fabric, {"status": patch}, status=True)
        self._status_written = status

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, interval: float = 30.0, poll: float = 0.5,
            settle: float = 0.2, sync_timeout: float = 60.0) -> None:
        self.log.info("controller_started", mode="kubernetes", fabric=self.fabric,
                      lease=f"{self.elector.config.namespace}/{self.elector.config.name}")
        self.start_watches()
        self.elector.start(stop)
        due = 0.0
        try:
            while not stop.is_set():
                if not self.elector.is_leader():
                    self.end_term()
                    stop.wait(poll)
                    continue
                watched = [*self.inventory.reflectors, self.nodestates,
                           *self.services.reflectors]
                if not wait_synced(watched, 0):
                    wait_synced(watched, min(poll, sync_timeout))
                    continue
                fabric_changed = self.inventory.changed()
                if self.reconciler is None or fabric_changed or \
                        self.services.changed() or time.monotonic() >= due:
                    # a fabric edit settles; an endpoint change goes through at once
                    if self.reconciler is not None and fabric_changed and stop.wait(settle):
                        break
                    self.wake.clear()
                    self.cycle()
                    due = time.monotonic() + interval
                self.wake.wait(poll)
        finally:
            self.end_term()
            self.stop_watches()
            self.log.info("controller_stopped")


def _status_equal(prev: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return all(prev.get(k) == v for k, v in status.items())


# -- CLI ------------------------------------------------------------------------------------
def add_arguments(run: argparse.ArgumentParser) -> None:
    """The flags `flatroute controller run --kubernetes` needs (for controller/cli.py)."""
    run.add_argument("--kubernetes", action="store_true",
                     help="Kubernetes mode: inventory from the API, NodeState resources")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then "
                     "~/.kube/config)")
    run.add_argument("--server", help="API server URL without auth (the test fake)")
    run.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE",
                                                           DEFAULT_NAMESPACE),
                     help=f"for the Lease and the ledger ConfigMap (default {DEFAULT_NAMESPACE})")
    run.add_argument("--fabric-config", default=DEFAULT_FABRIC, metavar="NAME",
                     help=f"the FabricConfig to plan (default {DEFAULT_FABRIC})")
    run.add_argument("--lease-name", default=DEFAULT_LEASE)
    run.add_argument("--identity", default=None,
                     help="leader election identity (default POD_NAME or hostname-random)")
    run.add_argument("--lease-duration", type=float, default=15.0, metavar="S")
    run.add_argument("--renew-deadline", type=float, default=10.0, metavar="S")
    run.add_argument("--retry-period", type=float, default=2.0, metavar="S")


def run_kubernetes(args: argparse.Namespace) -> int:
    """`flatroute controller run --kubernetes`: runs until SIGTERM/SIGINT; exit 0."""
    flog.configure(json=getattr(args, "log_format", "json") == "json",
                   level=getattr(args, "log_level", "info"))
    identity = (args.identity or os.environ.get("POD_NAME")
                or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    lease = LeaseConfig(args.namespace, args.lease_name, identity, args.lease_duration,
                        args.renew_deadline, args.retry_period)
    api = connect(args.kubeconfig, args.server)
    ctl = KubeController(api, namespace=args.namespace, fabric=args.fabric_config,
                         lease=lease, state_dir=args.state_dir,
                         release_grace=getattr(args, "release_grace", DEFAULT_RELEASE_GRACE))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        ctl.log.info("controller_stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ctl.run(stop, interval=getattr(args, "interval", 30.0), poll=getattr(args, "poll", 0.5))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
