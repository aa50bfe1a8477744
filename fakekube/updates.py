"""The update and delete rules: an update's preconditions, the object it writes (the status
subresource, the server's metadata), the generation, and a delete's preconditions."""

from __future__ import annotations

import copy
from typing import Any

from fakekube import errors
from fakekube.errors import bad_request
from fakekube.objects import Obj
from fakekube.resources import NAMESPACE_KEY, ResourceType

_SERVER_META = (
    "uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
    "deletionGracePeriodSeconds", "generation", "resourceVersion", "selfLink",
)



def check_update_preconditions(rt: ResourceType, namespace: str | None, name: str, meta: Obj,
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


def updated_object(rt: ResourceType, current: Obj, candidate: Obj,
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


def bump_generation(rt: ResourceType, new: Obj, current: Obj) -> None:
    """metadata.generation goes up when anything but metadata (and a status subresource) changed."""
    if not rt.tracks_generation:
        return
    ignored = ("metadata", "status") if rt.status_subresource else ("metadata",)
    if ({k: v for k, v in new.items() if k not in ignored}
            != {k: v for k, v in current.items() if k not in ignored}):
        new["metadata"]["generation"] = int(current["metadata"].get("generation", 0)) + 1


def check_delete_preconditions(rt: ResourceType, name: str, meta: Obj, options: Any) -> None:
    """A delete's `preconditions` (uid, resourceVersion) against the stored object."""
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
