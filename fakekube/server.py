"""HTTP front end: routes Kubernetes REST paths to the store, streams watches."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fakekube import errors
from fakekube.errors import ApiError, bad_request
from fakekube.patch import json_patch, merge_patch, strategic_merge_patch
from fakekube.resources import CRD_KEY, ResourceType, crd_types
from fakekube.selectors import parse_field_selector, parse_label_selector
from fakekube.store import DEFAULT_NAMESPACES, Obj, Store, WatchClosed

KUBE_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fakekube",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
                "platform": "linux/amd64"}
_POLL = 0.1  # how often an idle watch checks for a vanished client or a stopping server


@dataclass(slots=True)
class RequestRecord:
    """One request as the fake saw it (for assertions)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    status: int = 0
    watch: bool = False


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


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _group_version(segs: list[str]) -> tuple[str, str, list[str]]:
    """`/api/v1/...` or `/apis/<group>/<version>/...`: the group, the version and the rest."""
    if segs[0] == "api":
        return "", segs[1], segs[2:]
    return segs[1], segs[2], segs[3:]


@dataclass(frozen=True, slots=True)
class _Target:
    """What a resource path names (a collection when `name` is None)."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None
    watch: bool
    dry_run: bool


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeApiServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "fakekube"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this Nagle's algorithm and the
        # peer's delayed ACK add ~40 ms to every request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, code: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, payload: Obj | None) -> None:
        if payload is None:
            self.wfile.write(b"0\r\n\r\n")
        else:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body: Any = None
        record = RequestRecord(method, url.path, query, ctype, None)
        headers: dict[str, str] = {}
        try:
            if raw and ctype and "json" not in ctype:
                if method != "PATCH":  # PATCH reports its own 415 naming the patch type
                    raise ApiError(415, f"the fake only accepts JSON bodies, not {ctype!r}",
                                   reason="UnsupportedMediaType")
            elif raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise bad_request(f"couldn't decode the request body as JSON: {exc}") from exc
            record.body = body
            failure = fake._take_failure(method, url.path)
            if failure is not None:
                raise failure
            result = self._route(method, url.path, query, body, ctype, record)
            if result is None:  # a watch, already streamed
                return
            code, payload = result
        except ApiError as exc:
            code, payload, headers = exc.code, exc.status(), exc.headers
        except Exception as exc:
            fake.server_errors.append(traceback.format_exc())
            code, payload = 500, errors.status_body(500, "InternalError", f"fake: {exc!r}")
        record.status = code
        fake._log(record)
        self._send(code, payload, headers)

    # -- routing ----------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, ctype: str,
               record: RequestRecord) -> tuple[int, Any] | None:
        segs = [unquote(s) for s in path.split("/") if s]
        top = self._top_level(method, path, segs)
        if top is not None:
            return top
        group, version, rest = _group_version(segs)
        if not rest:
            return 200, self._resource_list(group, version)
        target = self._target(group, version, rest, query)
        if method == "GET":
            return self._get(target, query, record)
        if method == "POST":
            if target.name is not None:
                raise ApiError(405, "the server does not allow this method on the requested "
                                    "resource")
            return 201, self.server.fake.store.create(target.rt, target.namespace, body,
                                                      target.dry_run)
        if method in ("PUT", "PATCH"):
            return 200, self._update(method, target, body, ctype)
        if method == "DELETE":
            return 200, self._delete(target, query, body)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _top_level(self, method: str, path: str, segs: list[str]) -> tuple[int, Any] | None:
        """Health, version and group discovery; None for a path under a group version."""
        fake = self.server.fake
        if path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if segs == ["version"]:
            return 200, KUBE_VERSION
        if not segs or segs[0] not in ("api", "apis"):
            raise ApiError(404, "the server could not find the requested resource")
        if method != "GET" and len(segs) < 4 - (segs[0] == "api"):
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if segs == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [
                             {"clientCIDR": "0.0.0.0/0", "serverAddress": fake.address}]}
        if segs == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": fake._groups()}
        if segs[0] == "apis" and len(segs) == 2:
            for entry in fake._groups():
                if entry["name"] == segs[1]:
                    return 200, {"kind": "APIGroup", "apiVersion": "v1", **entry}
            raise ApiError(404, "the server could not find the requested resource")
        return None

    def _served(self, group: str, version: str) -> list[ResourceType]:
        store = self.server.fake.store
        with store.lock:
            served = [t for t in store.types.values() if (t.group, t.version) == (group, version)]
        if not served:
            raise ApiError(404, "the server could not find the requested resource")
        return served

    def _resource_list(self, group: str, version: str) -> Obj:
        served = self._served(group, version)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [e for t in served for e in t.discovery()]}

    def _target(self, group: str, version: str, rest: list[str],
                query: dict[str, str]) -> _Target:
        """What a path under a group version names: type, namespace, object, subresource."""
        store = self.server.fake.store
        self._served(group, version)
        watch = _truthy(query.get("watch"))
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            inner = store.find_type(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        rt = store.find_type(group, version, rest[0])
        if rt is None or (namespace is not None and not rt.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not rt.status_subresource):
            raise ApiError(404, "the server could not find the requested resource")
        if name is not None and rt.namespaced and namespace is None:
            raise ApiError(404, "the server could not find the requested resource")
        return _Target(rt, namespace, name, sub, watch, query.get("dryRun") == "All")

    def _get(self, target: _Target, query: dict[str, str],
             record: RequestRecord) -> tuple[int, Any] | None:
        store = self.server.fake.store
        rt, namespace = target.rt, target.namespace
        if target.name is not None:
            return 200, store.get(rt, namespace, target.name)
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.supports_field)
        if target.watch:
            record.watch = True
            self._watch(rt, namespace, query, labels, fields, record)
            return None
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
        token = query.get("continue")
        return 200, store.list_objects(rt, namespace, labels, fields, limit, token)

    def _update(self, method: str, target: _Target, body: Any, ctype: str) -> Obj:
        """PUT replaces the object (or its status), PATCH patches it."""
        if target.name is None:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        store = self.server.fake.store
        if method == "PUT":
            return store.update(target.rt, target.namespace, target.name, lambda _cur: body,
                                target.sub, dry_run=target.dry_run)
        patcher = self._patcher(target.rt, ctype, body)
        return store.update(target.rt, target.namespace, target.name, patcher, target.sub,
                            is_patch=True, dry_run=target.dry_run)

    def _delete(self, target: _Target, query: dict[str, str], body: Any) -> Obj:
        store = self.server.fake.store
        rt, namespace, name, dry_run = target.rt, target.namespace, target.name, target.dry_run
        if name is None:  # a collection
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rt.supports_field)
            with store.lock:
                listed = store.list_objects(rt, namespace, labels, fields)
                deleted = [store.delete(rt, i["metadata"].get("namespace"),
                                        i["metadata"]["name"], body, dry_run)[0]
                           for i in listed["items"]]
            return {**listed, "items": deleted}
        obj, gone = store.delete(rt, namespace, name, body, dry_run)
        if gone and not rt.custom:
            details: Obj = {"name": name, "kind": rt.plural, "uid": obj["metadata"]["uid"]}
            if rt.group:
                details["group"] = rt.group
            return {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": details}
        return obj

    @staticmethod
    def _patcher(rt: ResourceType, ctype: str, body: Any) -> Any:
        if ctype == "application/json-patch+json":
            return lambda cur: json_patch(cur, body)
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise bad_request("a merge patch body must be a JSON object")
            if ctype == "application/merge-patch+json":
                return lambda cur: merge_patch(cur, body)
            if rt.custom:
                raise ApiError(415, "the body of the request was in an unknown format - accepted "
                                    "media types include: application/json-patch+json, "
                                    "application/merge-patch+json, application/apply-patch+yaml",
                               reason="UnsupportedMediaType")
            return lambda cur: strategic_merge_patch(cur, body)
        raise ApiError(415, f"the fake does not support patch content type {ctype!r} (server-side "
                            "apply is not implemented)", reason="UnsupportedMediaType")

    def _watch(self, rt: ResourceType, namespace: str | None, query: dict[str, str],
               labels: Any, fields: Any, record: RequestRecord) -> None:
        fake = self.server.fake
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        initial = _truthy(query.get("sendInitialEvents"))
        if initial and (not bookmarks or query.get("resourceVersionMatch") != "NotOlderThan"):
            raise ApiError(422, "sendInitialEvents requires allowWatchBookmarks=true and "
                                "resourceVersionMatch=NotOlderThan", reason="Invalid")
        watcher = fake.store.watch(rt, namespace, labels, fields, query.get("resourceVersion"),
                                   initial)
        timeout = fake.watch_timeout
        if query.get("timeoutSeconds", "").isdigit():
            timeout = float(query["timeoutSeconds"])
        record.status = 200
        fake._log(record)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        fake._watch_count(+1)
        start = last_bookmark = time.monotonic()
        try:
            while True:
                remaining = start + timeout - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    events = watcher.next(min(remaining, _POLL))
                except ApiError as exc:
                    self._chunk({"type": "ERROR", "object": exc.status()})
                    break
                except WatchClosed:
                    self.close_connection = True
                    if fake._abrupt:
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    break
                for kind, obj in events:
                    self._chunk({"type": kind, "object": obj})
                if initial:
                    initial = False
                    self._chunk({"type": "BOOKMARK", "object": self._bookmark(
                        rt, watcher.cursor, {"k8s.io/initial-events-end": "true"})})
                    last_bookmark = time.monotonic()
                if bookmarks and time.monotonic() - last_bookmark >= fake.bookmark_interval:
                    self._chunk({"type": "BOOKMARK", "object": self._bookmark(rt, watcher.cursor)})
                    last_bookmark = time.monotonic()
                if not events and self._client_gone():
                    self.close_connection = True
                    return
            self._chunk(None)
        except OSError:
            self.close_connection = True
        finally:
            fake._watch_count(-1)

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, annotations: dict[str, str] | None = None) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


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
        self._httpd: _HTTPServer | None = None
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
        self._httpd = _HTTPServer((self.host, self.port), self)
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
