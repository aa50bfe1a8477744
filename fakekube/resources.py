"""Resource types the fake serves: a few built-ins plus anything registered from a CRD."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = (
    "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
)
METADATA_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served group/version/resource.

    Objects are stored per (group, plural), so every served version of a CRD sees the same
    objects; reads rewrite ``apiVersion`` (the CRD ``None`` conversion strategy).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()
    custom: bool = False  # custom resource semantics (generation, no unconditional update)
    extra_fields: tuple[str, ...] = ()  # field selector paths beyond metadata.name/namespace
    schema: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def allow_unconditional_update(self) -> bool:
        return not self.custom

    @property
    def tracks_generation(self) -> bool:
        return self.custom

    def supports_field(self, name: str) -> bool:
        return name in METADATA_FIELDS or name in self.extra_fields

    def discovery(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        entries = [entry]
        if self.status_subresource:
            entries.append({
                "name": f"{self.plural}/status",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            })
        return entries


BUILTINS: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", True, ("ns",),
                 extra_fields=("status.phase",)),
    ResourceType("", "v1", "nodes", "Node", False, "node", True, ("no",),
                 extra_fields=("spec.unschedulable",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", False, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True, "secret", False, (),
                 extra_fields=("type",)),
    ResourceType("", "v1", "events", "Event", True, "event", False, ("ev",),
                 extra_fields=("involvedObject.name", "involvedObject.kind", "reason", "type")),
    ResourceType("", "v1", "services", "Service", True, "service", True, ("svc",),
                 extra_fields=("spec.clusterIP", "spec.type")),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True,
                 "endpointslice", False, ()),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", False, "customresourcedefinition", True,
                 ("crd", "crds")),
)
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
SECRET_KEY = ("", "secrets")


class CrdError(ValueError):
    """The manifest is not a CustomResourceDefinition the fake can serve (field path first)."""


def _need(mapping: Mapping[str, Any], key: str, path: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping or mapping[key] in (None, ""):
        raise CrdError(f"{path}.{key}: Required value")
    return mapping[key]


def crd_types(manifest: Mapping[str, Any]) -> list[ResourceType]:
    """The served versions of an ``apiextensions.k8s.io/v1`` CustomResourceDefinition."""
    if manifest.get("kind") != "CustomResourceDefinition":
        raise CrdError(f"kind: expected CustomResourceDefinition, got {manifest.get('kind')!r}")
    if manifest.get("apiVersion") != "apiextensions.k8s.io/v1":
        raise CrdError(f"apiVersion: expected apiextensions.k8s.io/v1, got "
                       f"{manifest.get('apiVersion')!r}")
    spec = _need(manifest, "spec", "")
    group = str(_need(spec, "group", "spec"))
    if "." not in group:
        raise CrdError(f"spec.group: Invalid value: {group!r}: should be a domain with at least "
                       "one dot")
    names = _need(spec, "names", "spec")
    plural = str(_need(names, "plural", "spec.names"))
    kind = str(_need(names, "kind", "spec.names"))
    name = manifest.get("metadata", {}).get("name")
    if name != f"{plural}.{group}":
        raise CrdError(f"metadata.name: Invalid value: {name!r}: must be spec.names.plural+"
                       f"\".\"+spec.group ({plural}.{group})")
    scope = _need(spec, "scope", "spec")
    if scope not in ("Namespaced", "Cluster"):
        raise CrdError(f"spec.scope: Unsupported value: {scope!r}")
    versions = _need(spec, "versions", "spec")
    if not isinstance(versions, list) or not versions:
        raise CrdError("spec.versions: Required value")
    if sum(1 for v in versions if v.get("storage")) != 1:
        raise CrdError("spec.versions: Invalid value: must have exactly one version marked as "
                       "storage version")
    types: list[ResourceType] = []
    for index, version in enumerate(versions):
        vname = _need(version, "name", f"spec.versions[{index}]")
        if not version.get("served", False):
            continue
        subresources = version.get("subresources") or {}
        selectable = tuple(
            str(f.get("jsonPath", "")).lstrip(".") for f in version.get("selectableFields") or ()
        )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(ResourceType(
            group=group,
            version=str(vname),
            plural=plural,
            kind=kind,
            namespaced=scope == "Namespaced",
            singular=str(names.get("singular") or kind.lower()),
            status_subresource="status" in subresources,
            short_names=tuple(names.get("shortNames") or ()),
            custom=True,
            extra_fields=selectable,
            schema=schema,
        ))
    return types
