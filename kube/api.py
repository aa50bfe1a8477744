"""The one adapter to the Kubernetes API: JSON documents in and out, typed errors.

Every call goes through the `kubernetes` client's typed API classes with
`_preload_content=False`, so the client's model classes never deserialise anything: callers
see the JSON the server sent (unknown fields intact). Errors become `KubeError` subclasses
(`Conflict` 409, `NotFound` 404, `Gone` 410); transport failures are `KubeError` with
status 0. All are `AdapterError`s.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from flatroute.errors import AdapterError

Obj = dict[str, Any]
PatchKind = Literal["merge", "json"]
_PATCH_TYPES = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


NODES = Resource("", "v1", "nodes", "Node", False)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
SERVICES = Resource("", "v1", "services", "Service", True)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
EVENTS = Resource("", "v1", "events", "Event", True)
#: `namespace=ALL_NAMESPACES` lists and watches a namespaced built-in across every namespace
ALL_NAMESPACES = "*"
_BUILTIN_GROUPS = ("", "coordination.k8s.io", "discovery.k8s.io")
_KINDS = {"nodes": "node", "configmaps": "config_map", "leases": "lease",
          "services": "service", "endpointslices": "endpoint_slice", "events": "event"}


class KubeError(AdapterError):
    """A failed API call; `status` is the HTTP status (0: no answer from the server)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"kubernetes API: {status} {reason}: {message}" if status
                         else f"kubernetes API unreachable: {message}")


class Conflict(KubeError):
    """409: the object changed since we read it (or already exists)."""


class NotFound(KubeError):
    """404."""


class Gone(KubeError):
    """410: the resourceVersion is too old; relist."""


def _error(status: int, reason: str, message: str) -> KubeError:
    cls = {409: Conflict, 404: NotFound, 410: Gone}.get(status, KubeError)
    return cls(status, reason, message)


def _from_exception(exc: BaseException) -> KubeError:
    from kubernetes.client import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason, message = str(exc.reason or ""), str(exc.reason or "")
        try:
            body = json.loads(exc.body or "{}")
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or message)
        except (ValueError, TypeError, AttributeError):
            pass
        return _error(status, reason, message)
    return KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}")


def _transport_errors() -> tuple[type[BaseException], ...]:
    import urllib3
    from kubernetes.client import ApiException

    return (ApiException, urllib3.exceptions.HTTPError, OSError)


class WatchStream:
    """One open watch: iterate for events (dicts with `type` and `object`); `close()` from any
    thread ends the iteration."""

    def __init__(self, response: Any) -> None:
        self._resp = response

    def __iter__(self) -> Iterator[Obj]:
        from kubernetes.watch import watch

        lines: Any = watch.iter_resp_lines  # untyped in the client
        try:
            for line in lines(self._resp):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeError(0, "BadWatchEvent", f"undecodable watch line: {exc}") from exc
                if isinstance(event, dict):
                    yield event
        except KubeError:
            raise
        except _transport_errors() as exc:
            raise _from_exception(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        import socket

        resp = self._resp
        try:
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with contextlib.suppress(Exception):  # best effort on a broken connection
            resp.release_conn()


class KubeApi:
    """Typed thin adapter over a `kubernetes.client.ApiClient`: JSON in, JSON out."""

    def __init__(self, api_client: Any, *, timeout: float = 30.0) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.timeout = timeout
        self._core = client.CoreV1Api(api_client)
        self._coord = client.CoordinationV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._discovery = client.DiscoveryV1Api(api_client)

    # -- plumbing -----------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
            data = resp.data
        except _transport_errors() as exc:
            raise _from_exception(exc) from exc
        try:
            doc = json.loads(data) if data else {}
        except ValueError as exc:
            raise KubeError(0, "BadResponse", f"undecodable response: {exc}") from exc
        return doc if isinstance(doc, dict) else {}

    def _fn(self, res: Resource, verb: str, namespace: str | None = None
            ) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The client method for `verb` on `res`, and the leading arguments it needs."""
        if res.group not in _BUILTIN_GROUPS:
            scope = "namespaced" if res.namespaced else "cluster"
            name = {"list": f"list_{scope}_custom_object", "get": f"get_{scope}_custom_object",
                    "create": f"create_{scope}_custom_object",
                    "replace": f"replace_{scope}_custom_object",
                    "patch": f"patch_{scope}_custom_object",
                    "patch_status": f"patch_{scope}_custom_object_status",
                    "delete": f"delete_{scope}_custom_object"}[verb]
            return getattr(self._custom, name), (res.group, res.version)
        api = {"": self._core, "coordination.k8s.io": self._coord,
               "discovery.k8s.io": self._discovery}[res.group]
        kind = _KINDS[res.plural]
        if verb == "list" and res.namespaced and namespace == ALL_NAMESPACES:
            return getattr(api, f"list_{kind}_for_all_namespaces"), ()
        scope = "namespaced_" if res.namespaced else ""
        verb_name = {"get": "read", "patch_status": "patch"}.get(verb, verb)
        suffix = "_status" if verb == "patch_status" else ""
        return getattr(api, f"{verb_name}_{scope}{kind}{suffix}"), ()

    @staticmethod
    def _args(res: Resource, lead: tuple[Any, ...], namespace: str | None,
              name: str | None = None) -> list[Any]:
        """Positional arguments in the client's order: group, version, [namespace], plural,
        name for custom objects; name, namespace for built-ins."""
        if lead:
            out: list[Any] = [*lead]
            if res.namespaced:
                out.append(namespace or "default")
            out.append(res.plural)
            if name is not None:
                out.append(name)
            return out
        out = [] if name is None else [name]
        if res.namespaced and namespace != ALL_NAMESPACES:
            out.append(namespace or "default")
        return out

    # -- verbs --------------------------------------------------------------------------------
    def list(self, res: Resource, *, namespace: str | None = None,
             label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], str]:
        """Every matching object and the list's resourceVersion (to watch from)."""
        fn, lead = self._fn(res, "list", namespace)
        kw: dict[str, Any] = {}
        if label_selector:
            kw["label_selector"] = label_selector
        if field_selector:
            kw["field_selector"] = field_selector
        doc = self._call(fn, *self._args(res, lead, namespace), **kw)
        items = doc.get("items") or []
        return [i for i in items if isinstance(i, dict)], str(
            (doc.get("metadata") or {}).get("resourceVersion") or "")

    def watch(self, res: Resource, resource_version: str, *, namespace: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_seconds: int = 300) -> WatchStream:
        """Open a watch from `resource_version` with bookmarks; the server ends it after
        `timeout_seconds` (the client gives up reading 30 s later)."""
        fn, lead = self._fn(res, "list", namespace)
        kw: dict[str, Any] = {"watch": True, "allow_watch_bookmarks": True,
                              "resource_version": resource_version,
                              "timeout_seconds": timeout_seconds,
                              "_request_timeout": (10, timeout_seconds + 30)}
        if label_selector:
            kw["label_selector"] = label_selector
        if field_selector:
            kw["field_selector"] = field_selector
        try:
            resp = fn(*self._args(res, lead, namespace), _preload_content=False, **kw)
        except _transport_errors() as exc:
            raise _from_exception(exc) from exc
        return WatchStream(resp)

    def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj | None:
        fn, lead = self._fn(res, "get")
        try:
            return self._call(fn, *self._args(res, lead, namespace, name))
        except NotFound:
            return None

    def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        fn, lead = self._fn(res, "create")
        return self._call(fn, *self._args(res, lead, namespace), body)

    def replace(self, res: Resource, name: str, body: Obj,
                namespace: str | None = None) -> Obj:
        """PUT: fails with Conflict unless body.metadata.resourceVersion is current."""
        fn, lead = self._fn(res, "replace")
        return self._call(fn, *self._args(res, lead, namespace, name), body)

    def patch(self, res: Resource, name: str, body: Any, *, kind: PatchKind = "merge",
              status: bool = False, namespace: str | None = None) -> Obj:
        """A merge (RFC 7386) or JSON (RFC 6902) patch, of the object or its status."""
        fn, lead = self._fn(res, "patch_status" if status else "patch")
        return self._call(fn, *self._args(res, lead, namespace, name), body,
                          _content_type=_PATCH_TYPES[kind])

    def delete(self, res: Resource, name: str, namespace: str | None = None) -> None:
        fn, lead = self._fn(res, "delete")
        with contextlib.suppress(NotFound):
            self._call(fn, *self._args(res, lead, namespace, name))


def connect(kubeconfig: str | None = None, server: str | None = None,
            context: str | None = None) -> KubeApi:
    """An API adapter: `server` (plain URL, no auth: the test fake), else `kubeconfig`, else
    the in-cluster service account, else the default kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kconfig

    config: Any = kconfig  # its loaders are untyped
    cfg = client.Configuration()
    if server:
        cfg.host = server
        cfg.verify_ssl = not server.startswith("http://")
    elif kubeconfig:
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=cfg)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(context=context, client_configuration=cfg)
    return KubeApi(client.ApiClient(cfg))
