"""What a stored object looks like, and how every write shapes it: the body's kind and
apiVersion checked, the namespace and name, a Secret's data, a CRD's status, the schema."""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fakekube import errors
from fakekube.errors import ApiError, bad_request
from fakekube.resources import CRD_KEY, NAMESPACE_KEY, SECRET_KEY, CrdError, ResourceType, crd_types
from fakekube.schema import validate_and_prune

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)
TypeKey3 = tuple[str, str, str]  # (group, version, plural): how the store indexes its types

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(rt: ResourceType, obj: Obj) -> Obj:
    out: Obj = {"apiVersion": rt.api_version, "kind": rt.kind}
    out.update(copy.deepcopy(obj))
    out["apiVersion"] = rt.api_version
    out["kind"] = rt.kind
    return out


def meta_of(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


def check_body(rt: ResourceType, body: Any) -> Obj:
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


def check_namespace(rt: ResourceType, namespace: str | None, meta: Obj) -> None:
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


def validate_name(rt: ResourceType, name: Any) -> None:
    if rt.key == NAMESPACE_KEY:
        ok = isinstance(name, str) and len(name) <= 63 and bool(_LABEL.match(name))
        what = "a lowercase RFC 1123 label"
    else:
        ok = isinstance(name, str) and len(name) <= 253 and bool(_SUBDOMAIN.match(name))
        what = "a lowercase RFC 1123 subdomain"
    if not ok:
        raise errors.invalid(rt.kind, rt.group, str(name), "metadata.name",
                             f"Invalid value: {name!r}: must be {what}")


def prepare(rt: ResourceType, obj: Obj, types: Mapping[TypeKey3, ResourceType]) -> None:
    """Type-specific normalisation on every write (create and update)."""
    obj.pop("apiVersion", None)
    obj.pop("kind", None)
    meta = obj["metadata"]
    meta.pop("managedFields", None)
    if rt.key == SECRET_KEY:
        _prepare_secret(obj)
    if rt.key == CRD_KEY:
        _prepare_crd(rt, obj, meta, types)
    if rt.schema is not None:
        validate_and_prune(rt, obj)


def _prepare_secret(obj: Obj) -> None:
    """A Secret's stringData folded into data, data checked as base64, the type."""
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


def _prepare_crd(rt: ResourceType, obj: Obj, meta: Obj,
                 types: Mapping[TypeKey3, ResourceType]) -> None:
    """A CRD's versions checked (no clash with a built-in), its status filled in."""
    try:
        new_types = crd_types({"apiVersion": "apiextensions.k8s.io/v1", **obj,
                               "kind": "CustomResourceDefinition"})
    except CrdError as exc:
        raise errors.invalid(rt.kind, rt.group, str(meta.get("name")), "spec",
                             str(exc)) from exc
    for new in new_types:
        old = types.get((new.group, new.version, new.plural))
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
