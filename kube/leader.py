"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

- The leader renews `renewTime` every `retry_period` with an optimistic-concurrency update
  (PUT with the resourceVersion read): two candidates can never both win the same version.
- A candidate takes the Lease only when the holder has not changed the record for
  `lease_duration`, measured on the candidate's *own* monotonic clock from when it first
  saw that record (clocks of different machines are never compared).
- The leader stops leading (`is_leader()` turns false) when it has not renewed for
  `renew_deadline` < `lease_duration`: it has stepped down before anyone else may take over.
- On a clean stop the leader releases the Lease (empties `holderIdentity`) so a standby
  takes over at its next retry instead of after a full lease duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flatroute.logging import get_logger
from kube.api import LEASES, Conflict, KubeApi, KubeError, Obj


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


def micro_time(ts: float) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(spec: Obj) -> tuple[Any, ...]:
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"),
            spec.get("leaseDurationSeconds"), spec.get("leaseTransitions"))


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self.monotonic = monotonic
        self.wall = wall
        self.on_change = on_change
        self.log = get_logger(component="leader", lease=f"{config.namespace}/{config.name}",
                              identity=config.identity)
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # monotonic time of our last successful renew
        self._leading = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: (start, end) monotonic intervals during which this elector led (for tests, status)
        self.terms: list[list[float]] = []

    # -- state --------------------------------------------------------------------------------
    def is_leader(self) -> bool:
        """True only while our last renew is younger than the renew deadline."""
        with self._lock:
            fresh = (self._renewed_at is not None
                     and self.monotonic() - self._renewed_at < self.config.renew_deadline)
            if self._leading and not fresh:
                self._set_leading(False, "renew_deadline_passed")
            return self._leading

    def holder(self) -> str | None:
        return self._observed[0] if self._observed else None

    def _set_leading(self, leading: bool, why: str) -> None:
        # called with self._lock held
        if leading == self._leading:
            return
        self._leading = leading
        now = self.monotonic()
        if leading:
            self.terms.append([now, float("inf")])
            self.log.info("leadership_acquired", reason=why)
        else:
            if self.terms:
                self.terms[-1][1] = now
            self.log.warning("leadership_lost", reason=why)
        if self.on_change is not None:
            self.on_change(leading)

    # -- one attempt --------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now_wall = micro_time(self.wall())
        lease = self.api.get(LEASES, cfg.name, cfg.namespace)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                    "spec": self._spec(now_wall, now_wall, 0)}
            try:
                created = self.api.create(LEASES, body, cfg.namespace)
            except Conflict:
                return False  # someone else created it first
            self._observe(created.get("spec") or {})
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or None
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        if (holder is not None and holder != cfg.identity
                and self.monotonic() < self._observed_at + duration):
            return False  # held, and not expired as far as we have watched it
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == cfg.identity:
            acquire = spec.get("acquireTime") or now_wall
        else:
            acquire, transitions = now_wall, transitions + 1
        body = {**lease, "spec": self._spec(acquire, now_wall, transitions)}
        try:
            updated = self.api.replace(LEASES, cfg.name, body, cfg.namespace)
        except Conflict:
            return False  # it changed under us: someone else renewed or took it
        self._observe(updated.get("spec") or {})
        return True

    def _spec(self, acquire: str, renew: str, transitions: int) -> Obj:
        return {"holderIdentity": self.config.identity,
                "leaseDurationSeconds": round(self.config.lease_duration),
                "acquireTime": acquire, "renewTime": renew, "leaseTransitions": transitions}

    def _observe(self, spec: Obj) -> None:
        record = _record(spec)
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()

    # -- the loop -----------------------------------------------------------------------------
    def step(self) -> bool:
        """One attempt, with the bookkeeping; returns whether we lead now."""
        started = self.monotonic()
        try:
            ok = self.try_acquire_or_renew()
            error = None
        except KubeError as exc:
            ok, error = False, exc
        with self._lock:
            if ok:
                self._renewed_at = started  # conservative: the deadline counts from the try
                self._set_leading(True, "acquired" if not self.terms or self.terms[-1][1]
                                  != float("inf") else "renewed")
            elif self._observed and self._observed[0] not in (None, self.config.identity):
                self._set_leading(False, f"held by {self._observed[0]}")
            elif error is not None:
                self.log.warning("lease_renew_failed", error=str(error))
        return self.is_leader()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._stop.is_set():
            self.step()
            stop.wait(self.config.retry_period)
        if not self._stop.is_set():
            self.release()

    def start(self, stop: threading.Event) -> LeaderElector:
        self._thread = threading.Thread(target=self.run, args=(stop,), daemon=True,
                                        name=f"leader:{self.config.identity}")
        self._thread.start()
        return self

    def crash(self) -> None:
        """Stop renewing without releasing (what a killed process does); for tests."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Give the Lease up if we hold it, so a standby need not wait for it to expire."""
        with self._lock:
            was = self._leading
            self._set_leading(False, "released")
            self._renewed_at = None
        if not was:
            return
        cfg = self.config
        try:
            lease = self.api.get(LEASES, cfg.name, cfg.namespace)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1,
                    "renewTime": micro_time(self.wall())}
            self.api.replace(LEASES, cfg.name, {**lease, "spec": {
                k: v for k, v in spec.items() if v is not None}}, cfg.namespace)
            self.log.info("lease_released")
        except KubeError as exc:
            self.log.warning("lease_release_failed", error=str(exc))
