"""Inventory: where the controller learns what the fabric is. One adapter per source.

A source hands out validated snapshots (a `Fabric`, never a raw document) and says cheaply
whether a new snapshot may differ from the last one, so the reconciler can poll it and coalesce
changes. The static source reads the fabric file; the Kubernetes source (a later issue) builds
the same `Fabric` from its objects and answers `changed()` from its watches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from flatroute.errors import InvalidInput, field_error
from flatroute.fabric import Fabric, parse_fabric


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent view of the inventory."""

    fabric: Fabric
    #: where it came from, for people: a file path, or e.g. "kubernetes:flatroute/fabric"
    source: str
    #: content identity: sha256 of the file, or the resource versions that made it
    digest: str


class Inventory(Protocol):
    """A source of fabric snapshots (static file, Kubernetes objects)."""

    def describe(self) -> str:
        """Where the snapshots come from, for logs and status."""
        ...

    def snapshot(self) -> Snapshot:
        """The current inventory; raises InvalidInput (every problem, with field paths)."""
        ...

    def changed(self) -> bool:
        """Cheap check: may a snapshot taken now differ from the last one taken?"""
        ...


class StaticFileInventory:
    """The fabric file of static mode. Polls its signature; parses only when the bytes change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None  # signature of the last read
        self._digest: str | None = None
        self._result: Snapshot | InvalidInput | None = None

    def describe(self) -> str:
        return self.path

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        return self._result is None or self._signature() != self._seen

    def snapshot(self) -> Snapshot:
        # The signature is taken before reading: a write racing the read shows up as a change
        # at the next poll, never as a lost update.
        self._seen = self._signature()
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            err = InvalidInput([field_error(self.path, "",
                                            f"cannot read file: {exc.strerror}")])
            self._result, self._digest = err, None
            raise err from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest and self._result is not None:
            if isinstance(self._result, InvalidInput):
                raise InvalidInput(list(self._result.errors))
            return self._result
        self._digest = digest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            err = InvalidInput([field_error(self.path, "", f"not UTF-8 text: {exc.reason}")])
            self._result = err
            raise err from exc
        try:
            fabric = parse_fabric(text, self.path)
        except InvalidInput as exc:
            self._result = exc
            raise
        self._result = Snapshot(fabric, self.path, digest)
        return self._result
