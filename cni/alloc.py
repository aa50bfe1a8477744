"""The IPAM allocator: which address a pod gets, and what DEL and GC give back.

Pure policy over the `cni.store.Store` contract (as host-local's allocator sits over its disk
store): no file, lock or clock of its own, so it is tested with `cni.fakestore.FakeStore`.

- `candidates` is a pure function: the order in which a range set's addresses are tried,
  round-robin from just after the last one handed out, wrapping around once, every address
  exactly once, skipping reserved ones (the gateways).
- `allocate` walks that order and asks the store to reserve each in turn; the store's atomic
  reservation, not this walk, is what makes an address unique.
"""

from __future__ import annotations

from cni import addr
from cni.errors import EXHAUSTED, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Iterator

    from cni.config import Range
    from cni.store import Store


def candidates(rset: list[Range], last: int | None = None,
               skip: frozenset[int] = frozenset()) -> Iterator[int]:
    """Every address of the range set once, starting just after `last` (if it lies in one of
    the ranges, else at the lowest address), wrapping around and ending with `last` itself."""
    order = sorted(rset, key=lambda r: r.start)
    first = 0
    for i, r in enumerate(order):
        if last is not None and last in r:
            first = i
            break
    else:
        last = None
    for n in range(len(order) + 1):
        r = order[(first + n) % len(order)]
        if n == 0 and last is not None:
            lo, hi = last + 1, r.end
        elif n == len(order):
            if last is None:
                return
            lo, hi = r.start, last  # the wrap ends inside the first range
        else:
            lo, hi = r.start, r.end
        for value in range(lo, hi + 1):
            if value not in skip:
                yield value


def allocate(store: Store, rset: list[Range], cid: str, ifname: str,
             skip: frozenset[int] = frozenset()) -> str:
    """Reserve the next free address of a range set for cid/ifname (under the store's lock)."""
    version = rset[0].version
    last: int | None = None
    hint = store.last_reserved(version)
    if hint is not None:
        try:
            v, value = addr.parse_ip(hint)
            last = value if v == version else None
        except ValueError:
            pass  # only a hint
    for value in candidates(rset, last, skip):
        text = addr.fmt(version, value)
        if store.try_reserve(text, cid, ifname):
            store.set_last_reserved(version, text)
            return text
    ranges = ", ".join(r.subnet for r in rset)
    raise CniError(EXHAUSTED, f"no free address left in {ranges}",
                   f"{store.where} holds a reservation for every address")


def release(store: Store, address: str, cid: str, ifname: str) -> bool:
    """Give an address back if (and only if) cid/ifname holds it."""
    if store.owner(address) == (cid, ifname):
        store.remove_reservation(address)
        return True
    return False


def release_all(store: Store, key: str, cid: str, ifname: str) -> list[str]:
    """DEL: release what the attachment record lists, then anything else cid/ifname holds."""
    rec = store.read_attachment(key)
    released: list[str] = []
    if rec is not None and rec[:2] == (cid, ifname):
        released = [a for a in rec[2] if release(store, a, cid, ifname)]
        store.remove_attachment(key)
    # An ADD interrupted after reserving but before writing the record's addresses (one write,
    # after every reservation) leaves reservations the record misses: sweep for them then.
    if rec is None or not rec[2] or len(released) != len(rec[2]):
        for address, owner in store.reservations().items():
            if owner == (cid, ifname) and address not in released:
                store.remove_reservation(address)
                released.append(address)
    return released


def collect(store: Store, valid: set[tuple[str, str]]) -> tuple[list[tuple[str, str, str]],
                                                                 dict[str, list[str]]]:
    """GC's split: the stale attachments (key, cid, ifname), and the valid ones' addresses by
    key. Changes nothing: a stale attachment may first have to be DELeted through a delegated
    plugin (then its record removed), or released with `release_all`."""
    stale: list[tuple[str, str, str]] = []
    kept: dict[str, list[str]] = {}
    for key, (cid, ifname, addresses) in store.attachments().items():
        if (cid, ifname) in valid:
            kept[key] = addresses
        else:
            stale.append((key, cid, ifname))
    return stale, kept


def release_invalid(store: Store, valid: set[tuple[str, str]]) -> list[str]:
    """GC: release every reservation whose owner is not a valid attachment."""
    gone = []
    for address, owner in store.reservations().items():
        if owner not in valid:
            store.remove_reservation(address)
            gone.append(address)
    return gone
