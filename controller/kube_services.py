"""Kubernetes mode's Services: LoadBalancer addresses allocated by the leader, written to
`status.loadBalancer.ingress`, and every node's service routes from EndpointSlices.

A Service is ours when it is of type LoadBalancer and names our class
(`spec.loadBalancerClass`, `flatroute.dev/bgp` unless the fabric says otherwise), or names no
class and the fabric makes flatroute the default (`spec.services.default`). Its request:
- a pool by annotation `flatroute.dev/pool` (comma-separated names, in order), else the pools
  whose `serviceSelector.matchLabels` its labels match, else every `autoAssign` pool;
- addresses by `spec.loadBalancerIP` or annotation `flatroute.dev/load-balancer-ips`
  (comma-separated, one per family); families from `spec.ipFamilies`.
The Services' own status is the persisted state: what `status.loadBalancer.ingress` holds is
kept (a restarted controller or a new leader allocates nothing new), a deleted Service's
addresses return to the pool at the next cycle. A problem (exhaustion, a taken address) is an
Event and a condition `flatroute.dev/AddressAllocated=False` on the Service, never a crash.
Writes: one status merge patch per Service whose status must change, none in a steady state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from flatroute.fabric.model import Fabric
from flatroute.fabric.services import Addr, Services, TrafficPolicy
from flatroute.plan.service_alloc import Allocation, AllocationProblem, Request, allocate
from flatroute.plan.services import ServiceRoute, ServiceView, decide
from kube.api import ALL_NAMESPACES, ENDPOINTSLICES, EVENTS, SERVICES, KubeApi, KubeError
from kube.reflector import Backoff, Reflector

POOL_ANNOTATION = "flatroute.dev/pool"
IPS_ANNOTATION = "flatroute.dev/load-balancer-ips"
CONDITION = "flatroute.dev/AddressAllocated"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = Mapping[str, Any]
Routes = dict[str, tuple[ServiceRoute, ...]]


# -- pure: Service objects -> requests, held allocations, views -----------------------------------
def key_of(svc: Obj) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def is_ours(svc: Obj, spec: Services) -> bool:
    s = svc.get("spec") or {}
    if s.get("type") != "LoadBalancer" or not spec.pools:
        return False
    cls = s.get("loadBalancerClass")
    return cls == spec.load_balancer_class if cls is not None else spec.default_class


def _addrs(texts: Iterable[Any]) -> tuple[Addr, ...]:
    out = []
    for t in texts:
        try:
            out.append(ipaddress.ip_address(str(t).strip()))
        except ValueError:
            continue
    return tuple(out)


def request_of(svc: Obj, spec: Services) -> Request:
    meta, s = svc.get("metadata") or {}, svc.get("spec") or {}
    notes = meta.get("annotations") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    pools: tuple[str, ...] = tuple(p.strip() for p in str(notes.get(POOL_ANNOTATION, ""))
                                   .split(",") if p.strip())
    if not pools:
        pools = tuple(p.name for p in spec.pools if p.selects(labels))
    asked = [x for x in str(notes.get(IPS_ANNOTATION, "")).split(",") if x.strip()]
    if s.get("loadBalancerIP"):
        asked.append(str(s["loadBalancerIP"]))
    fams = tuple(4 if f == "IPv4" else 6 for f in s.get("ipFamilies") or ()
                 if f in ("IPv4", "IPv6"))
    return Request(key_of(svc), pools, tuple(dict.fromkeys(_addrs(asked))), fams)


def held_of(svc: Obj, spec: Services) -> Allocation | None:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    addrs = _addrs(i.get("ip") for i in ingress if isinstance(i, dict) and i.get("ip"))
    pool = spec.pool_of(addrs[0]) if addrs else None
    return Allocation(key_of(svc), pool.name, addrs) if pool is not None else None


def ready_by_node(slices: Iterable[Obj]) -> dict[str, int]:
    """Ready endpoints per node (`conditions.ready` unset counts as ready, as in the API)."""
    out: dict[str, int] = {}
    for sl in slices:
        for ep in sl.get("endpoints") or ():
            cond = ep.get("conditions") or {}
            node = ep.get("nodeName")
            if node and cond.get("ready", True) is not False and not cond.get("terminating"):
                out[str(node)] = out.get(str(node), 0) + 1
    return out


def view_of(svc: Obj, spec: Services, alloc: Allocation | None,
            slices: Iterable[Obj]) -> ServiceView:
    s = svc.get("spec") or {}
    policy = TrafficPolicy.LOCAL if s.get("externalTrafficPolicy") == "Local" \
        else TrafficPolicy.CLUSTER
    external = tuple(a for a in _addrs(s.get("externalIPs") or ()) if spec.pool_of(a))
    return ServiceView(key_of(svc), policy, alloc.addresses if alloc else (), external,
                       ready_by_node(slices))


def status_for(alloc: Allocation | None, problem: AllocationProblem | None,
               previous: Obj) -> dict[str, Any]:
    """The Service's status as we want it (merge-patch body), keeping others' conditions."""
    ingress = [{"ip": str(a), "ipMode": "VIP"} for a in alloc.addresses] if alloc else []
    others = [c for c in previous.get("conditions") or () if c.get("type") != CONDITION]
    mine = ({"type": CONDITION, "status": "False", "reason": problem.reason,
             "message": problem.message} if problem is not None else
            {"type": CONDITION, "status": "True", "reason": "Allocated",
             "message": ", ".join(str(a) for a in alloc.addresses)} if alloc else None)
    out: dict[str, Any] = {"loadBalancer": {"ingress": ingress} if ingress else {}}
    conds = [*others, mine] if mine else others
    if conds or previous.get("conditions"):
        out["conditions"] = conds
    return out


def _same(previous: Obj, wanted: Obj) -> bool:
    def strip(conds: Any) -> list[Any]:
        return [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                for c in conds or ()]
    return ((previous.get("loadBalancer") or {}) == wanted["loadBalancer"]
            and strip(previous.get("conditions")) == strip(wanted.get("conditions")))


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


# -- the adapter ----------------------------------------------------------------------------------
class KubeServices:
    """Watches Services and EndpointSlices; `cycle(fabric)` allocates, writes, decides."""

    def __init__(self, api: KubeApi, *, log: Any, fence: Callable[[], bool] = lambda: True,
                 watch_timeout: int = 300, backoff: Backoff | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.api = api
        self.log = log
        self.fence = fence
        kw: dict[str, Any] = {"namespace": ALL_NAMESPACES, "watch_timeout": watch_timeout,
                              "on_change": on_change}
        self.services = Reflector(api, SERVICES, backoff=backoff or Backoff(), **kw)
        self.slices = Reflector(api, ENDPOINTSLICES, backoff=backoff or Backoff(), **kw)
        self.reflectors = [self.services, self.slices]
        self._evented: set[str] = set()
        self._seen: tuple[int, ...] | None = None
        #: per Service: the status we last wrote and the resourceVersion that write made, so a
        #: cycle that runs before our own write came back through the watch does not repeat it
        self._written: dict[str, tuple[dict[str, Any], int]] = {}
        #: status writes made (for the benchmark and the tests)
        self.writes = 0

    def changed(self) -> bool:
        """A Service or EndpointSlice changed since the last cycle."""
        return tuple(r.revision for r in self.reflectors) != self._seen

    def start(self) -> None:
        for r in self.reflectors:
            r.start()

    def stop(self) -> None:
        for r in self.reflectors:
            r.stop()

    def cycle(self, fabric: Fabric) -> tuple[Routes, tuple[AllocationProblem, ...]]:
        self._seen = tuple(r.revision for r in self.reflectors)
        spec = fabric.services
        ours = [s for s in self.services.items().values() if is_ours(s, spec)]
        held = {key_of(s): h for s in ours if (h := held_of(s, spec)) is not None}
        result = allocate(spec.pools, [request_of(s, spec) for s in ours], held)
        problems = {p.key: p for p in result.problems}
        for svc in ours:
            self._write(svc, result.allocations.get(key_of(svc)), problems.get(key_of(svc)))
        by_service: dict[str, list[Obj]] = {}
        for sl in self.slices.items().values():
            labels = (sl.get("metadata") or {}).get("labels") or {}
            ns = (sl.get("metadata") or {}).get("namespace") or "default"
            if labels.get(SERVICE_NAME_LABEL):
                by_service.setdefault(f"{ns}/{labels[SERVICE_NAME_LABEL]}", []).append(sl)
        views = [view_of(s, spec, result.allocations.get(key_of(s)),
                         by_service.get(key_of(s), ())) for s in self._announced(ours, spec)]
        return decide(fabric, views), result.problems

    def _announced(self, ours: Sequence[Obj], spec: Services) -> list[Obj]:
        """Ours, plus other Services whose external IPs lie in our pools."""
        out = list(ours)
        for s in self.services.items().values():
            if s not in ours and any(spec.pool_of(a) for a in _addrs(
                    (s.get("spec") or {}).get("externalIPs") or ())):
                out.append(s)
        return out

    def _write(self, svc: Obj, alloc: Allocation | None,
               problem: AllocationProblem | None) -> None:
        previous = svc.get("status") or {}
        wanted = status_for(alloc, problem, previous)
        key = key_of(svc)
        meta = svc.get("metadata") or {}
        if _same(previous, wanted) or not self.fence() or self._in_flight(key, meta, wanted):
            return
        try:
            got = self.api.patch(SERVICES, str(meta.get("name")), {"status": wanted},
                                 status=True, namespace=str(meta.get("namespace") or "default"))
            self.writes += 1
            self._written[key] = (wanted, _rv(got))
        except KubeError as exc:
            self.log.warning("service_status_failed", service=key, error=str(exc))
            return
        if alloc is not None:
            self.log.info("service_address_allocated", service=key, pool=alloc.pool,
                          addresses=[str(a) for a in alloc.addresses])
        if problem is not None and f"{key} {problem}" not in self._evented:
            self._evented.add(f"{key} {problem}")
            self.log.error("service_allocation_failed", service=key, reason=problem.reason,
                           problem=problem.message)
            self._event(svc, problem)

    def _in_flight(self, key: str, meta: Obj, wanted: dict[str, Any]) -> bool:
        """We wrote exactly this and the cache has not caught up with that write yet."""
        done = self._written.get(key)
        return done is not None and _same(done[0], wanted) and _rv({"metadata": meta}) < done[1]

    def _event(self, svc: Obj, problem: AllocationProblem) -> None:
        meta = svc.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name')}.", "namespace": ns},
                "involvedObject": {"kind": "Service", "apiVersion": "v1", "namespace": ns,
                                   "name": meta.get("name"), "uid": meta.get("uid")},
                "reason": problem.reason, "message": problem.message, "type": "Warning",
                "source": {"component": "flatroute-controller"}, "count": 1}
        try:
            self.api.create(EVENTS, body, namespace=ns)
        except KubeError as exc:
            self.log.warning("service_event_failed", service=key_of(svc), error=str(exc))
