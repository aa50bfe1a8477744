"""The object store: one global resourceVersion counter, bounded event history, watchers.

Every write replaces the stored dict (stored dicts are never mutated in place), so history
events can share them. All public methods are thread-safe.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from fakekube import errors, services
from fakekube.errors import bad_request
from fakekube.objects import (
    Obj,
    ObjKey,
    TypeKey,
    check_body,
    check_namespace,
    meta_of,
    now,
    prepare,
    render,
    validate_name,
)
from fakekube.resources import BUILTINS, CRD_KEY, NAMESPACE_KEY, ResourceType, crd_types
from fakekube.selectors import FieldRequirement, Requirement, fields_match, labels_match
from fakekube.updates import (
    bump_generation,
    check_delete_preconditions,
    check_update_preconditions,
    updated_object,
)
from fakekube.watches import Event, WatchClosed, Watcher

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

__all__ = ["DEFAULT_NAMESPACES", "Event", "Obj", "ObjKey", "Store", "TypeKey", "WatchClosed",
           "Watcher", "now"]


class Store:
    """Every object of every served type, the resourceVersion counter and the history."""

    #: an object as the API returns it (apiVersion and kind first)
    render = staticmethod(render)

    def __init__(
        self,
        history_size: int = 1000,
        require_namespaces: bool = True,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.history_size = history_size
        self.require_namespaces = require_namespaces
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self._objects: dict[TypeKey, dict[ObjKey, Obj]] = {}
        self._history: deque[Event] = deque()
        self._rv = 0
        self.compacted_rv = 0
        self.epoch = 0  # bumped by restart(): open watches end
        self.closed = False
        self._initial_namespaces = tuple(namespaces)
        for rt in BUILTINS:
            self.register(rt)
        self._seed()

    # -- registry ---------------------------------------------------------------------------

    def register(self, rt: ResourceType) -> None:
        with self.lock:
            self.types[(rt.group, rt.version, rt.plural)] = rt
            self._objects.setdefault(rt.key, {})

    def find_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self.lock:
            return self.types.get((group, version, plural))

    def type_for(self, key: TypeKey) -> ResourceType:
        with self.lock:
            for rt in self.types.values():
                if rt.key == key:
                    return rt
        raise KeyError(key)

    def _seed(self) -> None:
        ns_type = self.type_for(NAMESPACE_KEY)
        for name in self._initial_namespaces:
            if ("", name) not in self._objects[NAMESPACE_KEY]:
                self.create(ns_type, None, {"metadata": {"name": name}})

    # -- helpers ----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def _bump(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, key: TypeKey, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        event = Event(int(meta["resourceVersion"]), kind, key, meta.get("namespace", ""), obj, old)
        self._history.append(event)
        while len(self._history) > self.history_size:
            self.compacted_rv = self._history.popleft().rv
        self.changed.notify_all()

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rt.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def _after_write(self, rt: ResourceType, obj: Obj, deleted: bool) -> None:
        if rt.key != CRD_KEY:
            return
        spec = obj["spec"]
        key = (spec["group"], spec["names"]["plural"])
        for type_key in [k for k, t in self.types.items() if t.key == key]:
            del self.types[type_key]
        if deleted:
            self._delete_all(key, None)
            self._objects.pop(key, None)
        else:
            for new in crd_types({"apiVersion": "apiextensions.k8s.io/v1",
                                  "kind": "CustomResourceDefinition", **obj}):
                self.register(new)

    def _delete_all(self, key: TypeKey, namespace: str | None) -> None:
        objects = self._objects.get(key, {})
        for obj_key in sorted(objects):
            if namespace is None or obj_key[0] == namespace:
                old = objects.pop(obj_key)
                self._emit_delete(key, old)

    def _emit_delete(self, key: TypeKey, old: Obj) -> Obj:
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._record("DELETED", key, gone, old)
        return gone

    # -- verbs ------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any,
               dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(check_body(rt, body))
        meta = meta_of(obj)
        with self.lock:
            check_namespace(rt, namespace, meta)
            if not meta.get("name") and meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = f"{meta['generateName']}{suffix}"
            if not meta.get("name"):
                raise errors.invalid(rt.kind, rt.group, "", "metadata.name",
                                     "Required value: name or generateName is required")
            name = meta["name"]
            validate_name(rt, name)
            if (rt.namespaced and self.require_namespaces
                    and ("", namespace) not in self._objects[NAMESPACE_KEY]):
                raise errors.not_found("namespaces", "", str(namespace))
            if (meta.get("namespace", ""), name) in self._objects[rt.key]:
                raise errors.already_exists(rt.plural, rt.group, name)
            for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "selfLink", "generation"):
                meta.pop(field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.tracks_generation:
                meta["generation"] = 1
            if rt.status_subresource and rt.custom:
                obj.pop("status", None)
            if rt.key == NAMESPACE_KEY:
                obj["spec"] = {"finalizers": ["kubernetes"]}
                obj["status"] = {"phase": "Active"}
            if rt.key == services.SERVICE_KEY:
                services.prepare_create(obj, self._objects[rt.key].values())
            prepare(rt, obj, self.types)
            if dry_run:
                return self.render(rt, obj)
            meta["resourceVersion"] = str(self._bump())
            self._objects[rt.key][(meta.get("namespace", ""), name)] = obj
            self._record("ADDED", rt.key, obj, None)
            self._after_write(rt, obj, deleted=False)
            return self.render(rt, obj)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            return self.render(rt, self._stored(rt, namespace, name))

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: tuple[Requirement, ...] = (),
        fields: tuple[FieldRequirement, ...] = (),
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        with self.lock:
            list_rv = self._rv
            start: tuple[str, str] | None = None
            if continue_token:
                try:
                    token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                    list_rv, start = int(token["rv"]), (str(token["ns"]), str(token["name"]))
                except (ValueError, KeyError, TypeError) as exc:
                    raise bad_request("continue key is not valid") from exc
                if list_rv < self.compacted_rv:
                    raise errors.gone("The provided continue parameter is too old to display a "
                                      "consistent list result. You can start a new list without "
                                      "the continue parameter.")
            items: list[Obj] = []
            for obj_key in sorted(self._objects[rt.key]):
                obj = self._objects[rt.key][obj_key]
                if namespace and obj_key[0] != namespace:
                    continue
                if start is not None and obj_key <= start:
                    continue
                if labels_match(labels, obj) and fields_match(fields, obj):
                    items.append(obj)
        metadata: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": list_rv, "ns": last.get("namespace", ""), "name": last["name"]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        rendered = [self.render(rt, obj) for obj in items]
        if not rt.custom:  # the real server leaves kind/apiVersion off built-in list items
            for item in rendered:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata,
                "items": rendered}

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        compute: Callable[[Obj], Any],
        subresource: str | None = None,
        is_patch: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """Replace or patch: ``compute`` maps the current object (rendered) to the new one."""
        with self.lock:
            current = self._stored(rt, namespace, name)
            candidate = copy.deepcopy(check_body(rt, compute(self.render(rt, current))))
            check_update_preconditions(rt, namespace, name, meta_of(candidate),
                                        current["metadata"], is_patch)
            new = updated_object(rt, current, candidate, subresource)
            prepare(rt, new, self.types)
            bump_generation(rt, new, current)
            if new == current:
                return self.render(rt, current)  # no-op writes keep the resourceVersion
            if dry_run:
                return self.render(rt, new)
            return self._write_update(rt, name, current, new)

    def _write_update(self, rt: ResourceType, name: str, current: Obj, new: Obj) -> Obj:
        """Stores an updated object, or removes it when its last finalizer has gone."""
        key = (current["metadata"].get("namespace", ""), name)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self._objects[rt.key][key]
            gone = self._emit_delete(rt.key, new)
            self._after_write(rt, gone, deleted=True)
            return self.render(rt, gone)
        new["metadata"]["resourceVersion"] = str(self._bump())
        self._objects[rt.key][key] = new
        self._record("MODIFIED", rt.key, new, current)
        self._after_write(rt, new, deleted=False)
        return self.render(rt, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: Any = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete, or mark for deletion when finalizers remain. Returns (object, gone)."""
        with self.lock:
            current = self._stored(rt, namespace, name)
            meta = current["metadata"]
            check_delete_preconditions(rt, name, meta, options)
            if dry_run:
                return self.render(rt, current), not meta.get("finalizers")
            key = (meta.get("namespace", ""), name)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return self.render(rt, current), False
                new = copy.deepcopy(current)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["resourceVersion"] = str(self._bump())
                self._objects[rt.key][key] = new
                self._record("MODIFIED", rt.key, new, current)
                return self.render(rt, new), False
            del self._objects[rt.key][key]
            gone = self._emit_delete(rt.key, current)
            if rt.key == NAMESPACE_KEY:
                for type_key in list(self._objects):
                    if self.type_for(type_key).namespaced:
                        self._delete_all(type_key, name)
            self._after_write(rt, gone, deleted=True)
            return self.render(rt, gone), True

    # -- watch ------------------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: tuple[Requirement, ...],
        fields: tuple[FieldRequirement, ...],
        resource_version: str | None,
        send_initial_events: bool = False,
    ) -> Watcher:
        with self.lock:
            initial: list[tuple[str, Obj]] = []
            if resource_version in (None, "", "0") or send_initial_events:
                cursor = self._rv
                for obj_key in sorted(self._objects[rt.key]):
                    obj = self._objects[rt.key][obj_key]
                    if namespace and obj_key[0] != namespace:
                        continue
                    if labels_match(labels, obj) and fields_match(fields, obj):
                        initial.append(("ADDED", self.render(rt, obj)))
            else:
                try:
                    cursor = int(str(resource_version))
                except ValueError as exc:
                    raise bad_request(f"invalid resource version: {resource_version}") from exc
            # a cursor older than the compacted window gets 410 from Watcher.next()
            return Watcher(self, rt, namespace, labels, fields, cursor, initial)

    # -- test hooks -------------------------------------------------------------------------

    def expire_history(self) -> None:
        """Compact: every resourceVersion older than the current one now gets 410 Gone."""
        with self.lock:
            self._history.clear()
            self.compacted_rv = self._rv
            self.changed.notify_all()

    def restart(self, drop_data: bool = False) -> None:
        """End every open watch; optionally wipe all objects except CRDs and the namespaces."""
        with self.lock:
            self.epoch += 1
            if drop_data:
                for key, objects in self._objects.items():
                    if key != CRD_KEY:
                        objects.clear()
                self._history.clear()
                self.compacted_rv = self._bump()  # the wipe itself is a (silent) change
                self._seed()
            self.changed.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.changed.notify_all()

    def objects(self, key: TypeKey, namespace: str | None = None) -> list[Obj]:
        with self.lock:
            rt = self.type_for(key)
            return [self.render(rt, o) for k, o in sorted(self._objects.get(key, {}).items())
                    if namespace is None or k[0] == namespace]

    def history(self) -> list[Event]:
        with self.lock:
            return list(self._history)
