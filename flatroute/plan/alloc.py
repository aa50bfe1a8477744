"""Address, ASN and locator allocation over integer address space.

Allocation is first-free-from-the-start over each pool, after every address the ledger or a
pin already holds is claimed; so what was handed out is never handed out again, and adding or
removing a node never moves another node's allocation.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

Net = IPv4Network | IPv6Network
Addr = IPv4Address | IPv6Address
Iface = IPv4Interface | IPv6Interface


# -- building ipaddress objects from integers ------------------------------------------------
# A cold plan of 5,000 nodes builds some 60,000 addresses, networks and interfaces from
# integers already known to be in range. ipaddress's constructors parse and check their
# argument every time (2-3 us for a network or an interface: a third of a cold plan), and each
# interface builds a network of its own, equal for every node on a ToR. The builders below set
# the attributes the constructors set, directly. At import, _layout_is_known() compares what
# they build with what the constructors build: should a Python release lay the objects out
# differently, every builder falls back to the constructor.

_new = object.__new__


def _state(obj: object) -> dict[str, Any]:
    """Every attribute an ipaddress object carries: its slots and its __dict__."""
    state = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
    return state


def _fast_address(value: int, version: int) -> Addr:
    if version == 4:
        a4 = _new(IPv4Address)
        a4._ip = value  # type: ignore[attr-defined]
        return a4
    a6 = _new(IPv6Address)
    a6._ip = value  # type: ignore[attr-defined]
    a6._scope_id = None  # type: ignore[attr-defined]
    return a6


_NETMASKS: dict[tuple[int, int], Addr] = {}


def _netmask(version: int, prefixlen: int) -> Addr:
    mask = _NETMASKS.get((version, prefixlen))
    if mask is None:
        cls = IPv4Network if version == 4 else IPv6Network
        mask = _NETMASKS[(version, prefixlen)] = cls((0, prefixlen)).netmask
    return mask


def _fast_network(start: int, prefixlen: int, version: int) -> Net:
    net: Any = _new(IPv4Network if version == 4 else IPv6Network)
    net.network_address = _fast_address(start, version)
    net.netmask = _netmask(version, prefixlen)
    net._prefixlen = prefixlen
    return net  # type: ignore[no-any-return]


def _fast_interface(value: int, network: Net) -> Iface:
    made: Any = _new(IPv4Interface if network.version == 4 else IPv6Interface)
    made._ip = value
    if network.version == 6:
        made._scope_id = None
    made.network = network
    made.netmask = network.netmask
    made._prefixlen = network.prefixlen
    return made  # type: ignore[no-any-return]


def _layout_is_known() -> bool:
    """Whether the builders make exactly what ipaddress's constructors make."""
    try:
        for version, value, prefixlen in ((4, 0x0A0000C1, 26), (6, 0xFD00 << 112 | 0x41, 122)):
            cls_n, cls_i = ((IPv4Network, IPv4Interface) if version == 4
                            else (IPv6Network, IPv6Interface))
            net = cls_n((value, prefixlen), strict=False)
            start = int(net.network_address)
            pairs: tuple[tuple[object, object], ...] = (
                (_fast_address(value, version),
                 IPv4Address(value) if version == 4 else IPv6Address(value)),
                (_fast_network(start, prefixlen, version), cls_n((start, prefixlen))),
                (_fast_interface(value, net), cls_i((value, prefixlen))),
            )
            for fast, made in pairs:
                if type(fast) is not type(made) or _state(fast) != _state(made):
                    return False
    except Exception:  # any surprise means: use the constructors
        return False
    return True


#: whether the builders below may bypass ipaddress's constructors
FAST = _layout_is_known()


def address(value: int, version: int) -> Addr:
    """ipaddress.ip_address(value) for a value known to fit its family."""
    if FAST:
        return _fast_address(value, version)
    return IPv4Address(value) if version == 4 else IPv6Address(value)


def network(start: int, prefixlen: int, version: int) -> Net:
    """The network (start, prefixlen), for a start known to be aligned to the prefix."""
    # /31 and /32 (/127, /128) networks carry a per-object `hosts`: those stay with ipaddress.
    if FAST and prefixlen < (31 if version == 4 else 127):
        return _fast_network(start, prefixlen, version)
    return IPv4Network((start, prefixlen)) if version == 4 else IPv6Network((start, prefixlen))


# -- ledger text -------------------------------------------------------------------------------
_NETS: dict[str, Net] = {}


def parse_net(text: str) -> Net:
    """Parse (and remember) a prefix from the ledger; raises ValueError if malformed.

    Planning the same fabric again (the controller's loop) then costs no parsing at all.
    """
    net = _NETS.get(text)
    if net is None:
        net = ipaddress.ip_network(text)
        if len(_NETS) < 1_000_000:
            _NETS[text] = net
    return net


def _v4_text(value: int) -> str:
    # The C formatter writes the same dotted quad as ipaddress's str(), at a quarter the cost.
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def v6_text(value: int) -> str:
    # The C formatter: RFC 5952 text like ipaddress's str(), at a tenth of the cost. It
    # writes IPv4-compatible and -mapped addresses with a dotted quad; leave those to Python.
    if value >> 32 in (0, 0xFFFF):
        return str(ipaddress.IPv6Address(value))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def net_text(net: Net) -> str:
    """The ledger's text for an allocated prefix, remembered for parse_net."""
    start = int(net.network_address)
    text = (f"{_v4_text(start)}/{net.prefixlen}" if net.version == 4
            else f"{v6_text(start)}/{net.prefixlen}")
    if len(_NETS) < 1_000_000:
        _NETS[text] = net
    return text


_ADDRS: dict[str, Addr] = {}


def parse_addr(text: str) -> Addr:
    addr = _ADDRS.get(text)
    if addr is None:
        addr = ipaddress.ip_address(text)
        if len(_ADDRS) < 1_000_000:
            _ADDRS[text] = addr
    return addr


def addr_text(value: int, version: int) -> str:
    """The ledger's text for an allocated host address, remembered for parse_addr."""
    text = _v4_text(value) if version == 4 else v6_text(value)
    _ADDRS[text] = address(value, version)
    return text


def iface(text: str, prefixlen: int) -> Iface:
    """An interface (address/prefix) from ledger text, built by ipaddress."""
    addr = parse_addr(text)
    if addr.version == 4:
        return IPv4Interface((int(addr), prefixlen))
    return IPv6Interface((int(addr), prefixlen))


# -- pools -------------------------------------------------------------------------------------
class BlockPool:
    """Fixed-size blocks carved from an ordered list of pools of one address family."""

    def __init__(self, pools: Iterable[Net], prefixlen: int, *, skip_first: int = 0) -> None:
        self.pools = tuple(pools)
        self.prefixlen = prefixlen
        self.version = self.pools[0].version if self.pools else 0
        self._ranges = tuple((p.version, int(p.network_address), int(p.broadcast_address))
                             for p in self.pools)
        self.used: set[int] = set()
        self.skip_first = skip_first
        self._cursor = 0  # index into the virtual concatenation of all pools' blocks
        # (index of its first block, block count, first block's start, step) per pool;
        # worked out on the first allocation (a pool that never allocates, like the locator
        # pool with SRv6 off, may have a block size that does not fit it).
        self._layout: tuple[tuple[int, int, int, int], ...] | None = None

    def contains(self, net: Net) -> bool:
        """A block of this pool's size inside one of its pools (integer arithmetic: the
        ipaddress properties subnet_of needs cost more than the rest of a re-plan)."""
        if net.prefixlen != self.prefixlen:
            return False
        start = int(net.network_address)
        return any(net.version == v and lo <= start <= hi for v, lo, hi in self._ranges)

    def claim(self, net: Net) -> bool:
        """Mark a block as taken; return False if it already was."""
        key = int(net.network_address)
        if key in self.used:
            return False
        self.used.add(key)
        return True

    def allocate(self) -> Net | None:
        """The first free block, or None when every pool is full."""
        start = self._take()
        if start is None:
            return None
        return network(start, self.prefixlen, self.version)

    def allocate_text(self) -> str | None:
        """The first free block as ledger text (remembered for parse_net), or None when
        every pool is full. Written from the block's integer: no properties to read back."""
        start = self._take()
        if start is None:
            return None
        text = f"{_v4_text(start) if self.version == 4 else v6_text(start)}/{self.prefixlen}"
        if len(_NETS) < 1_000_000:
            _NETS[text] = network(start, self.prefixlen, self.version)
        return text

    def _take(self) -> int | None:
        """Take the first free block; its start, or None when every pool is full."""
        if self._layout is None:
            self._layout = self._lay_out()
        cursor = max(self._cursor, self.skip_first)
        used = self.used
        for first, count, base, step in self._layout:
            if first + count <= cursor:
                continue
            skip = max(0, cursor - first)
            start = base + skip * step
            for index in range(first + skip, first + count):
                if start not in used:
                    used.add(start)
                    self._cursor = index + 1
                    return start
                start += step
        self._cursor = 1 << 62
        return None

    def _lay_out(self) -> tuple[tuple[int, int, int, int], ...]:
        out = []
        index = 0
        for pool in self.pools:
            count = 1 << (self.prefixlen - pool.prefixlen)
            step = 1 << (pool.max_prefixlen - self.prefixlen)
            out.append((index, count, int(pool.network_address), step))
            index += count
        return tuple(out)


class NumberPool:
    """Integers from an inclusive range (ASNs)."""

    def __init__(self, start: int, end: int, reserved: Iterable[int] = ()) -> None:
        self.start, self.end = start, end
        self.used: set[int] = set(reserved)
        self._next = start

    def claim(self, value: int) -> bool:
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def allocate(self) -> int | None:
        value = self._next
        while value <= self.end:
            if value not in self.used:
                self.used.add(value)
                self._next = value + 1
                return value
            value += 1
        self._next = value
        return None


class HostPool:
    """Host addresses of one subnet (node uplink addresses on a ToR's server subnet)."""

    def __init__(self, subnet: Net, reserved: Iterable[int] = ()) -> None:
        self.subnet = subnet
        self.version = subnet.version
        self._iface_cls = IPv4Interface if subnet.version == 4 else IPv6Interface
        self._netmask = subnet.netmask
        self._prefixlen = subnet.prefixlen
        self.used: set[int] = set(reserved)
        self._first = int(subnet.network_address)
        self._last = int(subnet.broadcast_address)
        self.used.add(self._first)
        self._next = self._first + 1
        if subnet.version == 4 and subnet.prefixlen < 31:
            self.used.add(self._last)

    def claim(self, value: int) -> bool:
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def holds(self, value: int) -> bool:
        """Whether an address (of this subnet's family) is on the subnet: `in`, in integers."""
        return self._first <= value <= self._last

    def allocate(self) -> int | None:
        last = self._last
        value = self._next
        while value <= last:
            if value not in self.used:
                self.used.add(value)
                self._next = value + 1
                return value
            value += 1
        self._next = value
        return None

    def interface(self, text: str) -> tuple[Iface, Addr]:
        """A node's interface on this subnet from ledger text, and its address.

        The interface shares this pool's network object and the address is the one
        parse_addr remembers: Interface.ip would build a new address on every access.
        """
        addr = parse_addr(text)
        value = int(addr)
        # A scope (%zone) or an address off the subnet (a hand-edited ledger): ipaddress.
        if not (FAST and addr.version == self.version and self._first <= value <= self._last
                and "%" not in text):
            made = iface(text, self._prefixlen)
            return made, made.ip
        # _fast_interface, with what it would read from the subnet read once per pool
        fast: Any = _new(self._iface_cls)
        fast._ip = value
        if self.version == 6:
            fast._scope_id = None
        fast.network = self.subnet
        fast.netmask = self._netmask
        fast._prefixlen = self._prefixlen
        return fast, addr
