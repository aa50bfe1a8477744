"""Level-triggered reconciliation, the pure part: desired kernel routes, and desired vs actual.

`desired_routes(state, sessions, ...)` says what the kernel should hold; `diff(desired, actual)`
says how to get there. Only routes in `actual` (our protocol, from the dump) are ever replaced or
deleted. Applying the result twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network

from flatroute.fabric.naming import is_pod_veth
from flatroute.nodestate import NodeState
from flatroute.plan.model import Behavior
from speaker.routes import UNREACHABLE, Nexthop, Route, Seg6Encap, Seg6Local, sorted_nexthops
from speaker.rtnl import Op
from speaker.sessions import Session

V4_METRIC = 0
V6_METRIC = 1024  # what the kernel gives IPv6 routes by default: keeps dumps and wants equal
#: The device every seg6local SID route points at. Not `lo`: this kernel turns a route via the
#: loopback device into a reject route on input (seen: End and End.DX4 via `dev lo` answer
#: "unreachable route"), so the speaker makes an always-up device of its own (see
#: KernelAdapter.ensure_sid_device).
SID_DEVICE = "flrsid"
#: what encapsulation routes name as their device on the eBPF datapath, where the program
#: finds the way out itself (bpf_fib_lookup) and no route is written
BPF_ENCAP_DEVICE = "(bpf)"
#: behaviours that need a VRF device (absent on kernels without VRF support)
NEEDS_VRF = (Behavior.END_DT4, Behavior.END_DT46)


def metric(version: int) -> int:
    return V4_METRIC if version == 4 else V6_METRIC


@dataclass(frozen=True, slots=True)
class Skipped:
    what: str
    reason: str


def learned_routes(state: NodeState, sessions: Iterable[Session]) -> list[Route]:
    """Routes learned from the ToRs, ECMP across every usable session that sent them (never
    one of the node's own blocks: those are unreachable here, `own_blocks`)."""
    tor_of = {str(p.address): p.name for p in state.peers}
    own = {str(b) for b in (*state.ipv4_blocks, *state.ipv6_blocks)}
    paths: dict[str, set[Nexthop]] = {}
    for s in sessions:
        if not s.usable:
            continue
        dev = state.uplink_device(tor_of.get(s.peer, s.name))
        for prefix, nh in s.received.items():
            if prefix in own:
                continue
            paths.setdefault(prefix, set()).add(Nexthop(nh, dev))
    out = []
    for prefix, nhs in sorted(paths.items()):
        net = ip_network(prefix)
        out.append(Route(net, sorted_nexthops(nhs), None, metric=metric(net.version),
                         kind="learned"))
    return out


def own_blocks(state: NodeState) -> list[Route]:
    """An unreachable route of ours for each of the node's pod blocks.

    The ToRs send the whole block here; without a route for it, a packet to an address no pod
    holds follows the node's default back to a ToR, which sends it here again, until its TTL
    runs out. The unreachable route answers it with ICMP unreachable at once. The CNI plugin's
    host routes (/32, /128, its own protocol) are longer, so they win for every live pod.
    """
    return [Route(b, (), None, metric=metric(b.version), kind=UNREACHABLE)
            for b in (*state.ipv4_blocks, *state.ipv6_blocks)]


def srv6_routes(state: NodeState, *, vrf: bool, encap_device: str | None
                ) -> tuple[list[Route], list[Skipped]]:
    """seg6 encapsulation routes and seg6local SIDs the node state asks for."""
    out: list[Route] = []
    skipped: list[Skipped] = []
    if not state.srv6_enabled:
        return out, skipped
    for sid in state.local_sids:
        local = _seg6local(sid.behavior)
        if sid.behavior in NEEDS_VRF and not vrf:
            skipped.append(Skipped(f"SID {sid.sid} ({sid.behavior.value})",
                                   "missing kernel feature: vrf"))
            continue
        if local is None:
            skipped.append(Skipped(f"SID {sid.sid} ({sid.behavior.value})",
                                   "behaviour not supported by the speaker"))
            continue
        out.append(Route(ip_network(f"{sid.sid}/128"), (Nexthop(None, SID_DEVICE),), local,
                         metric=V6_METRIC, kind="sid"))
    for er in state.encap_routes:
        if encap_device is None:
            skipped.append(Skipped(f"encap route {er.prefix}", "no uplink interface is up"))
            continue
        out.append(Route(er.prefix, (Nexthop(None, encap_device),),
                         Seg6Encap(state.encap_mode, er.segments),
                         metric=metric(er.prefix.version), kind="encap"))
    return out, skipped


def _seg6local(b: Behavior) -> Seg6Local | None:
    if b is Behavior.END:
        return Seg6Local("End")
    if b is Behavior.END_DX4:
        # nh4 0.0.0.0: look the inner destination up in the main table (DT4 without a VRF)
        return Seg6Local("End.DX4", nh4=IPv4Address(0))
    if b is Behavior.END_DX6:
        return Seg6Local("End.DX6", nh6=IPv6Address(0))
    if b is Behavior.END_DT6:
        return Seg6Local("End.DT6", table=254)  # legacy mode: table, no VRF device
    if b is Behavior.END_DT4:
        return Seg6Local("End.DT4", vrf_table=254)
    if b is Behavior.END_DT46:
        return Seg6Local("End.DT46", vrf_table=254)
    return None


def hold_learned(desired: list[Route], actual: Iterable[Route]) -> list[Route]:
    """While sessions are (re)starting, keep every learned path we already have.

    After a restart the kernel still holds the ECMP routes of the previous run; sessions are not
    yet up, so `desired` is still empty or partial. Deleting now would drop traffic (graceful
    restart is about exactly this), so learned paths are the union of both until settled.
    """
    by_key = {r.key: r for r in desired}
    for r in actual:
        if r.kind != "learned":
            continue
        have = by_key.get(r.key)
        if have is None:
            by_key[r.key] = r
        else:
            merged: dict[str | None, Nexthop] = {}
            for n in sorted_nexthops({*have.nexthops, *r.nexthops}):
                merged.setdefault(n.gateway, n)
            by_key[r.key] = Route(have.dst, sorted_nexthops(merged.values()), None, have.table,
                                  have.metric, "learned")
    return sorted(by_key.values(), key=lambda r: r.key)


def speaker_owned(actual: Iterable[Route]) -> list[Route]:
    """The speaker's routes among `actual` (the dump of its protocol): ownership by the route.

    The CNI plugin gives the pods' host routes a protocol of their own
    (flatroute.CNI_ROUTE_PROTOCOL), so the speaker's dump never returns them. Plugins before
    that used the speaker's protocol; their routes run through a pod's host veth (`flr` + 12 hex
    digits, `is_pod_veth`), a device the speaker never routes through, and so any route with a
    path over one is the plugin's, never the speaker's to replace or delete. The node's pod
    blocks play no part: a block leaving the node state leaves its running pods' routes alone.
    """
    return [r for r in actual
            if not any(nh.ifname is not None and is_pod_veth(nh.ifname) for nh in r.nexthops)]


def diff(desired: Iterable[Route], actual: Iterable[Route]) -> list[Op]:
    """Ops turning `actual` (ours only) into `desired`: add new, replace changed, delete gone."""
    want = {r.key: r for r in desired}
    have = {r.key: r for r in actual}
    ops: list[Op] = []
    for key, r in have.items():
        if key not in want:
            ops.append(Op("delete", r))
    for key, r in want.items():
        cur = have.get(key)
        if cur is None:
            ops.append(Op("add", r))
        elif not r.same_as(cur):
            if (r.encap is None) != (cur.encap is None):
                ops += [Op("delete", cur), Op("add", r)]
            else:
                ops.append(Op("replace", r))
    return ops
