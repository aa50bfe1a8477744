"""uSID (F3216) planning, pure: node-ID pools, uSIDs, containers, and a hop-by-hop walk.

A uSID is written here as the prefix it is matched with: block:ID::/48 (a node's or a
router's global uSID) or block:ID:FUNCTION::/64 (a local function after a node's ID, as uA).
A container is one IPv6 address: the block, then the uSIDs left to right, then zeros. A path
is a list of containers: the first goes in the destination address (H.Encaps.Red), the rest
in an SRH only when there are more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, summarize_address_range

from flatroute.fabric.model import USID_BITS, USID_BLOCK_LENGTH, USID_LOCATOR_LENGTH
from flatroute.plan.alloc import BlockPool
from flatroute.plan.model import Behavior

_TAIL = 128 - USID_BLOCK_LENGTH          # bits after the block: 96
SLOTS = _TAIL // USID_BITS                # uSIDs per container: 6
_TAIL_MASK = (1 << _TAIL) - 1
#: behaviours a uSID carries: the global uSID of a router, of a node (its decapsulation)
UN = Behavior.UN


def node_id_pool(block: IPv6Network, first: int, last: int) -> BlockPool:
    """The /48 uSID locators of `block` whose node IDs are in [first, last]."""
    base = int(block.network_address)
    shift = 128 - USID_LOCATOR_LENGTH
    lo = IPv6Address(base | (first << shift))
    hi = IPv6Address(base | (last << shift) | ((1 << shift) - 1))
    return BlockPool(tuple(summarize_address_range(lo, hi)), USID_LOCATOR_LENGTH)


def usid_of(locator: IPv6Network, function: int = 0) -> IPv6Network:
    """A locator's own uSID (function 0: block:ID::/48), or a local function's (/64)."""
    if not function:
        return locator
    addr = int(locator.network_address) | (function << (128 - USID_LOCATOR_LENGTH - 16))
    return IPv6Network((addr, USID_LOCATOR_LENGTH + 16))


def block_of(usid: IPv6Network) -> IPv6Network:
    return IPv6Network((int(usid.network_address) >> _TAIL << _TAIL, USID_BLOCK_LENGTH))


def width(usid: IPv6Network) -> int:
    """How many 16-bit slots of a container a uSID takes (its length past the block)."""
    return (usid.prefixlen - USID_BLOCK_LENGTH) // USID_BITS


def pack(usids: Sequence[IPv6Network]) -> tuple[IPv6Address, ...]:
    """The containers carrying `usids` in order: consecutive uSIDs of one block share a
    container, up to six slots each."""
    out: list[IPv6Address] = []
    block: IPv6Network | None = None
    tail, used = 0, SLOTS
    for u in usids:
        w = width(u)
        b = block_of(u)
        if b != block or used + w > SLOTS:
            if block is not None:
                out.append(_container(block, tail))
            block, tail, used = b, 0, 0
        bits = (int(u.network_address) & _TAIL_MASK) >> (_TAIL - w * USID_BITS)
        tail |= bits << (_TAIL - (used + w) * USID_BITS)
        used += w
    if block is not None:
        out.append(_container(block, tail))
    return tuple(out)


def _container(block: IPv6Network, tail: int) -> IPv6Address:
    return IPv6Address(int(block.network_address) | tail)


def text(usid: IPv6Network) -> str:
    """block:node[:function] as four-digit groups: fcbb:bb00:0001 or fcbb:bb00:0001:e000."""
    v = int(usid.network_address)
    groups = [(v >> (112 - 16 * i)) & 0xFFFF for i in range(usid.prefixlen // 16)]
    return ":".join(f"{g:04x}" for g in groups)


# -- walking a path hop by hop, as the datapaths do -------------------------------------------
@dataclass(frozen=True, slots=True)
class LocalUsid:
    """A uSID some node or router handles: matched by prefix, with its behaviour."""

    prefix: IPv6Network
    owner: str
    behavior: Behavior


@dataclass(frozen=True, slots=True)
class Hop:
    owner: str
    behavior: Behavior
    destination: IPv6Address  # the destination address the hop received


class WalkError(ValueError):
    pass


def walk(containers: Sequence[IPv6Address], table: Iterable[LocalUsid]) -> list[Hop]:
    """The hops a packet takes: each looks its destination address up (longest match), a uN
    or uA shifts the container past its uSID, an exhausted container gives way to the next
    segment, and a uDT ends the walk. Raises WalkError where a datapath would drop."""
    entries = sorted(table, key=lambda e: -e.prefix.prefixlen)
    hops: list[Hop] = []
    segs = list(containers)
    if not segs:
        raise WalkError("no containers")
    da = int(segs.pop(0))
    for _ in range(SLOTS * (len(containers) + 1)):
        addr = IPv6Address(da)
        hit = next((e for e in entries if addr in e.prefix), None)
        if hit is None:
            raise WalkError(f"{addr}: no node or router owns it")
        hops.append(Hop(hit.owner, hit.behavior, addr))
        if hit.behavior in (Behavior.UDT4, Behavior.UDT6, Behavior.UDT46):
            if segs:
                raise WalkError(f"{addr}: decapsulated with segments left")
            return hops
        shift = hit.prefix.prefixlen - USID_BLOCK_LENGTH
        block = da >> _TAIL << _TAIL
        tail = ((da & _TAIL_MASK) << shift) & _TAIL_MASK
        if tail:
            da = block | tail
        elif segs:
            da = int(segs.pop(0))
        else:
            raise WalkError(f"{addr}: the path ends at a {hit.behavior.value}")
    raise WalkError("the path loops")
