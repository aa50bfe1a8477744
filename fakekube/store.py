"""The object store: one global resourceVersion counter, bounded event history, watchers.

Every write replaces the stored dict (stored dicts are never mutated in place), so history
events can share them. All public methods are thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import re
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fakekube import errors
from fakekube.errors import ApiError, bad_request
from fakekube.resources import (
    BUILTINS,
    CRD_KEY,
    NAMESPACE_KEY,
    SECRET_KEY,
    CrdError,
    ResourceType,
    crd_types,
)
from fakekube.schema import validate_and_prune
from fakekube.selectors import FieldRequirement, Requirement, fields_match, labels_match

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SERVER_META = (
    "uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
    "deletionGracePeriodSeconds", "generation", "resourceVersion", "selfLink",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


def _check_update_preconditions(rt: ResourceType, namespace: str | None, name: str, meta: Obj,
                                cur_meta: Obj, is_patch: bool) -> None:
    """Name, namespace, resourceVersion and uid of an update's body against the stored object."""
    if meta.get("name") not in (None, "", name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match "
                          f"the name on the URL ({name})")
    if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise bad_request("the namespace of the provided object does not match the "
                          "namespace sent on the request")
    given = meta.get("resourceVersion")
    if given not in (None, ""):
        if str(given) != cur_meta["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name, errors.STALE)
    elif not is_patch and not rt.allow_unconditional_update:
        raise errors.invalid(rt.kind, rt.group, name, "metadata.resourceVersion",
                             "Invalid value: 0x0: must be specified for an update")
    if meta.get("uid") not in (None, "", cur_meta["uid"]):
        raise errors.conflict(rt.plural, rt.group, name,
                              f"Precondition failed: UID in precondition: {meta['uid']}, "
                              f"UID in object meta: {cur_meta['uid']}")


def _updated_object(rt: ResourceType, current: Obj, candidate: Obj,
                    subresource: str | None) -> Obj:
    """The object an update writes: the status subresource takes only the candidate's status;
    the main resource takes all but the server's metadata (and the status, when that is a
    subresource, and a namespace's spec)."""
    if subresource == "status":
        new = copy.deepcopy(current)
        if "status" in candidate:
            new["status"] = candidate["status"]
        else:
            new.pop("status", None)
        return new
    new = candidate
    meta, cur_meta = new["metadata"], current["metadata"]
    for field in _SERVER_META:
        if field in cur_meta:
            meta[field] = cur_meta[field]
        else:
            meta.pop(field, None)
    if rt.status_subresource:
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        else:
            new.pop("status", None)
    if rt.key == NAMESPACE_KEY:
        new["spec"] = copy.deepcopy(current.get("spec", {}))
    return new


def _bump_generation(rt: ResourceType, new: Obj, current: Obj) -> None:
    """metadata.generation goes up when anything but metadata (and a status subresource) changed."""
    if not rt.tracks_generation:
        return
    ignored = ("metadata", "status") if rt.status_subresource else ("metadata",)
    if ({k: v for k, v in new.items() if k not in ignored}
            != {k: v for k, v in current.items() if k not in ignored}):
        new["metadata"]["generation"] = int(current["metadata"].get("generation", 0)) + 1


class Store:
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

    @staticmethod
    def render(rt: ResourceType, obj: Obj) -> Obj:
        out: Obj = {"apiVersion": rt.api_version, "kind": rt.kind}
        out.update(copy.deepcopy(obj))
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rt.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def _check_body(self, rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        kind = body.get("kind")
        if kind not in (None, "", rt.kind):
            raise bad_request(f"the kind of the object ({kind}) does not match the kind of the "
                              f"request ({rt.kind})")
        api_version = body.get("apiVersion")
        if api_version not in (None, ""):
            group = str(api_version).rpartition("/")[0]
            if group != rt.group:
                raise bad_request(f"the API version in the data ({api_version}) does not match "
                                  f"the expected API version ({rt.api_version})")
        return body

    def _check_namespace(self, rt: ResourceType, namespace: str | None, meta: Obj) -> None:
        if rt.namespaced:
            if not namespace:
                raise ApiError(405, "the server does not allow this method on the requested "
                                    "resource", reason="MethodNotAllowed")
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

    def _validate_name(self, rt: ResourceType, name: Any) -> None:
        if rt.key == NAMESPACE_KEY:
            ok = isinstance(name, str) and len(name) <= 63 and bool(_LABEL.match(name))
            what = "a lowercase RFC 1123 label"
        else:
            ok = isinstance(name, str) and len(name) <= 253 and bool(_SUBDOMAIN.match(name))
            what = "a lowercase RFC 1123 subdomain"
        if not ok:
            raise errors.invalid(rt.kind, rt.group, str(name), "metadata.name",
                                 f"Invalid value: {name!r}: must be {what}")

    def _prepare(self, rt: ResourceType, obj: Obj) -> None:
        """Type-specific normalisation on every write (create and update)."""
        obj.pop("apiVersion", None)
        obj.pop("kind", None)
        meta = obj["metadata"]
        meta.pop("managedFields", None)
        if rt.key == SECRET_KEY:
            data = obj.get("data") or {}
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            for key, value in data.items():
                try:
                    base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: "
                                      f"illegal base64 data in data.{key}") from exc
            if data:
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        if rt.key == CRD_KEY:
            try:
                new_types = crd_types({"apiVersion": "apiextensions.k8s.io/v1", **obj,
                                       "kind": "CustomResourceDefinition"})
            except CrdError as exc:
                raise errors.invalid(rt.kind, rt.group, str(meta.get("name")), "spec",
                                     str(exc)) from exc
            for new in new_types:
                old = self.types.get((new.group, new.version, new.plural))
                if old is not None and not old.custom:
                    raise errors.invalid(rt.kind, rt.group, str(meta.get("name")),
                                         "spec.group", "clashes with a built-in resource")
            names = obj["spec"]["names"]
            obj["status"] = {
                "acceptedNames": {"plural": names["plural"], "kind": names["kind"]},
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now()},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted",
                     "lastTransitionTime": now()},
                ],
            }
        if rt.schema is not None:
            validate_and_prune(rt, obj)

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
        obj = copy.deepcopy(self._check_body(rt, body))
        meta = _meta(obj)
        with self.lock:
            self._check_namespace(rt, namespace, meta)
            if not meta.get("name") and meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = f"{meta['generateName']}{suffix}"
            if not meta.get("name"):
                raise errors.invalid(rt.kind, rt.group, "", "metadata.name",
                                     "Required value: name or generateName is required")
            name = meta["name"]
            self._validate_name(rt, name)
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
            self._prepare(rt, obj)
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
            candidate = copy.deepcopy(self._check_body(rt, compute(self.render(rt, current))))
            _check_update_preconditions(rt, namespace, name, _meta(candidate),
                                        current["metadata"], is_patch)
            new = _updated_object(rt, current, candidate, subresource)
            self._prepare(rt, new)
            _bump_generation(rt, new, current)
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
            pre = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
            if pre.get("uid") not in (None, "", meta["uid"]):
                raise errors.conflict(rt.plural, rt.group, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") not in (None, "", meta["resourceVersion"]):
                raise errors.conflict(rt.plural, rt.group, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in meta: "
                                      f"{meta['resourceVersion']}")
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
                    out.append(("DELETED", Store.render(self.rt, event.obj)))
                continue
            was_in = self._matches(event.old)
            if now_in:
                out.append(("MODIFIED" if was_in else "ADDED", Store.render(self.rt, event.obj)))
            elif was_in:
                out.append(("DELETED", Store.render(self.rt, event.obj)))
        return out
