"""A watch-backed cache of one resource: list, then watch from the list's resourceVersion.

The loop client-go's reflector runs, reduced to what flatroute needs:

- list, replace the cache, then watch from the list's resourceVersion with bookmarks;
- every event (bookmarks included) advances the resourceVersion we resume from, so a watch
  the server ends (timeout, restart) resumes where it stopped without a relist;
- 410 Gone (an ERROR event or the HTTP status) means our version was compacted away: relist;
- any other error backs off exponentially with full jitter, capped, reset by progress.

Readers get immutable snapshots (`items()`), a `revision` bumped on every change of content,
and `wait_for_change()`. Objects are the server's JSON; nothing here interprets them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flatroute.logging import get_logger
from kube.api import Gone, KubeApi, KubeError, Obj, Resource, WatchStream


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: next() in [0, min(cap, base * 2**n)]."""

    base: float = 0.2
    cap: float = 30.0
    attempts: int = 0
    rng: Callable[[], float] = random.random

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        jitter: float = self.rng()
        return float(max(self.base / 2, ceiling * jitter))

    def reset(self) -> None:
        self.attempts = 0


@dataclass(slots=True)
class ReflectorStats:
    lists: int = 0
    watches: int = 0
    gone: int = 0  # 410s seen (each leads to a relist)
    errors: int = 0
    bookmarks: int = 0
    events: int = 0


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Reflector:
    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.on_change = on_change
        self.stats = ReflectorStats()
        self.synced = threading.Event()
        self.resource_version = ""
        self.last_error: str | None = None
        self._items: dict[str, Obj] = {}
        self._revision = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._gone_streak = 0
        self.log = get_logger(component="reflector", resource=str(resource))

    # -- reading ------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        with self._cond:
            return self._revision

    def items(self) -> MappingProxyType[str, Obj]:
        """The cached objects by [namespace/]name, as of now (a copy; do not mutate values)."""
        with self._cond:
            return MappingProxyType(dict(self._items))

    def get(self, key: str) -> Obj | None:
        with self._cond:
            return self._items.get(key)

    def wait_for_change(self, revision: int, timeout: float) -> int:
        """Block until the revision differs from `revision` (or timeout); the revision now."""
        with self._cond:
            self._cond.wait_for(lambda: self._revision != revision or self._stop.is_set(),
                                timeout)
            return self._revision

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Reflector:
        self._thread = threading.Thread(target=self.run, name=f"reflector:{self.resource}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def run(self) -> None:
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
            except Gone as exc:
                self.stats.gone += 1
                self.log.info("watch_expired", resource_version=self.resource_version,
                              error=exc.message)
                need_list = True
                # A relist after 410 is routine; 410 again before any event arrived is not:
                # back off from the second one on.
                self._gone_streak += 1
                if self._gone_streak > 1:
                    self._stop.wait(self.backoff.next())
            except KubeError as exc:
                self._failed(exc)
            except Exception as exc:  # a bug must not kill the cache silently: log, retry
                self.log.exception("reflector_failed", error=str(exc))
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if self._stop.is_set():
            return
        self.stats.errors += 1
        delay = self.backoff.next()
        self.last_error = str(exc)
        self.log.warning("watch_failed", error=str(exc), retry_in=round(delay, 2))
        self._stop.wait(delay)

    # -- list and watch -----------------------------------------------------------------------
    def _list(self) -> None:
        items, rv = self.api.list(self.resource, namespace=self.namespace,
                                  label_selector=self.label_selector,
                                  field_selector=self.field_selector)
        self.stats.lists += 1
        fresh = {_key(o): o for o in items}
        with self._cond:
            same = ({k: _rv(v) for k, v in fresh.items()}
                    == {k: _rv(v) for k, v in self._items.items()})
            self._items = fresh
            self.resource_version = rv
        self.last_error = None
        self.log.debug("listed", count=len(fresh), resource_version=rv)
        if not same or not self.synced.is_set():
            self._changed()
        self.synced.set()
        self.backoff.reset()

    def _watch(self) -> None:
        stream = self.api.watch(self.resource, self.resource_version, namespace=self.namespace,
                                label_selector=self.label_selector,
                                field_selector=self.field_selector,
                                timeout_seconds=self.watch_timeout)
        self._stream = stream
        self.stats.watches += 1
        try:
            if self._stop.is_set():
                return
            for event in stream:
                if self._stop.is_set():
                    return
                self._apply(event)
        finally:
            self._stream = None
            stream.close()

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj: Any = event.get("object")
        if not isinstance(obj, dict):
            raise KubeError(0, "BadWatchEvent", f"watch event without an object: {kind}")
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            message = str(obj.get("message") or "")
            if code == 410:
                raise Gone(410, str(obj.get("reason") or "Expired"), message)
            raise KubeError(code, str(obj.get("reason") or "WatchError"), message)
        rv = _rv(obj)
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
            if rv:
                self.resource_version = rv
            return
        self.stats.events += 1
        key = _key(obj)
        with self._cond:
            if kind in ("ADDED", "MODIFIED"):
                self._items[key] = obj
            elif kind == "DELETED":
                self._items.pop(key, None)
            else:
                raise KubeError(0, "BadWatchEvent", f"unknown watch event type {kind!r}")
            if rv:
                self.resource_version = rv
        self.backoff.reset()
        self._gone_streak = 0
        self._changed()

    def _changed(self) -> None:
        with self._cond:
            self._revision += 1
            self._cond.notify_all()
        if self.on_change is not None:
            self.on_change()


def wait_synced(reflectors: list[Reflector], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(r.synced.wait(max(0.0, deadline - time.monotonic())) for r in reflectors)
