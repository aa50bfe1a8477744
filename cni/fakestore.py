"""A fake of the IPAM store, in memory, for tests: the `cni.store.Store` contract and nothing
else, with the contract's rules checked rather than trusted.

It refuses (RuntimeError) what `cni.ipam.FileStore` would silently get wrong: a change outside
`with store:`, and entering the lock twice (POSIX record locks are per process, so the file
store's second entry would not wait, and its exit would drop the first's lock). `held` says
whether the lock is held, for tests to assert that a verb let go of it. Never imported by the
plugin itself.
"""

from __future__ import annotations

from cni.errors import DUPLICATE, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cni.store import Attachment, Owner


class FakeStore:
    def __init__(self) -> None:
        self.where = "memory"
        self.held = False
        self.atts: dict[str, Attachment] = {}
        self.ips: dict[str, Owner] = {}
        self.last: dict[int, str] = {}
        self.usable = True
        self.entries = 0  # how many times the lock was taken

    def __enter__(self) -> FakeStore:
        if self.held:
            raise RuntimeError("the IPAM lock is not re-entrant")
        self.held = True
        self.entries += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.held = False

    def _change(self, what: str) -> None:
        if not self.held:
            raise RuntimeError(f"{what} outside the IPAM lock")

    def check_usable(self) -> None:
        if not self.usable:
            raise PermissionError(13, "not writable")

    def create_attachment(self, key: str, cid: str, ifname: str) -> None:
        self._change("create_attachment")
        if key in self.atts:
            raise CniError(DUPLICATE, f"container {cid} already has interface {ifname}")
        self.atts[key] = (cid, ifname, [])

    def add_addresses(self, key: str, addresses: list[str]) -> None:
        self._change("add_addresses")
        cid, ifname, have = self.atts[key]
        self.atts[key] = (cid, ifname, [*have, *addresses])

    def read_attachment(self, key: str) -> Attachment | None:
        rec = self.atts.get(key)
        return None if rec is None else (rec[0], rec[1], list(rec[2]))

    def attachments(self) -> dict[str, Attachment]:
        return {k: (c, i, list(a)) for k, (c, i, a) in self.atts.items()}

    def remove_attachment(self, key: str) -> None:
        self._change("remove_attachment")
        self.atts.pop(key, None)

    def try_reserve(self, address: str, cid: str, ifname: str) -> bool:
        self._change("try_reserve")
        if address in self.ips:
            return False
        self.ips[address] = (cid, ifname)
        return True

    def owner(self, address: str) -> Owner | None:
        return self.ips.get(address)

    def reservations(self) -> dict[str, Owner]:
        return dict(self.ips)

    def remove_reservation(self, address: str) -> None:
        self._change("remove_reservation")
        self.ips.pop(address, None)

    def last_reserved(self, version: int) -> str | None:
        return self.last.get(version)

    def set_last_reserved(self, version: int, address: str) -> None:
        self._change("set_last_reserved")
        self.last[version] = address


if TYPE_CHECKING:
    from cni.ipam import FileStore
    from cni.store import Store

    _fake: Store = FakeStore()
    _file: Store = FileStore("/", "x")
