"""Static mode's Services: allocate the fabric's static services, decide who announces what.

`StaticServices.cycle(fabric, plan)` loads the allocations held in `<state-dir>/services.json`,
allocates (`flatroute.plan.service_alloc`: kept addresses first, never twice), saves the
ledger *before* any NodeState that uses a new address is published, and returns every node's
service routes (`flatroute.plan.services.decide`). `<state-dir>/services-status.json` shows
the pools, their use, the allocations, the problems and who announces which service; it is
what `flatroute controller status` prints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from flatroute.fabric.model import Fabric
from flatroute.files import write_atomic
from flatroute.plan import service_ledger
from flatroute.plan.service_alloc import Allocation, AllocationProblem, allocate, usage
from flatroute.plan.services import ServiceRoute, decide, static_requests, static_views

LEDGER_FILE = "services.json"
STATUS_FILE = "services-status.json"

Routes = dict[str, tuple[ServiceRoute, ...]]


class ServiceSource(Protocol):
    """Where the reconciler gets every node's service routes (static file or Kubernetes)."""

    def cycle(self, fabric: Fabric) -> tuple[Routes, tuple[AllocationProblem, ...]]: ...


class StaticServices:
    def __init__(self, state_dir: str | Path, *, log: Any) -> None:
        self.state_dir = Path(state_dir)
        self.log = log
        self.ledger_path = self.state_dir / LEDGER_FILE
        # Unreadable allocations are fatal, like the node ledger: we could hand one out twice.
        self.held: dict[str, Allocation] = service_ledger.load(self.ledger_path)
        self._logged: frozenset[str] = frozenset()

    def cycle(self, fabric: Fabric) -> tuple[Routes, tuple[AllocationProblem, ...]]:
        spec = fabric.services
        result = allocate(spec.pools, static_requests(fabric), self.held)
        allocations = dict(result.allocations)
        if allocations != self.held or not self.ledger_path.exists():
            for key in sorted(set(self.held) - set(allocations)):
                self.log.info("service_addresses_released", service=key,
                              addresses=[str(a) for a in self.held[key].addresses])
            for key in sorted(set(allocations) - set(self.held)):
                self.log.info("service_addresses_allocated", service=key,
                              pool=allocations[key].pool,
                              addresses=[str(a) for a in allocations[key].addresses])
            service_ledger.save(self.ledger_path, allocations)
            self.held = allocations
        self._log_problems(result.problems)
        routes = decide(fabric, static_views(fabric, allocations))
        write_atomic(str(self.state_dir / STATUS_FILE),
                     status_json(fabric, allocations, result.problems, routes))
        return routes, result.problems

    def _log_problems(self, problems: tuple[AllocationProblem, ...]) -> None:
        now = frozenset(str(p) for p in problems)
        for p in problems:
            if str(p) not in self._logged:
                self.log.error("service_allocation_failed", service=p.key, reason=p.reason,
                               problem=p.message)
        self._logged = now


def status_doc(fabric: Fabric, allocations: Mapping[str, Allocation],
               problems: tuple[AllocationProblem, ...], routes: Routes) -> dict[str, Any]:
    spec = fabric.services
    use = usage(spec.pools, allocations)
    announcers: dict[str, list[str]] = {}
    for node, rs in sorted(routes.items()):
        for r in rs:
            announcers.setdefault(f"{r.service} {r.prefix}", []).append(node)
    return {
        "pools": [{"name": p.name, "prefixes": [str(n) for n in p.networks],
                   "used": use[p.name][0], "size": use[p.name][1],
                   "sites": list(p.sites), "racks": list(p.racks)} for p in spec.pools],
        "allocations": {k: {"pool": a.pool, "addresses": [str(x) for x in a.addresses]}
                        for k, a in sorted(allocations.items())},
        "problems": [{"service": p.key, "reason": p.reason, "message": p.message}
                     for p in problems],
        "announcers": announcers,
    }


def status_json(fabric: Fabric, allocations: Mapping[str, Allocation],
                problems: tuple[AllocationProblem, ...], routes: Routes) -> str:
    return json.dumps(status_doc(fabric, allocations, problems, routes), indent=2,
                      sort_keys=True) + "\n"
