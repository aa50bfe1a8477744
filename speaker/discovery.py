"""Unnumbered uplinks: find each ToR's link-local address, advertise ourselves, resolve peers.

The ToR resolves its interface peer from our router advertisements (without them it refuses our
connections), so we advertise on every unnumbered uplink every ADVERTISE_EVERY seconds. The
ToR's address is learned from its advertisement: solicited while unknown, and again when its
session stays down. What is still unknown leaves only that peer out (`unnumbered.resolve` says
why); the other sessions are not held back.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv6Address
from typing import Any, Protocol

from flatroute.errors import AdapterError
from flatroute.nodestate import NodeState
from speaker import ndisc, unnumbered
from speaker.netlink import KernelAdapter
from speaker.sessions import Session

#: how long to wait for a router advertisement, and how often to look again while the ToR's
#: link-local address is unknown or its session stays down
DISCOVERY_WAIT = 1.0
DISCOVERY_RETRY = 10.0
#: how often we advertise ourselves on unnumbered uplinks (FRR's ToR side: every 10 s too)
ADVERTISE_EVERY = 10.0


class Ndisc(Protocol):
    """Router discovery on one link (`speaker.ndisc`; a fake in unit tests)."""

    def advertise(self, interface: str) -> bool: ...
    def find_router(self, interface: str, timeout: float = 1.0) -> IPv6Address | None: ...


class RealNdisc:
    def advertise(self, interface: str) -> bool:
        return ndisc.advertise(interface)

    def find_router(self, interface: str, timeout: float = 1.0) -> IPv6Address | None:
        return ndisc.find_router(interface, timeout)


class Discovery:
    def __init__(self, nd: Ndisc, kernel: KernelAdapter, log: Any) -> None:
        self.nd = nd
        self.kernel = kernel
        self.log = log
        self.links: dict[str, unnumbered.LinkAddresses] = {}
        self.discovered_at: dict[str, float] = {}
        self.advertised_at: dict[str, float] = {}

    def resolve(self, st: NodeState, sessions: Mapping[str, Session], *, now: float,
                wall: float) -> tuple[NodeState, list[str]]:
        """Address-less peers (unnumbered uplinks) as link-local sessions, where known."""
        devs = unnumbered.unnumbered_uplinks(st)
        if not devs:
            return st, []
        errors: list[str] = []
        for dev in devs:
            if now - self.advertised_at.get(dev, -ADVERTISE_EVERY) >= ADVERTISE_EVERY:
                try:
                    if self.nd.advertise(dev):
                        self.advertised_at[dev] = now
                except AdapterError as exc:
                    errors.append(str(exc))
            router = self._router(st, dev, sessions, now=now, wall=wall, errors=errors)
            self.links[dev] = unnumbered.LinkAddresses(router, self.kernel.link_local(dev))
        resolved, problems = unnumbered.resolve(st, self.links)
        return resolved, errors + problems

    def _router(self, st: NodeState, dev: str, sessions: Mapping[str, Session], *,
                now: float, wall: float, errors: list[str]) -> IPv6Address | None:
        known = self.links.get(dev)
        router = known.router if known is not None else None
        session = sessions.get(str(router))
        lost = session is not None and session.state != "established" \
            and wall - session.since > max(st.bgp.hold_time, DISCOVERY_RETRY)
        if (router is None or lost) \
                and now - self.discovered_at.get(dev, -DISCOVERY_RETRY) >= DISCOVERY_RETRY:
            self.discovered_at[dev] = now
            try:
                found = self.nd.find_router(dev, DISCOVERY_WAIT)
            except AdapterError as exc:
                errors.append(str(exc))
                found = None
            if found is not None and found != router:
                self.log.info("tor_link_local_found", uplink=dev, address=str(found),
                              previous=str(router) if router else None)
                router = found
        return router
