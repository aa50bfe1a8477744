"""An agent wired to fakes, in a temporary state directory: `h.write(spec)` then `h.once()`."""

from __future__ import annotations

import copy
import json
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from flatroute import nodestate
from flatroute.fabric.naming import ifname
from flatroute.speaker_status import SpeakerStatus
from speaker.agent import Agent, Options
from speaker.exabgp_json import EorEvent, StateEvent, UpdateEvent
from speaker.reconcile import metric
from speaker.routes import Nexthop, Route, sorted_nexthops
from tests.unit.speaker.fakes import (
    FakeBfdd,
    FakeBpf,
    FakeClock,
    FakeExaBGP,
    FakeKernel,
    FakeNdisc,
)

A, B = "10.1.1.1", "10.1.2.1"  # the two ToRs' addresses
DEV_A, DEV_B = ifname("tor-a"), ifname("tor-b")

SPEC: dict[str, Any] = {
    "node": "n1", "asn": 64512, "routerId": "10.1.1.11", "mtu": 1500,
    "bgp": {"holdTime": 9, "gracefulRestart": 120, "communities": []},
    "uplinks": [{"tor": "tor-a", "ipv4": "10.1.1.11/24"},
                {"tor": "tor-b", "ipv4": "10.1.2.11/24"}],
    "peers": [{"name": "tor-a", "asn": 65001, "address": A, "localAddress": "10.1.1.11",
               "families": ["ipv4"]},
              {"name": "tor-b", "asn": 65002, "address": B, "localAddress": "10.1.2.11",
               "families": ["ipv4"]}],
    "podBlocks": {"ipv4": ["10.244.0.0/26"], "ipv6": []},
    "srv6": {"enabled": False},
}


def spec(**over: Any) -> dict[str, Any]:
    s = copy.deepcopy(SPEC)
    s.update(over)
    return s


def default_via(*paths: tuple[str, str]) -> Route:
    net = ip_network("0.0.0.0/0")
    return Route(net, sorted_nexthops(Nexthop(gw, dev) for gw, dev in paths), None,
                 metric=metric(4), kind="learned")


class Harness:
    def __init__(self, tmp: Path, *, kernel: FakeKernel | None = None, connect: bool = True,
                 links: list[str] | None = None, ndisc: FakeNdisc | None = None) -> None:
        self.dir = tmp
        (tmp / "nodes").mkdir(exist_ok=True)
        self.clock = FakeClock()
        self.kernel = kernel or FakeKernel(links_up=[DEV_A, DEV_B])
        self.bfdd = FakeBfdd()
        self.bpf = FakeBpf()
        self.ndisc = ndisc or FakeNdisc()
        self.exabgp: FakeExaBGP | None = None
        self.links = links if links is not None else [DEV_A, DEV_B, "lo"]
        #: what a connect to each peer's BGP port finds (no real connect from unit tests)
        self.tcp: dict[str, str] = {}
        self.probed: list[list[tuple[str, str | None]]] = []

        def make_exabgp(paths: Any, on_event: Any, log: Any) -> FakeExaBGP:
            self.exabgp = FakeExaBGP(paths, on_event, log, connect=connect)
            return self.exabgp

        self.agent = Agent(
            Options(node="n1", state_dir=str(tmp), run_dir=str(tmp / "run"),
                    bpf_dir=str(tmp / "bpf")),
            kernel=self.kernel, bpf=lambda _: self.bpf, exabgp=make_exabgp, bfdd=self.bfdd,
            ndisc=self.ndisc, clock=self.clock, links=lambda: list(self.links),
            tcp_probe=self.probe)
        assert self.exabgp is not None
        self.bgp: FakeExaBGP = self.exabgp

    def probe(self, targets: Any) -> dict[str, str]:
        self.probed.append(list(targets))
        return {peer: self.tcp.get(peer, "timeout") for peer, _ in targets}

    def write(self, s: dict[str, Any] | str) -> None:
        text = s if isinstance(s, str) else nodestate.to_json(nodestate.from_spec(s))
        (self.dir / "nodes" / "n1.json").write_text(text)

    def once(self, advance: float = 0.0) -> SpeakerStatus:
        self.clock.advance(advance)
        self.agent.reconcile_once()
        return self.status()

    def status(self) -> SpeakerStatus:
        from flatroute import speaker_status as status

        return status.read(str(self.dir / "status" / "n1.json"))

    # -- what the ToRs do -----------------------------------------------------------------------
    def up(self, peer: str, *, routes: dict[str, str] | None = None, eor: bool = True) -> None:
        self.bgp.emit(StateEvent(peer, "up"))
        if routes:
            self.bgp.emit(UpdateEvent(peer, tuple(routes.items()), ()))
        if eor:
            self.bgp.emit(EorEvent(peer, "ipv4 unicast"))

    def down(self, peer: str) -> None:
        self.bgp.emit(StateEvent(peer, "down", "hold timer expired"))

    def default(self) -> Route | None:
        return next((r for r in self.kernel.routes.values() if str(r.dst) == "0.0.0.0/0"),
                    None)


def doc(s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(nodestate.to_json(nodestate.from_spec(s)))
    return out

