"""The kernel adapter: the only place the speaker touches routes, links, sysctls and seg6 state.

Two paths behind one `Kernel` class:
- pyroute2 for the few, rich operations where its speed does not matter: seg6local SIDs, link
  state, the VRF feature probe.
- `speaker.rtnl` (stdlib struct-packed rtnetlink, batched, ACK-checked) for listing our routes and
  for writing plain, ECMP and seg6 encap routes in bulk (pyroute2 0.9 also cannot write
  `encap.red`): pyroute2 builds each message in Python (~0.5 ms a
  route, 1.5-2k routes/s) and lists 10,000 routes in ~1.5 s; the batch path does both in tens of
  milliseconds. See the module docstring of `speaker.rtnl`.

Ownership: every write carries ROUTE_PROTOCOL, and the only routes ever deleted or replaced are
ones the dump returned with that protocol. A route someone else owns at the same key makes our
`add` fail with EEXIST (it is never replaced), which the reconciler reports as a conflict.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Protocol

from flatroute import ROUTE_PROTOCOL
from flatroute.errors import AdapterError
from speaker.capabilities import Capabilities
from speaker.capabilities import probe as probe_capabilities
from speaker.routes import Route, Seg6Encap, Seg6Local
from speaker.rtnl import Op, Rtnl


@dataclass(frozen=True, slots=True)
class Features:
    """What this kernel can do, as the capability probe found it (speaker.capabilities); the
    status shows only what a node state needs of it (capabilities.needed_missing)."""

    caps: Capabilities = field(default_factory=lambda: Capabilities(()))

    @property
    def vrf(self) -> bool:
        return self.caps.vrf

    @classmethod
    def from_caps(cls, caps: Capabilities) -> Features:
        return cls(caps)


@dataclass(slots=True)
class ApplyResult:
    applied: int = 0
    failures: list[tuple[Route, str]] = field(default_factory=list)


class KernelAdapter(Protocol):
    def list_owned(self) -> list[Route]: ...
    def apply(self, ops: Sequence[Op]) -> ApplyResult: ...
    def link_up(self, name: str) -> bool: ...
    def ensure_up(self, name: str) -> None: ...
    def ensure_sid_device(self, name: str) -> None: ...
    def features(self) -> Features: ...
    def set_sysctl(self, key: str, value: str) -> str | None: ...
    def tunsrc(self) -> IPv6Address | None: ...
    def set_tunsrc(self, addr: IPv6Address) -> None: ...
    def link_local(self, name: str) -> IPv6Address | None: ...
    def addresses(self) -> dict[str, list[IPv4Interface | IPv6Interface]]: ...


#: IFA_F_TENTATIVE | IFA_F_DADFAILED: an address the kernel will not send from
_UNUSABLE = 0x40 | 0x08


def _describe(err: int) -> str:
    if err == errno.EEXIST:
        return "a route with this destination already exists and is not ours (left alone)"
    if err == errno.ENODEV:
        return "interface not found"
    if err == errno.ENETUNREACH:
        return "next hop not reachable"
    return os.strerror(err)


class Kernel:
    """The adapter for the network namespace this process runs in."""

    def __init__(self, protocol: int = ROUTE_PROTOCOL) -> None:
        self.protocol = protocol
        self._lock = threading.Lock()
        self._rtnl = Rtnl(protocol)
        self._ipr: Any = None
        self._features: Features | None = None

    def close(self) -> None:
        self._rtnl.close()
        if self._ipr is not None:
            self._ipr.close()

    def _pyroute2(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute  # imported late: ~350 ms, only needed here

            self._ipr = IPRoute()  # the current namespace: never IPRoute(netns=...)
        return self._ipr

    # -- routes ----------------------------------------------------------------------------
    def list_owned(self) -> list[Route]:
        with self._lock:
            try:
                return self._rtnl.dump()
            except OSError as exc:
                raise AdapterError(f"cannot list kernel routes: {exc}") from exc

    def apply(self, ops: Sequence[Op]) -> ApplyResult:
        """Apply route changes; plain routes in one batch, seg6 ones through pyroute2."""
        res = ApplyResult()
        plain = [op for op in ops if not isinstance(op.route.encap, Seg6Local)]
        rich = [op for op in ops if isinstance(op.route.encap, Seg6Local)]
        with self._lock:
            # Deletes first so a route changing kind (plain <-> encap) can be re-added.
            for op in [o for o in rich if o.action == "delete"]:
                self._apply_rich(op, res)
            try:
                failed = self._rtnl.apply(plain)
            except OSError as exc:
                raise AdapterError(f"netlink batch failed: {exc}") from exc
            res.applied += len(plain) - len(failed)
            res.failures += [(r, _describe(e)) for r, e in failed]
            for op in [o for o in rich if o.action != "delete"]:
                self._apply_rich(op, res)
        return res

    def _apply_rich(self, op: Op, res: ApplyResult) -> None:
        r = op.route
        ipr = self._pyroute2()
        kw: dict[str, Any] = {"dst": str(r.dst), "proto": self.protocol, "table": r.table}
        if r.metric:
            kw["priority"] = r.metric
        if op.action != "delete":
            dev = r.nexthops[0].ifname if r.nexthops else None
            idx = ipr.link_lookup(ifname=dev) if dev else []
            if not idx:
                res.failures.append((r, _describe(errno.ENODEV) + f": {dev}"))
                return
            kw["oif"] = idx[0]
            kw["encap"] = _encap_kwargs(r.encap)
        try:
            ipr.route({"add": "add", "replace": "replace", "delete": "del"}[op.action], **kw)
            res.applied += 1
        except Exception as exc:  # pyroute2's NetlinkError carries the errno in .code
            code = getattr(exc, "code", None)
            if op.action == "delete" and code == errno.ESRCH:
                res.applied += 1
                return
            res.failures.append((r, _describe(code) if isinstance(code, int) else str(exc)))

    # -- links, sysctls, seg6 ---------------------------------------------------------------
    def link_up(self, name: str) -> bool:
        try:
            with open(f"/sys/class/net/{name}/operstate", encoding="ascii") as fh:
                state = fh.read().strip()
            with open(f"/sys/class/net/{name}/flags", encoding="ascii") as fh:
                flags = int(fh.read().strip(), 16)
        except OSError:
            return False
        return bool(flags & 1) and state in ("up", "unknown")

    def ensure_up(self, name: str) -> None:
        with self._lock:
            ipr = self._pyroute2()
            idx = ipr.link_lookup(ifname=name)
            if not idx:
                raise AdapterError(f"interface {name} not found")
            ipr.link("set", index=idx[0], state="up")

    def ensure_sid_device(self, name: str) -> None:
        """An always-up, non-loopback device for seg6local SID routes (ours: created once).

        A dummy device where the kernel has them; else a veth pair whose peer `name`0 stays in
        this namespace (both ends up, so the carrier is on and never flaps with an uplink).
        """
        with self._lock:
            ipr = self._pyroute2()
            if not ipr.link_lookup(ifname=name):
                try:
                    ipr.link("add", ifname=name, kind="dummy")
                except Exception:  # no dummy driver here: fall back to a veth pair
                    ipr.link("add", ifname=name, kind="veth", peer=f"{name}0")
            for dev in (name, f"{name}0"):
                idx = ipr.link_lookup(ifname=dev)
                if idx:
                    ipr.link("set", index=idx[0], state="up")

    def features(self) -> Features:
        if self._features is None:
            self._features = self._probe()
        return self._features

    def _probe(self) -> Features:
        """Try every feature in a throw-away namespace (speaker.capabilities): no guessing."""
        return Features.from_caps(probe_capabilities())

    def set_sysctl(self, key: str, value: str) -> str | None:
        """Set net.* sysctl `key` (dotted); returns an error text or None."""
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, encoding="ascii") as fh:
                if fh.read().strip() == value:
                    return None
            with open(path, "w", encoding="ascii") as fh:
                fh.write(value)
        except OSError as exc:
            return f"{key}: {exc.strerror}"
        return None

    def tunsrc(self) -> IPv6Address | None:
        out = subprocess.run(["ip", "sr", "tunsrc", "show"], capture_output=True, text=True,
                             check=False, timeout=5)
        words = out.stdout.split()
        if "addr" in words and words.index("addr") + 1 < len(words):
            addr = IPv6Address(words[words.index("addr") + 1])
            return None if addr == IPv6Address("::") else addr
        return None

    def addresses(self) -> dict[str, list[IPv4Interface | IPv6Interface]]:
        """Every interface of this namespace and its addresses (uplinks are found by them)."""
        with self._lock:
            try:
                return self._rtnl.addresses()
            except OSError as exc:
                raise AdapterError(f"cannot list interface addresses: {exc}") from exc

    def link_local(self, name: str) -> IPv6Address | None:
        """The interface's usable IPv6 link-local address (not tentative, not failed DAD)."""
        with self._lock:
            ipr = self._pyroute2()
            idx = ipr.link_lookup(ifname=name)
            if not idx:
                return None
            try:
                addrs = ipr.get_addr(family=socket.AF_INET6, index=idx[0])
            except Exception:  # pyroute2 raises its own NetlinkError types
                return None
        for a in addrs:
            text = a.get_attr("IFA_ADDRESS")
            flags = a.get_attr("IFA_FLAGS") or a["flags"]
            if text and IPv6Address(text).is_link_local and not flags & _UNUSABLE:
                return IPv6Address(text)
        return None

    def set_tunsrc(self, addr: IPv6Address) -> None:
        # The SEG6 generic netlink family is not in pyroute2; iproute2 speaks it.
        out = subprocess.run(["ip", "sr", "tunsrc", "set", str(addr)], capture_output=True,
                             text=True, check=False, timeout=5)
        if out.returncode != 0:
            raise AdapterError(f"ip sr tunsrc set {addr}: {out.stderr.strip()}")


def _encap_kwargs(encap: Seg6Encap | Seg6Local | None) -> dict[str, Any]:
    if isinstance(encap, Seg6Encap):
        # pyroute2 copies `segs` into the SRH as given; the SRH lists segments last-first
        # (iproute2 reverses for you), so reverse the travel order here.
        return {"type": "seg6", "mode": encap.mode,
                "segs": [str(s) for s in reversed(encap.segments)]}
    if isinstance(encap, Seg6Local):
        kw: dict[str, Any] = {"type": "seg6local", "action": encap.action}
        if encap.nh4 is not None:
            kw["nh4"] = str(encap.nh4)
        if encap.nh6 is not None:
            kw["nh6"] = str(encap.nh6)
        if encap.table is not None:
            kw["table"] = encap.table
        if encap.vrf_table is not None:
            kw["vrf_table"] = encap.vrf_table
        return kw
    raise ValueError("not an encapsulated route")


def bulk_apply(kernel: KernelAdapter, ops: Iterable[Op]) -> ApplyResult:
    """Convenience for benchmarks: apply a generator of ops."""
    return kernel.apply(list(ops))
