"""The fake's HTTP front end: Kubernetes REST paths routed to the store's verbs (health,
version and discovery; get, list, create, replace, patch, delete), each request recorded.
Watches are streamed by watchstream.py."""

from __future__ import annotations

import contextlib
import json
import socket
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from fakekube import errors
from fakekube.errors import ApiError, bad_request
from fakekube.objects import Obj
from fakekube.patch import json_patch, merge_patch, strategic_merge_patch
from fakekube.resources import ResourceType
from fakekube.selectors import parse_field_selector, parse_label_selector
from fakekube.watchstream import WatchStreamHandler, truthy

if TYPE_CHECKING:
    from fakekube.server import FakeApiServer

KUBE_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fakekube",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
                "platform": "linux/amd64"}


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


def _group_version(segs: list[str]) -> tuple[str, str, list[str]]:
    """`/api/v1/...` or `/apis/<group>/<version>/...`: the group, the version and the rest."""
    if segs[0] == "api":
        return "", segs[1], segs[2:]
    return segs[1], segs[2], segs[3:]


@dataclass(frozen=True, slots=True)
class Target:
    """What a resource path names (a collection when `name` is None)."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None
    watch: bool
    dry_run: bool


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeApiServer) -> None:
        self.fake = fake
        super().__init__(address, Handler)


class Handler(WatchStreamHandler):
    """One connection's requests: plumbing, then routing to the store's verbs."""

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
                query: dict[str, str]) -> Target:
        """What a path under a group version names: type, namespace, object, subresource."""
        store = self.server.fake.store
        self._served(group, version)
        watch = truthy(query.get("watch"))
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
        return Target(rt, namespace, name, sub, watch, query.get("dryRun") == "All")

    def _get(self, target: Target, query: dict[str, str],
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

    def _update(self, method: str, target: Target, body: Any, ctype: str) -> Obj:
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

    def _delete(self, target: Target, query: dict[str, str], body: Any) -> Obj:
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
