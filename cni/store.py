"""The IPAM store's contract: what the allocator and the verbs may ask of it.

Two implementations: `cni.ipam.FileStore` (the plugin's, files under the data directory, in
host-local's manner) and `cni.fakestore.FakeStore` (in memory, for tests). The allocation policy
(which address next, what DEL and GC release) is not here but in `cni.alloc`, which works
through this contract only.

Rules every store keeps:
- `with store:` takes the store's lock (not re-entrant); every change happens inside it.
  Reads (CHECK, STATUS) may happen outside.
- `try_reserve` is the only thing that makes an address unique: an atomic create that fails
  when the address is taken. `create_attachment` is likewise atomic and detects a duplicate
  ADD (CniError DUPLICATE).
- Addresses are canonical text (`cni.addr.fmt`), keys the pod's host veth name.
- Failures are CniError IO_ERROR, except `check_usable`, which raises OSError for the
  caller to map.

The Protocol exists for the type checker only: importing `typing` costs the exec'd plugin
~20 ms of start-up, so nothing imports this module at run time.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Protocol

    #: (container id, ifname, addresses) of one attachment
    Attachment = tuple[str, str, list[str]]
    #: (container id, ifname) holding a reservation
    Owner = tuple[str, str]

    class Store(Protocol):
        #: where the store lives, for messages (a directory, or "memory")
        where: str

        def __enter__(self) -> Store: ...
        def __exit__(self, *exc: object) -> None: ...

        # attachments: one per (container id, ifname), keyed by the host veth name
        def create_attachment(self, key: str, cid: str, ifname: str) -> None: ...
        def add_addresses(self, key: str, addresses: list[str]) -> None: ...
        def read_attachment(self, key: str) -> Attachment | None: ...
        def attachments(self) -> dict[str, Attachment]: ...
        def remove_attachment(self, key: str) -> None: ...

        # reservations: one owner per address
        def try_reserve(self, address: str, cid: str, ifname: str) -> bool: ...
        def owner(self, address: str) -> Owner | None: ...
        def reservations(self) -> dict[str, Owner]: ...
        def remove_reservation(self, address: str) -> None: ...

        # where the last search of a family stopped: a hint for round-robin, never the truth
        def last_reserved(self, version: int) -> str | None: ...
        def set_last_reserved(self, version: int, address: str) -> None: ...

        def check_usable(self) -> None: ...
