"""The FAKE Kubernetes API server: its lifecycle, CRD registration, seeding and assertion
helpers, and the test hooks (injected failures, restarts, history expiry). The HTTP front end
is routes.py, watch streaming watchstream.py, the objects store.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fakekube.errors import ApiError
from fakekube.objects import Obj
from fakekube.resources import CRD_KEY, ResourceType, crd_types
from fakekube.routes import KUBE_VERSION, FakeHTTPServer, RequestRecord
from fakekube.store import DEFAULT_NAMESPACES, Store

__all__ = ["KUBE_VERSION", "FakeApiServer", "RequestRecord", "client_configuration"]


@dataclass(slots=True)
class _Failure:
    remaining: int
    code: int
    reason: str | None
    message: str
    method: str | None
    path_contains: str | None
    retry_after: int | None = field(default=None)

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and (self.path_contains is None or self.path_contains in path))


class FakeApiServer:
    """A fake Kubernetes API server on 127.0.0.1, for tests. Not a real API server.

    >>> with FakeApiServer() as fake:
    ...     api = kubernetes.client.ApiClient(client_configuration(fake.url))
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 1000,
        bookmark_interval: float = 1.0,
        watch_timeout: float = 1800.0,
        require_namespaces: bool = True,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        crds: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.store = Store(history_size, require_namespaces, namespaces)
        self.server_errors: list[str] = []  # tracebacks of 500s caused by bugs in the fake
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._failures: list[_Failure] = []
        self._connections: set[socket.socket] = set()
        self._open_watches = 0
        self._abrupt = False
        for crd in crds:
            self.register_crd(crd)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving in a background thread; returns the base URL."""
        if self._httpd is not None:
            return self.url
        self.store.closed = False
        self._httpd = FakeHTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fakekube:{self.port}", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving: end open watches, close every connection. Data is kept."""
        if self._httpd is None:
            return
        self.store.close()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- registration -----------------------------------------------------------------------

    def register_crd(self, manifest: Mapping[str, Any]) -> list[ResourceType]:
        """Create (or replace) a CustomResourceDefinition; its served versions become routes."""
        types = crd_types(manifest)  # raises CrdError with a field path on a bad manifest
        crd_type = self.store.type_for(CRD_KEY)
        name = manifest["metadata"]["name"]
        with self.store.lock:
            if ("", name) in self.store._objects[CRD_KEY]:
                self.store.update(crd_type, None, name, lambda _cur: dict(manifest))
            else:
                self.store.create(crd_type, None, dict(manifest))
        return types

    def load_crds(self, path: str | Path) -> list[ResourceType]:
        """Register every CustomResourceDefinition in a (multi-document) YAML file."""
        import yaml

        types: list[ResourceType] = []
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    types.extend(self.register_crd(doc))
        return types

    def register_type(self, rt: ResourceType) -> None:
        """Serve another built-in-like resource (no CRD object is created)."""
        self.store.register(rt)

    # -- object access for assertions and seeding --------------------------------------------

    def _type(self, plural: str, group: str) -> ResourceType:
        try:
            return self.store.type_for((group, plural))
        except KeyError:
            raise KeyError(f"no resource {plural!r} in group {group!r}") from None

    def objects(self, plural: str, group: str = "", namespace: str | None = None) -> list[Obj]:
        """Deep copies of the stored objects of one resource, sorted by namespace and name."""
        self._type(plural, group)
        return self.store.objects((group, plural), namespace)

    def get_object(self, plural: str, name: str, namespace: str | None = None,
                   group: str = "") -> Obj | None:
        try:
            return self.store.get(self._type(plural, group), namespace, name)
        except ApiError:
            return None

    def create_object(self, obj: Mapping[str, Any]) -> Obj:
        """Seed an object directly (same rules as a POST); kind/apiVersion pick the type."""
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        with self.store.lock:
            for rt in self.store.types.values():
                if (rt.group, rt.version, rt.kind) == (group, version, obj.get("kind")):
                    namespace = obj.get("metadata", {}).get("namespace") or (
                        "default" if rt.namespaced else None)
                    return self.store.create(rt, namespace, dict(obj))
        raise KeyError(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    # -- test hooks -------------------------------------------------------------------------

    def expire_history(self) -> None:
        """Compact the event history: watches from any older resourceVersion get 410 Gone."""
        self.store.expire_history()

    def restart(self, drop_data: bool = False, abrupt: bool = False) -> None:
        """Like an API server restart: every open watch ends (cleanly, or with the TCP
        connection cut when ``abrupt``). With ``drop_data`` all objects except CRDs are
        wiped, the default namespaces recreated and older resourceVersions expire."""
        self._abrupt = abrupt
        self.store.restart(drop_data)
        deadline = time.monotonic() + 2
        while self.open_watches and time.monotonic() < deadline:
            time.sleep(0.01)

    def fail_next(
        self,
        count: int = 1,
        code: int = 500,
        *,
        reason: str | None = None,
        message: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` matching requests fail with a ``Status`` of ``code``."""
        text = message or f"injected failure ({code}) by the fake API server"
        with self._lock:
            self._failures.append(_Failure(count, code, reason, text, method, path_contains,
                                           retry_after))

    def _take_failure(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.matches(method, path):
                    failure.remaining -= 1
                    headers = ({"Retry-After": str(failure.retry_after)}
                               if failure.retry_after is not None else None)
                    return ApiError(failure.code, failure.message, failure.reason,
                                    headers=headers)
            self._failures = [f for f in self._failures if f.remaining > 0]
        return None

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def open_watches(self) -> int:
        with self._lock:
            return self._open_watches

    # -- internals --------------------------------------------------------------------------

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _watch_count(self, delta: int) -> None:
        with self._lock:
            self._open_watches += delta

    def _groups(self) -> list[Obj]:
        versions: dict[str, list[str]] = {}
        with self.store.lock:
            for rt in self.store.types.values():
                if rt.group and rt.version not in versions.setdefault(rt.group, []):
                    versions[rt.group].append(rt.version)
        return [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in sorted(versions.items())]


def client_configuration(url: str) -> Any:
    """A ``kubernetes.client.Configuration`` pointing at the fake (plain HTTP, no auth)."""
    from kubernetes import client

    config = client.Configuration()
    config.host = url
    config.verify_ssl = False
    return config
