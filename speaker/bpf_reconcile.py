"""The eBPF SRv6 datapath reconciled: map entries and tc attachments to match the route model.

Level-triggered like the kernel routes: the planned SRv6 routes become map entries and
attachments (`speaker.srv6_bpf`, pure), the adapter lists what is pinned and attached, and only
the difference is written. Drained, switched to the kernel datapath or SRv6 off, every pin and
filter of ours goes. The adapter is behind `BpfAdapter` (an in-memory fake in unit tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from ipaddress import IPv6Network
from typing import Any, Protocol

from flatroute.errors import AdapterError
from flatroute.fabric.naming import is_pod_veth
from flatroute.nodestate import NodeState
from speaker import srv6_bpf
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry
from speaker.metrics import Metrics
from speaker.routes import Route


class BpfAdapter(Protocol):
    """speaker.bpf.datapath.BpfDatapath, as the agent uses it (a fake in unit tests)."""

    def load(self) -> None: ...
    def attach(self, ifname: str, prog: str) -> bool: ...
    def attached(self) -> dict[str, str]: ...
    def detach(self, ifname: str) -> None: ...
    def list_encap(self) -> list[EncapEntry]: ...
    def list_sids(self) -> list[SidEntry]: ...
    def list_locators(self) -> list[LocatorEntry]: ...
    def apply(self, *, put: Sequence[srv6_bpf.Entry] = (),
              delete: Sequence[srv6_bpf.Entry] = ()) -> list[tuple[object, str]]: ...
    def counters(self) -> dict[str, int]: ...
    def remove(self) -> None: ...


def real_bpf(pin_dir: str) -> BpfAdapter:
    from speaker.bpf.datapath import BpfDatapath

    return BpfDatapath(pin_dir)


def list_links() -> list[str]:
    """Interface names of this network namespace (sysfs: `ip netns exec` remounts it)."""
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


class BpfSync:
    """Owns the eBPF datapath adapter (made on first use) and what the status says of it."""

    def __init__(self, pin_dir: str, metrics: Metrics, node: str, log: Any, *,
                 factory: Callable[[str], BpfAdapter] = real_bpf,
                 links: Callable[[], list[str]] = list_links,
                 exists: Callable[[str], bool] = os.path.exists) -> None:
        self.pin_dir = pin_dir
        self.metrics = metrics
        self.node = node
        self.log = log
        self.factory = factory
        self.links = links
        self.exists = exists
        self.adapter: BpfAdapter | None = None  # the eBPF datapath, once it was used
        self.report: dict[str, Any] | None = None

    def reconcile(self, st: NodeState, routes: list[Route]) -> list[str]:
        """Maps and attachments to match the planned SRv6 routes (level-triggered, ours only)."""
        try:
            if self.adapter is None:
                self.adapter = self.factory(self.pin_dir)
            dp = self.adapter
            dp.load()
            uplinks = [st.uplink_device(u.tor) for u in st.uplinks]
            present = self.links()
            pods = [n for n in present if is_pod_veth(n)]
            loc = st.locator if isinstance(st.locator, IPv6Network) else None
            want, problems = srv6_bpf.desired(routes, source=st.source_address,
                                              locator=loc, uplinks=uplinks,
                                              pod_veths=pods)
            have: list[srv6_bpf.Entry] = [*dp.list_encap(), *dp.list_sids(),
                                          *dp.list_locators()]
            put, delete = srv6_bpf.diff(want.entries, have)
            failures = dp.apply(put=put, delete=delete) if put or delete else []
            attached = dp.attached()
            attach, detach = _attach(dp, want.attach, attached, present)
            if put or delete or attach or detach:
                self.log.info("bpf_datapath_changed", put=len(put), deleted=len(delete),
                              attached=[d for d, _ in attach], detached=detach,
                              failed=len(failures))
            # what is in force now, from what was there and what was done (no second dump)
            attached = {d: p for d, p in {**attached, **dict(attach)}.items() if d not in detach}
            now = srv6_bpf.after(have, put, delete, [e for e, _ in failures])
            counters = dp.counters()
        except AdapterError as exc:
            self.report = {"pinDir": self.pin_dir, "error": str(exc)}
            return [f"eBPF SRv6 datapath: {exc}"]
        self._publish(srv6_bpf.counts(now), attached, counters)
        missing = sorted(d for d in want.attach if d not in present)
        errors = [f"eBPF SRv6: {p}" for p in problems]
        errors += [f"eBPF SRv6 map entry {e}: {why}" for e, why in failures]
        errors += [f"eBPF SRv6: uplink {d} not found" for d in missing if d in uplinks]
        return errors

    def _publish(self, ents: dict[str, int], attached: dict[str, str],
                 counters: dict[str, int]) -> None:
        self.report = {"pinDir": self.pin_dir, "entries": ents,
                       "attached": attached, "counters": counters}
        for name, n in ents.items():
            self.metrics.bpf_entries.labels(self.node, name).set(n)
        for name, n in counters.items():
            self.metrics.bpf_packets.labels(self.node, name).set(n)

    def remove(self) -> list[str]:
        """Drained, switched to the kernel datapath or SRv6 off: every pin and filter goes."""
        if self.adapter is None:
            if not self.exists(self.pin_dir):
                return []
            try:
                self.adapter = self.factory(self.pin_dir)
            except AdapterError as exc:
                return [f"eBPF SRv6 datapath: {exc}"]
        try:
            self.adapter.remove()
        except AdapterError as exc:
            return [f"eBPF SRv6 datapath: cannot remove: {exc}"]
        self.log.info("bpf_datapath_removed", pin_dir=self.pin_dir)
        self.adapter = None
        self.report = None
        return []


def _attach(dp: BpfAdapter, want: dict[str, str], attached: dict[str, str],
            present: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    attach, detach = srv6_bpf.attach_diff(want, attached, present)
    for dev, prog in attach:
        dp.attach(dev, prog)
    for dev in detach:
        dp.detach(dev)
    return attach, detach
