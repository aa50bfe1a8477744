"""The kernel's routes of ours, reconciled: learned ECMP routes (with paths held after a
restart) and, on the kernel datapath, the SRv6 routes; then what is installed, counted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flatroute.nodestate import NodeState
from speaker import reconcile
from speaker.netlink import Features, KernelAdapter
from speaker.routes import UNREACHABLE, Route, sorted_nexthops
from speaker.sessions import Session


def srv6_plan(kernel: KernelAdapter, st: NodeState, feats: Features, datapath: str | None
              ) -> tuple[list[Route], list[reconcile.Skipped]]:
    """One route model for both datapaths; the eBPF programs look up in the main table
    themselves, so End.DT4/DT46 need no VRF there, and encapsulation no uplink device."""
    encap_dev = next((d for u in st.uplinks if kernel.link_up(d := st.uplink_device(u.tor))),
                     None)
    on_bpf = datapath == "bpf"
    return reconcile.srv6_routes(
        st, vrf=feats.vrf or on_bpf,
        encap_device=(encap_dev or reconcile.BPF_ENCAP_DEVICE) if on_bpf else encap_dev)


def counts(routes: Iterable[Route]) -> dict[str, int]:
    rs = list(routes)
    return {"routes": sum(r.kind == "learned" for r in rs),
            "encap": sum(r.kind == "encap" for r in rs),
            "sids": sum(r.kind == "sid" for r in rs),
            "unreachable": sum(r.kind == UNREACHABLE for r in rs)}


def sync(kernel: KernelAdapter, st: NodeState, sessions: list[Session], srv6: list[Route],
         held: set[str], log: Any) -> tuple[list[str], dict[str, int]]:
    """Diff and apply; returns (errors, counts of what is installed)."""
    errors: list[str] = []
    learned = reconcile.learned_routes(st, sessions)
    actual = reconcile.speaker_owned(kernel.list_owned())
    if held:
        learned = reconcile.hold_learned(
            learned, [_only_devices(r, held) for r in actual if r.kind == "learned"])
        learned = [r for r in learned if r.nexthops]
    ops = reconcile.diff([*learned, *srv6, *reconcile.own_blocks(st)], actual)
    if not ops:
        return errors, counts(actual)
    res = kernel.apply(ops)
    log.info("kernel_changed", ops=len(ops), applied=res.applied, failed=len(res.failures))
    errors += [f"route {r.dst}: {_named(r, why)}" for r, why in res.failures]
    return errors, counts(reconcile.speaker_owned(kernel.list_owned()))


def _named(r: Route, why: str) -> str:
    """A missing interface says which one was looked for."""
    devs = sorted({n.ifname for n in r.nexthops if n.ifname})
    if why == "interface not found" and devs:
        return f"interface {', '.join(devs)} not found in this network namespace"
    return why


def _only_devices(r: Route, devices: set[str]) -> Route:
    return Route(r.dst, sorted_nexthops(n for n in r.nexthops if n.ifname in devices),
                 r.encap, r.table, r.metric, r.kind)
