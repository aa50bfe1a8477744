"""The controller's level-triggered loop: inventory snapshot -> plan -> publish.

Each cycle starts from the whole current input, never from an event: take a snapshot, expire
the allocations of nodes whose grace period is over, plan (reusing the previous plan for what
did not change), save the ledger, render and publish every node's state. Cycles run on a timer
and when the inventory says it changed (polled, coalesced). A bad input is rejected whole: the
last good state stays published, the error is logged once and kept in the record for status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.inventory import Inventory
from controller.publisher import Publisher, PublishResult
from controller.record import Record, save_record
from controller.services import ServiceSource, StaticServices
from controller.states import StateBuilder, tombstones
from flatroute import gcpause
from flatroute.errors import InvalidInput
from flatroute.logging import get_logger
from flatroute.plan import Ledger, Plan, load_ledger, plan, save_ledger
from flatroute.plan.ledger import expire
from flatroute.plan.model import Problem

DEFAULT_RELEASE_GRACE = 3600.0
LEDGER_FILE = "ledger.json"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class CycleResult:
    ok: bool  # the input was valid and the plan was published
    error: InvalidInput | None = None
    problems: tuple[Problem, ...] = ()
    held_back: tuple[str, ...] = ()
    publish: PublishResult = field(default_factory=PublishResult)
    rendered: int = 0  # documents rendered this cycle (the rest were reused as they were)
    plan_seconds: float = 0.0
    publish_seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """For --once: 2 invalid input, 1 problems (exhaustion...), 0 all published."""
        if self.error is not None:
            return self.error.exit_status
        return 1 if self.problems else 0


class Reconciler:
    def __init__(
        self,
        inventory: Inventory,
        publisher: Publisher,
        state_dir: str | Path,
        *,
        release_grace: float = DEFAULT_RELEASE_GRACE,
        clock: Callable[[], float] = time.time,
        log: Any = None,
        services: ServiceSource | None = None,
    ) -> None:
        self.inventory = inventory
        self.publisher = publisher
        self.state_dir = Path(state_dir)
        self.release_grace = release_grace
        self.clock = clock
        self.log = log if log is not None else get_logger(component="controller")
        self.ledger_path = self.state_dir / LEDGER_FILE
        # A ledger we cannot read is fatal: planning without it could hand out a live block.
        self.ledger: Ledger = load_ledger(self.ledger_path)
        self._ledger_saved = False  # the file on disk may be older than its format: rewrite once
        self.plan: Plan | None = None
        self.states = StateBuilder()
        self.services = services if services is not None else StaticServices(
            self.state_dir, log=self.log)
        self.record = Record(release_grace_seconds=release_grace)
        self._logged_error: tuple[str, ...] | None = None
        self._logged_problems: frozenset[str] = frozenset()
        #: each node's last (site, rack), for the labels of its tombstone when it leaves
        self._where: dict[str, tuple[str, str]] = {}

    # -- one cycle ----------------------------------------------------------------------------
    def reconcile(self) -> CycleResult:
        # A cold cycle allocates a few hundred thousand objects (plans, addresses, documents)
        # and none of them form cycles: the cyclic collector would only walk them again and
        # again (10-20% of the cycle at 5,000 nodes). Reference counting still frees them.
        # This pause covers the planner too, which leaves the collector alone.
        with gcpause.paused():
            return self._reconcile()

    def _reconcile(self) -> CycleResult:
        now = self.clock()
        rec = self.record
        rec.last_attempt_at = iso(now)
        try:
            snap = self.inventory.snapshot()
            t0 = time.perf_counter()
            ledger = expire(self.ledger, now, self.release_grace)
            # Waypoints are resolved while planning: an unknown one is invalid input too.
            result = plan(snap.fabric, ledger, previous=self.plan, now=iso(now))
        except InvalidInput as exc:
            return self._rejected(exc, now)
        plan_seconds = time.perf_counter() - t0
        for name in sorted(set(self.ledger.nodes) - set(result.ledger.nodes)):
            self.log.info("allocations_released", node=name,
                          grace_seconds=self.release_grace)
        # The ledger is durable before any document that uses its allocations is published.
        # Serialising it costs ~0.07 s at 5,000 nodes: skip that when nothing was allocated,
        # retired or freed since it was last saved (comparing entries costs milliseconds).
        if not self._ledger_saved or result.ledger != self.ledger:
            save_ledger(self.ledger_path, result.ledger)
            self._ledger_saved = True
        self.ledger, self.plan = result.ledger, result

        problems = result.problems
        named = {p.node for p in problems}
        held = tuple(n.name for n in result.nodes if n.name in named or n.rack in named)
        self._log_problems(problems)
        t1 = time.perf_counter()
        # Service addresses are saved before a document announcing them is published.
        service_routes, service_problems = self.services.cycle(snap.fabric)
        problems = (*problems, *(Problem(p.key, p.message) for p in service_problems))
        docs = self.states.build(result, skip=held, services=service_routes)
        self._where.update((n.name, (n.site, n.rack)) for n in result.nodes)
        # A node that left is published as a tombstone while its allocations are reserved:
        # its speaker withdraws at once; a missing document would mean "unknown" to it.
        gone = tombstones(result.ledger, docs, held, self._where)
        published = self.publisher.publish({**docs, **gone}, keep=held)
        publish_seconds = time.perf_counter() - t1
        for name in published.written:
            if name in gone:
                self.log.info("node_state_tombstoned", node=name,
                              removed_at=result.ledger.nodes[name].retired_at)
            else:
                self.log.debug("node_state_published", node=name,
                               generation=docs[name].generation)
        for name in published.removed:
            self.log.info("node_state_removed", node=name)

        if self._logged_error is not None:
            self.log.info("fabric_accepted", source=snap.source, sha256=snap.digest)
            self._logged_error = None
        rec.fabric_source, rec.fabric_sha256 = snap.source, snap.digest
        rec.last_plan_at, rec.last_error = iso(now), None
        rec.problems = [{"node": p.node, "message": p.message} for p in problems]
        rec.held_back = list(held)
        rec.retired = self._retired(result.ledger, published.published)
        rec.nodes = {n: {"generation": p.generation, "publishedAt": p.published_at}
                     for n, p in sorted(published.published.items()) if n not in gone}
        save_record(self.state_dir, rec)
        if published.written or published.removed:
            self.log.info("node_states_published", nodes=len(docs),
                          written=len(published.written), removed=len(published.removed),
                          unchanged=published.unchanged, held_back=len(held),
                          plan_ms=round(plan_seconds * 1000, 1),
                          publish_ms=round(publish_seconds * 1000, 1))
        return CycleResult(True, None, problems, held, published, self.states.rendered,
                           plan_seconds, publish_seconds)

    def _rejected(self, exc: InvalidInput, now: float) -> CycleResult:
        errors = tuple(str(e) for e in exc.errors)
        if errors != self._logged_error:
            self.log.error("fabric_rejected", source=self.inventory.describe(),
                           errors=list(errors), kept="last good state stays published")
            self._logged_error = errors
        self.record.last_error = {"at": iso(now), "source": self.inventory.describe(),
                                  "errors": list(errors)}
        save_record(self.state_dir, self.record)
        return CycleResult(False, exc)

    def _log_problems(self, problems: tuple[Problem, ...]) -> None:
        current = frozenset(str(p) for p in problems)
        for p in problems:
            if str(p) not in self._logged_problems:
                self.log.error("plan_problem", node=p.node, problem=p.message)
        for gone in sorted(self._logged_problems - current):
            self.log.info("plan_problem_resolved", problem=gone)
        self._logged_problems = current

    def _retired(self, ledger: Ledger, published: dict[str, Any]) -> dict[str, dict[str, str]]:
        out = {}
        for name, e in sorted(ledger.nodes.items()):
            if e.retired_at is None:
                continue
            release = datetime.fromisoformat(e.retired_at) + timedelta(
                seconds=self.release_grace)
            out[name] = {"retiredAt": e.retired_at,
                         "releaseAt": release.isoformat(timespec="seconds")}
            if name in published:  # its tombstone: its speaker withdraws
                out[name]["tombstone"] = published[name].generation
        return out

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, interval: float = 30.0, poll: float = 0.5,
            settle: float = 0.2) -> None:
        """Reconcile now, then on every change of the inventory and every `interval` seconds,
        until `stop` is set. Changes seen within `settle` seconds of each other are one cycle."""
        self.log.info("controller_started", inventory=self.inventory.describe(),
                      publisher=self.publisher.describe(), interval=interval,
                      release_grace=self.release_grace)
        self._cycle()
        due = time.monotonic() + interval
        while not stop.wait(min(poll, max(0.0, due - time.monotonic()))):
            if self.inventory.changed():
                # Coalesce: an editor's several writes, or a burst of watch events, settle;
                # the snapshot then reads the latest input, so they make one cycle.
                if stop.wait(settle):
                    break
            elif time.monotonic() < due:
                continue
            self._cycle()
            due = time.monotonic() + interval
        self.log.info("controller_stopped")

    def _cycle(self) -> None:
        try:
            self.reconcile()
        except Exception as exc:  # a failing cycle must not end the loop: retry next time
            self.log.exception("reconcile_failed", error=str(exc))
