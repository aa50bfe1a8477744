"""Address, ASN and locator allocation over integer address space.

Allocation is first-free-from-the-start over each pool, after every address the ledger or a
pin already holds is claimed; so what was handed out is never handed out again, and adding or
removing a node never moves another node's allocation.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def _v6_text(value: int) -> str:
    # The C formatter: RFC 5952 text like ipaddress's str(), at a tenth of the cost. It
    # writes IPv4-compatible and -mapped addresses with a dotted quad; leave those to Python.
    if value >> 32 in (0, 0xFFFF):
        return str(ipaddress.IPv6Address(value))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def net_text(net: Net) -> str:
    """The ledger's text for an allocated prefix, remembered for parse_net."""
    v6 = net.version == 6
    text = f"{_v6_text(int(net.network_address))}/{net.prefixlen}" if v6 else str(net)
    if len(_NETS) < 1_000_000:
        _NETS[text] = net
    return text


_ADDRS: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}


def parse_addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = _ADDRS.get(text)
    if addr is None:
        addr = ipaddress.ip_address(text)
        if len(_ADDRS) < 1_000_000:
            _ADDRS[text] = addr
    return addr


def addr_text(value: int, version: int) -> str:
    """The ledger's text for an allocated host address, remembered for parse_addr."""
    addr = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    text = str(addr) if version == 4 else _v6_text(value)
    _ADDRS[text] = addr
    return text


def iface(text: str, prefixlen: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An interface (address/prefix) from ledger text; built from integers, which is fast."""
    addr = parse_addr(text)
    if addr.version == 4:
        return ipaddress.IPv4Interface((int(addr), prefixlen))
    return ipaddress.IPv6Interface((int(addr), prefixlen))


class BlockPool:
    """Fixed-size blocks carved from an ordered list of pools of one address family."""

    def __init__(self, pools: Iterable[Net], prefixlen: int, *, skip_first: int = 0) -> None:
        self.pools = tuple(pools)
        self.prefixlen = prefixlen
        self._ranges = tuple((p.version, int(p.network_address), int(p.broadcast_address))
                             for p in self.pools)
        self.used: set[int] = set()
        self.skip_first = skip_first
        self._cursor = 0  # index into the virtual concatenation of all pools' blocks

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
        for index, start, version in self._blocks_from(self._cursor):
            if index < self.skip_first:
                continue
            if start not in self.used:
                self.used.add(start)
                self._cursor = index + 1
                cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
                return cls((start, self.prefixlen))
        self._cursor = 1 << 62
        return None

    def _blocks_from(self, cursor: int) -> Iterator[tuple[int, int, int]]:
        index = 0
        for pool in self.pools:
            count = 1 << (self.prefixlen - pool.prefixlen)
            if index + count <= cursor:
                index += count
                continue
            step = 1 << (pool.max_prefixlen - self.prefixlen)
            base = int(pool.network_address)
            first = max(0, cursor - index)
            for i in range(first, count):
                yield index + i, base + i * step, pool.version
            index += count


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
        self.used: set[int] = set(reserved)
        self.used.add(int(subnet.network_address))
        self._next = int(subnet.network_address) + 1
        if subnet.version == 4 and subnet.prefixlen < 31:
            self.used.add(int(subnet.broadcast_address))

    def claim(self, value: int) -> bool:
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def allocate(self) -> int | None:
        last = int(self.subnet.broadcast_address)
        value = self._next
        while value <= last:
            if value not in self.used:
                self.used.add(value)
                self._next = value + 1
                return value
            value += 1
        self._next = value
        return None
