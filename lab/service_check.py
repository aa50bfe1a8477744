"""`lab test` rows for the fabric's services (see lab/services.py for what stands in for what).

1. The external client behind the spine reaches every service address (IPv4 and IPv6) and
   port, and is answered by one of the service's endpoint pods.
2. A Local service with endpoints on two nodes has one path per node in the ToR's kernel FIB
   (ECMP); its endpoint on one node deleted, that node's path leaves the FIB and the client
   is still answered, by the other node's pod; the endpoint restored, the path returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flatroute.fabric import load_fabric
from flatroute.fabric.model import Fabric
from flatroute.fabric.service_checks import node_of_pod
from flatroute.fabric.services import TrafficPolicy
from flatroute.fabric.wiring import Role
from flatroute.plan.services import host_prefix
from lab import host, services
from lab.state import LabState
from lab.topology import Topology

Say = Callable[[str], None]
Check = Callable[[bool, str], bool]


def ask(topo: Topology, address: str, port: int) -> str | None:
    cmd = host.in_ns(services.client_ns(topo), [sys.executable, "-m", "lab.echo", "get",
                                                address, str(port)])
    out = host.run(cmd, check=False, timeout=10)
    return out.stdout.strip() if out.returncode == 0 else None


def reach_all(state: LabState, topo: Topology, fabric: Fabric, check: Check, say: Say) -> None:
    for t in services.current_targets(state, fabric):
        got = ask(topo, str(t.address), t.port)
        ok = got in t.endpoints
        say(f"  service {t.service} {t.address} port {t.port}: "
            f"{'answered by ' + str(got) if ok else 'NO ANSWER' if got is None else got}")
        check(ok, f"client -> {t.service} {t.address}:{t.port} (got {got!r})")


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def _edit_endpoints(copy: Path, index: int, endpoints: list[str]) -> None:
    doc: Any = yaml.safe_load(copy.read_text())
    doc["spec"]["services"]["static"][index]["endpoints"] = endpoints
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))


def endpoint_gone(state: LabState, topo: Topology, fabric: Fabric, check: Check,
                  say: Say) -> None:
    tors = [r for r in topo.routers if r.role is Role.TOR]
    pick = next(((i, s) for i, s in enumerate(fabric.services.static)
                 if s.policy is TrafficPolicy.LOCAL
                 and len({node_of_pod(e) for e in s.endpoints}) >= 2), None)
    if pick is None or len(tors) != 1:
        return
    index, svc = pick
    tor = tors[0]
    t = next(x for x in services.current_targets(state, fabric)
             if x.service == svc.key and x.address.version == 4)
    prefix = str(host_prefix(t.address))
    nodes = len({node_of_pod(e) for e in svc.endpoints})
    check(_wait(lambda: services.fib_paths(tor.ns, prefix) == nodes, 30),
          f"{tor.name} has {nodes} ECMP paths to {svc.key} {prefix}")
    say(f"  ECMP at {tor.name}: {services.fib_paths(tor.ns, prefix)} paths to {prefix}")
    copy = Path(state.fabric_copy)
    original = list(svc.endpoints)
    _edit_endpoints(copy, index, original[:-1])
    services.sync(state, topo, load_fabric(copy))
    check(_wait(lambda: services.fib_paths(tor.ns, prefix) == nodes - 1, 30),
          f"endpoint {original[-1]} deleted: its node's path to {prefix} left {tor.name}")
    answers = [ask(topo, str(t.address), t.port) for _ in range(5)]
    say(f"  {original[-1]} deleted: {services.fib_paths(tor.ns, prefix)} path(s); client "
        f"answered by {sorted(set(map(str, answers)))}")
    check(all(a in original[:-1] for a in answers),
          f"traffic to {svc.key} keeps flowing via the other node (got {answers})")
    _edit_endpoints(copy, index, original)
    services.sync(state, topo, load_fabric(copy))
    check(_wait(lambda: services.fib_paths(tor.ns, prefix) == nodes, 30),
          f"endpoint {original[-1]} restored: {nodes} paths again")


def run(state: LabState, topo: Topology, check: Check, say: Say) -> None:
    fabric = load_fabric(state.fabric_copy)
    if not fabric.services.static:
        return
    say("Services (the client behind the spine; kube-proxy's part played by nftables):")
    reach_all(state, topo, fabric, check, say)
    endpoint_gone(state, topo, fabric, check, say)
