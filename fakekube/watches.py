"""Watches: the store's history events, and one open watch's cursor into them, filtered for
its request (namespace, label and field selectors)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakekube import errors
from fakekube.objects import Obj, TypeKey, render
from fakekube.resources import ResourceType
from fakekube.selectors import FieldRequirement, Requirement, fields_match, labels_match

if TYPE_CHECKING:
    from fakekube.store import Store


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    key: TypeKey
    namespace: str
    obj: Obj
    old: Obj | None


class WatchClosed(Exception):
    """The server stopped or restarted: end the watch stream."""


class Watcher:
    """One open watch: a cursor into the store's history, filtered for one request."""

    def __init__(
        self,
        store: Store,
        rt: ResourceType,
        namespace: str | None,
        labels: tuple[Requirement, ...],
        fields: tuple[FieldRequirement, ...],
        cursor: int,
        initial: list[tuple[str, Obj]],
    ) -> None:
        self.store = store
        self.rt = rt
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.cursor = cursor
        self.initial = initial
        self.epoch = store.epoch

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)

    def next(self, timeout: float) -> list[tuple[str, Obj]]:
        """Events after the cursor, waiting up to ``timeout``; [] when none came.

        Raises ApiError(410) once the cursor has been compacted away, WatchClosed on restart.
        """
        if self.initial:
            first, self.initial = self.initial, []
            return first
        deadline = time.monotonic() + timeout
        store = self.store
        with store.changed:
            while True:
                if store.closed or store.epoch != self.epoch:
                    raise WatchClosed
                if self.cursor < store.compacted_rv:
                    raise errors.gone(f"too old resource version: {self.cursor} "
                                      f"({store.compacted_rv + 1})")
                fresh: list[Event] = []
                for event in reversed(store._history):
                    if event.rv <= self.cursor:
                        break
                    fresh.append(event)
                if fresh:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                store.changed.wait(remaining)
        out: list[tuple[str, Obj]] = []
        for event in reversed(fresh):
            self.cursor = event.rv
            if event.key != self.rt.key:
                continue
            now_in = self._matches(event.obj)
            if event.type == "DELETED":
                if now_in or self._matches(event.old):
                    out.append(("DELETED", render(self.rt, event.obj)))
                continue
            was_in = self._matches(event.old)
            if now_in:
                out.append(("MODIFIED" if was_in else "ADDED", render(self.rt, event.obj)))
            elif was_in:
                out.append(("DELETED", render(self.rt, event.obj)))
        return out
