"""LoadBalancer address allocation: pure, deterministic, never the same address twice.

`allocate(pools, requests, held)` gives every request its addresses:
1. a held allocation (from the persisted ledger, or the Services' own status in Kubernetes)
   that still fits its request is kept as it is: addresses never move across restarts;
2. requested addresses (`spec.loadBalancerIP`, an annotation, a static service's
   `addresses`) are given when they lie in one of the request's pools and are free;
3. the rest get the first free address of each family they want, from the first of their
   pools that has all those families.
Whatever cannot be done is a problem for that request (exhaustion, a taken address), never
an exception: the other requests are still served. Requests absent from `requests` lose
their addresses, which return to the pools.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from flatroute.fabric.services import Addr, Net, ServicePool


@dataclass(frozen=True, slots=True)
class Request:
    key: str  # namespace/name
    #: the pools it may come from, in order of preference (empty: every auto-assign pool)
    pools: tuple[str, ...] = ()
    #: addresses asked for (at most one per family)
    addresses: tuple[Addr, ...] = ()
    #: families wanted when nothing is asked for (empty: every family of the pool)
    families: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class Allocation:
    key: str
    pool: str
    addresses: tuple[Addr, ...]


@dataclass(frozen=True, slots=True)
class AllocationProblem:
    key: str
    reason: str  # a CamelCase reason, for Kubernetes events and conditions
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True, slots=True)
class AllocationResult:
    allocations: Mapping[str, Allocation]
    problems: tuple[AllocationProblem, ...] = ()


def candidates(pools: Sequence[ServicePool], req: Request) -> list[ServicePool]:
    if req.pools:
        by_name = {p.name: p for p in pools}
        return [by_name[n] for n in req.pools if n in by_name]
    if req.addresses:  # a requested address may come from any pool, auto-assign or not
        return list(pools)
    return [p for p in pools if p.auto_assign]


def _fits(held: Allocation, req: Request, pools: Sequence[ServicePool]) -> bool:
    pool = next((p for p in candidates(pools, req) if p.name == held.pool), None)
    if pool is None or not held.addresses:
        return False
    if not all(pool.contains(a) for a in held.addresses):
        return False
    if req.addresses:
        return sorted(map(str, req.addresses)) == sorted(map(str, held.addresses))
    fams = req.families or tuple(sorted({n.version for n in pool.networks}))
    return sorted(a.version for a in held.addresses) == sorted(fams)


def _hosts(net: Net) -> Iterator[Addr]:
    """Addresses of a pool prefix handed out, in order: not the network address (nor an
    IPv4 broadcast) of a prefix longer than a point-to-point link."""
    if net.num_addresses <= 2:
        yield from net
        return
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    for i in range(first, last + 1):
        yield make(i)


class _Free:
    """First-free search over pools, remembering where each prefix was last full up to."""

    def __init__(self, used: dict[Addr, str]) -> None:
        self.used = used
        self.iters: dict[Net, Iterator[Addr]] = {}
        self.peeked: dict[Net, Addr | None] = {}

    def take(self, pool: ServicePool, family: int, key: str) -> Addr | None:
        for net in pool.networks:
            if net.version != family:
                continue
            it = self.iters.setdefault(net, _hosts(net))
            for a in it:
                if a not in self.used:
                    self.used[a] = key
                    return a
        return None

    def release(self, addresses: Sequence[Addr]) -> None:
        for a in addresses:
            self.used.pop(a, None)
        self.iters.clear()  # an address before a cursor is free again


def allocate(pools: Sequence[ServicePool], requests: Sequence[Request],
             held: Mapping[str, Allocation]) -> AllocationResult:
    used: dict[Addr, str] = {}
    out: dict[str, Allocation] = {}
    problems: list[AllocationProblem] = []
    order = sorted(requests, key=lambda r: r.key)
    for req in order:  # 1. keep what still fits
        h = held.get(req.key)
        if h is not None and _fits(h, req, pools) and not any(a in used for a in h.addresses):
            out[req.key] = h
            used.update((a, req.key) for a in h.addresses)
    for req in order:  # 2. requested addresses
        if req.key in out or not req.addresses:
            continue
        got = _requested(pools, req, used)
        if isinstance(got, AllocationProblem):
            problems.append(got)
        else:
            out[req.key] = got
            used.update((a, req.key) for a in got.addresses)
    free = _Free(used)
    for req in order:  # 3. first free
        if req.key in out or req.addresses:
            continue
        fresh = _fresh(pools, req, free)
        if isinstance(fresh, AllocationProblem):
            problems.append(fresh)
        else:
            out[req.key] = fresh
    return AllocationResult(out, tuple(problems))


def _requested(pools: Sequence[ServicePool], req: Request, used: Mapping[Addr, str]
               ) -> Allocation | AllocationProblem:
    pools_ok = candidates(pools, req)
    pool = next((p for p in pools_ok if all(p.contains(a) for a in req.addresses)), None)
    if pool is None:
        names = ", ".join(p.name for p in pools_ok) or "none"
        return AllocationProblem(req.key, "AddressOutsidePools", "requested "
                                 f"{', '.join(map(str, req.addresses))} lies in none of its "
                                 f"pools ({names})")
    for a in req.addresses:
        if a in used:
            return AllocationProblem(req.key, "AddressInUse",
                                     f"requested {a} is already the address of {used[a]}")
    return Allocation(req.key, pool.name, tuple(req.addresses))


def _fresh(pools: Sequence[ServicePool], req: Request, free: _Free
           ) -> Allocation | AllocationProblem:
    pools_ok = candidates(pools, req)
    if not pools_ok:
        return AllocationProblem(req.key, "NoPool", "no pool to allocate from (unknown pool "
                                 f"{', '.join(req.pools)})" if req.pools else
                                 "no pool to allocate from (no autoAssign pool)")
    for pool in pools_ok:
        have = {n.version for n in pool.networks}
        fams = req.families or tuple(sorted(have))
        if not set(fams) <= have:
            continue
        got: list[Addr] = []
        for fam in fams:
            a = free.take(pool, fam, req.key)
            if a is None:
                break
            got.append(a)
        if len(got) == len(fams):
            return Allocation(req.key, pool.name, tuple(got))
        free.release(got)
    fams_text = "/".join(f"IPv{f}" for f in req.families) or "any family"
    return AllocationProblem(req.key, "PoolExhausted", f"no free {fams_text} address in "
                             f"pools {', '.join(p.name for p in pools_ok)}")


def usage(pools: Sequence[ServicePool], allocations: Mapping[str, Allocation]
          ) -> dict[str, tuple[int, int]]:
    """Per pool: (addresses in use, addresses it can hand out)."""
    out = {}
    for p in pools:
        size = sum(max(1, n.num_addresses - (2 if n.version == 4 else 1))
                   if n.num_addresses > 2 else n.num_addresses for n in p.networks)
        inuse = sum(len(a.addresses) for a in allocations.values() if a.pool == p.name)
        out[p.name] = (inuse, size)
    return out
