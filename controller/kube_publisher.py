"""Kubernetes publisher: NodeState custom resources, and the ledger in a ConfigMap.

The same whole-state contract as `FilePublisher`: handed every node's rendered state, it
creates the NodeStates that are missing, patches the ones whose spec differs (merge patch
with the resourceVersion it compared against, so a concurrent edit is a 409 and a re-read,
never a lost update), deletes the ones of nodes that left, and says what it did.

Before any NodeState is written, the allocation ledger the reconciler just saved is copied
to a ConfigMap (gzip, optimistic concurrency). That is what makes a restarted or newly
elected controller change nothing: it restores the ledger from the API before planning. It
is also a fence: a deposed leader that still thinks it leads fails the ConfigMap update
(409, the new leader wrote it) and publishes nothing.
"""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from controller.publisher import Published, PublishResult
from controller.states import Rendered
from flatroute.errors import AdapterError
from flatroute.files import write_atomic
from flatroute.logging import get_logger
from kube.api import CONFIGMAPS, Conflict, KubeApi, NotFound, Obj
from kube.objects import (
    FABRIC_LABEL,
    MANAGED_BY,
    NODESTATES,
    SPEC_HASH,
    canonical_hash,
    merge_patch_for,
    node_state_object,
    now_rfc3339,
    strip_nulls,
)
from kube.reflector import Reflector

LEDGER_CONFIGMAP = "flatroute-ledger"
LEDGER_KEY = "ledger.json.gz"
PUBLISHED_AT = "flatroute.dev/published-at"
CONFIGMAP_LIMIT = 1024 * 1024
CONTROLLER = "flatroute-controller"


class LedgerStore:
    """The allocation ledger, durable in a ConfigMap (binaryData, gzip)."""

    def __init__(self, api: KubeApi, namespace: str, name: str = LEDGER_CONFIGMAP) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self._rv: str | None = None  # resourceVersion of the ConfigMap as we last wrote/read
        self._synced: bytes | None = None  # ledger text as it is in the ConfigMap
        self.log = get_logger(component="controller", ledger=f"{namespace}/{name}")

    def describe(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def restore(self, path: Path) -> bool:
        """Make the local ledger file equal the ConfigMap's (removed when there is none)."""
        cm = self.api.get(CONFIGMAPS, self.name, self.namespace)
        if cm is None:
            self._rv, self._synced = None, None
            if path.exists():
                path.unlink()
            self.log.info("ledger_not_found", action="starting with an empty ledger")
            return False
        raw = (cm.get("binaryData") or {}).get(LEDGER_KEY)
        try:
            data = gzip.decompress(base64.b64decode(raw or ""))
        except (ValueError, OSError, EOFError) as exc:
            raise AdapterError(f"{self.describe()}: {LEDGER_KEY} is not a gzipped ledger: "
                               f"{exc}") from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(str(path), data.decode("utf-8"))
        self._rv = str((cm.get("metadata") or {}).get("resourceVersion"))
        self._synced = data
        self.log.info("ledger_restored", bytes=len(data))
        return True

    def sync(self, path: Path) -> bool:
        """Copy the local ledger to the ConfigMap if it changed; True when written."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise AdapterError(f"{path}: cannot read the ledger: {exc}") from exc
        if data == self._synced:
            return False
        packed = base64.b64encode(gzip.compress(data, mtime=0)).decode()
        if len(packed) > CONFIGMAP_LIMIT:
            raise AdapterError(f"{self.describe()}: the compressed ledger ({len(packed)} bytes) "
                               "exceeds a ConfigMap's 1 MiB")
        body: Obj = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": self.name, "namespace": self.namespace,
                                  "labels": {MANAGED_BY: CONTROLLER}},
                     "binaryData": {LEDGER_KEY: packed}}
        try:
            if self._rv is None:
                out = self.api.create(CONFIGMAPS, body, self.namespace)
            else:
                body["metadata"]["resourceVersion"] = self._rv
                out = self.api.replace(CONFIGMAPS, self.name, body, self.namespace)
        except (Conflict, NotFound) as exc:
            # Someone else wrote (or removed) the ledger since we read it: another controller
            # is acting. Publish nothing; the next term restores from the API.
            self._rv, self._synced = None, None
            raise AdapterError(f"{self.describe()} changed under us ({exc.status}): another "
                               "controller may be active; not publishing") from exc
        self._rv = str((out.get("metadata") or {}).get("resourceVersion"))
        self._synced = data
        return True


class KubePublisher:
    """Publishes NodeState resources; see the module docstring."""

    def __init__(self, api: KubeApi, nodestates: Reflector, ledger: LedgerStore,
                 ledger_path: Path, *, fabric: str,
                 fence: Callable[[], bool] = lambda: True) -> None:
        self.api = api
        self.cache = nodestates
        self.ledger = ledger
        self.ledger_path = Path(ledger_path)
        self.fabric = fabric
        self.fence = fence
        self._specs: dict[str, tuple[str, dict[str, Any], str]] = {}  # gen, spec, hash
        self._observed_hash: dict[str, tuple[str, str]] = {}  # name -> (rv, spec hash)
        self._latest: dict[str, tuple[str, Obj]] = {}  # name -> (superseded rv, our write)
        self.writes = 0
        self.log = get_logger(component="controller")

    def describe(self) -> str:
        return f"NodeState resources ({self.api.api_client.configuration.host})"

    def _check_fence(self) -> None:
        if not self.fence():
            raise AdapterError("not the leader (any more): refusing to publish")

    # -- helpers ------------------------------------------------------------------------------
    def _desired(self, doc: Rendered) -> tuple[dict[str, Any], str]:
        cached = self._specs.get(doc.node)
        if cached is None or cached[0] != doc.generation:
            spec = strip_nulls(doc.spec())
            cached = (doc.generation, spec, canonical_hash(spec))
            self._specs[doc.node] = cached
        return cached[1], cached[2]

    def _current(self, name: str, cached: Obj | None) -> Obj | None:
        """The cached object, unless we wrote a newer one the watch has not delivered yet."""
        latest = self._latest.get(name)
        if latest is not None and cached is not None:
            rv = str(cached["metadata"].get("resourceVersion"))
            if rv == latest[0]:
                return latest[1]
            self._latest.pop(name, None)
        return cached

    def _spec_hash(self, obj: Obj) -> str:
        name = str(obj["metadata"]["name"])
        rv = str(obj["metadata"].get("resourceVersion"))
        seen = self._observed_hash.get(name)
        if seen is not None and seen[0] == rv:
            return seen[1]
        h = canonical_hash(obj.get("spec"))
        self._observed_hash[name] = (rv, h)
        return h

    def _up_to_date(self, obj: Obj, want: Obj, spec_hash: str) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return (self._spec_hash(obj) == spec_hash
                and all(labels.get(k) == v for k, v in want["metadata"]["labels"].items())
                and (meta.get("annotations") or {}).get(SPEC_HASH)
                == want["metadata"]["annotations"][SPEC_HASH])

    def _write(self, name: str, current: Obj | None, want: Obj) -> Obj:
        want["metadata"]["annotations"][PUBLISHED_AT] = now_rfc3339()
        self.writes += 1
        if current is None:
            try:
                return self.api.create(NODESTATES, want)
            except Conflict:
                current = self.api.get(NODESTATES, name)  # exists; our cache is behind
                if current is None:
                    raise
        for attempt in range(5):
            assert current is not None
            patch = merge_patch_for({"spec": current.get("spec"),
                                     "metadata": {"labels": current["metadata"].get("labels"),
                                                  "annotations": current["metadata"].get(
                                                      "annotations")}},
                                    {"spec": want["spec"], "metadata": {
                                        "labels": {**(current["metadata"].get("labels") or {}),
                                                   **want["metadata"]["labels"]},
                                        "annotations": {**(current["metadata"].get(
                                            "annotations") or {}),
                                            **want["metadata"]["annotations"]}}})
            patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"]
            try:
                return self.api.patch(NODESTATES, name, patch, kind="merge")
            except Conflict:
                if attempt == 4:
                    raise
                current = self.api.get(NODESTATES, name)
                if current is None:
                    return self.api.create(NODESTATES, want)
        raise AssertionError("unreachable")

    # -- the contract -------------------------------------------------------------------------
    def publish(self, desired: Mapping[str, Rendered],
                keep: Collection[str] = ()) -> PublishResult:
        self._check_fence()
        if self.ledger.sync(self.ledger_path):
            self.log.info("ledger_saved", where=self.ledger.describe())
        cached = {k: v for k, v in self.cache.items().items()
                  if (v.get("metadata") or {}).get("labels", {}).get(MANAGED_BY) == CONTROLLER}
        written: list[str] = []
        unchanged = 0
        published: dict[str, Published] = {}
        for name, doc in desired.items():
            spec, spec_hash = self._desired(doc)
            want = node_state_object(name, spec, doc.generation, site=doc.site, rack=doc.rack,
                                     fabric=self.fabric)
            current = self._current(name, cached.get(name))
            if current is not None and self._up_to_date(current, want, spec_hash):
                unchanged += 1
                out = current
            else:
                self._check_fence()
                out = self._write(name, current, want)
                if current is not None:
                    self._latest[name] = (str(current["metadata"]["resourceVersion"]), out)
                written.append(name)
            published[name] = Published(doc.generation, str(
                ((out.get("metadata") or {}).get("annotations") or {}).get(PUBLISHED_AT)
                or (out.get("metadata") or {}).get("creationTimestamp") or ""))
        removed = []
        for name in sorted(set(cached) - set(desired) - set(keep)):
            if (cached[name]["metadata"].get("labels") or {}).get(FABRIC_LABEL) not in (
                    None, self.fabric):
                continue  # another fabric's controller owns it
            self._check_fence()
            self.api.delete(NODESTATES, name)
            self._latest.pop(name, None)
            self._specs.pop(name, None)
            removed.append(name)
        for name in keep:
            if name in cached and name not in published:
                ann = cached[name]["metadata"].get("annotations") or {}
                published[name] = Published(str(ann.get(SPEC_HASH, "")),
                                            str(ann.get(PUBLISHED_AT, "")))
        return PublishResult(tuple(written), tuple(removed), unchanged, published)


def ledger_path(state_dir: str | os.PathLike[str]) -> Path:
    from controller.reconciler import LEDGER_FILE

    return Path(state_dir) / LEDGER_FILE
