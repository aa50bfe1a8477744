"""flatroute's custom resources as values: NodeState spec/status documents, conditions,
and the patch helpers every writer uses (merge-patch diffs, retry on 409)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from flatroute import tombstone
from flatroute.nodestate import NodeState
from flatroute.tombstone import Removed
from kube.api import Conflict, Resource
from kube.crds import API_VERSION, GROUP, VERSION

FABRICCONFIGS = Resource(GROUP, VERSION, "fabricconfigs", "FabricConfig", False)
RACKPEERINGS = Resource(GROUP, VERSION, "rackpeerings", "RackPeering", False)
NODESTATES = Resource(GROUP, VERSION, "nodestates", "NodeState", False)

#: labels and annotations flatroute puts on NodeStates
MANAGED_BY = "app.kubernetes.io/managed-by"
SITE_LABEL = "flatroute.dev/site"
RACK_LABEL = "flatroute.dev/rack"
FABRIC_LABEL = "flatroute.dev/fabric"
SPEC_HASH = "flatroute.dev/spec-hash"

T = TypeVar("T")


def strip_nulls(value: Any) -> Any:
    """The document without null members: the API server prunes non-nullable nulls, and
    `nodestate.from_spec` reads a missing member exactly as a null one."""
    if isinstance(value, Mapping):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def canonical_hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()[:16]


def merge_patch_for(current: Any, desired: Any) -> Any:
    """An RFC 7386 merge patch turning `current` into `desired` (null deletes a member)."""
    if not isinstance(current, Mapping) or not isinstance(desired, Mapping):
        return desired
    out: dict[str, Any] = {}
    for key in current:
        if key not in desired:
            out[key] = None
    for key, value in desired.items():
        if key not in current:
            out[key] = value
        elif current[key] != value:
            out[key] = merge_patch_for(current[key], value)
    return out


def retry_on_conflict(fn: Callable[[], T], attempts: int = 5, delay: float = 0.05) -> T:
    """Run `fn` (which re-reads what it changes) again on 409, a few times."""
    for i in range(attempts):
        try:
            return fn()
        except Conflict:
            if i == attempts - 1:
                raise
            time.sleep(delay * (2 ** i))
    raise AssertionError("unreachable")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_state_object(node: str, spec: Mapping[str, Any], spec_hash: str, *, site: str,
                      rack: str, fabric: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "NodeState",
            "metadata": {"name": node,
                         "labels": {MANAGED_BY: "flatroute-controller", SITE_LABEL: site,
                                    RACK_LABEL: rack, FABRIC_LABEL: fabric},
                         "annotations": {SPEC_HASH: spec_hash}},
            "spec": dict(spec)}


def parse_node_state(obj: Mapping[str, Any]) -> NodeState | Removed:
    """A NodeState custom resource -> the NodeState value, or the tombstone of a removed node
    (InvalidInput with field paths)."""
    return tombstone.from_spec(obj.get("spec"),
                               f"NodeState/{(obj.get('metadata') or {}).get('name')}")


# -- conditions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str = ""


def merge_conditions(previous: Sequence[Mapping[str, Any]] | None,
                     wanted: Sequence[Condition], generation: int | None,
                     now: str | None = None) -> list[dict[str, Any]]:
    """metav1.Conditions: lastTransitionTime moves only when a condition's status changes,
    so writing the same conditions again produces the same document (no churn)."""
    prev = {str(c.get("type")): c for c in previous or () if isinstance(c, Mapping)}
    out = []
    for c in wanted:
        old = prev.get(c.type)
        changed = old is None or old.get("status") != c.status
        ts = (now or now_rfc3339()) if changed or old is None else str(
            old.get("lastTransitionTime"))
        doc: dict[str, Any] = {"type": c.type, "status": c.status, "reason": c.reason,
                               "message": c.message, "lastTransitionTime": ts}
        if generation is not None:
            doc["observedGeneration"] = generation
        out.append(doc)
    return out


# -- what a speaker reports -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionStatus:
    peer: str  # the ToR
    state: str  # BGP FSM state, e.g. Established, Active, Idle
    address: str | None = None
    asn: int | None = None
    prefixes_received: int = 0
    last_error: str | None = None

    @property
    def established(self) -> bool:
        return self.state.lower() == "established"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One speaker's report: the speaker fills it from its kernel and its BGP sessions."""

    applied: bool  # the spec below was applied (kernel and ExaBGP hold it)
    spec_hash: str | None = None  # canonical_hash of the applied spec
    generation: int | None = None  # metadata.generation of the applied spec
    sessions: tuple[SessionStatus, ...] = ()
    announced: tuple[str, ...] = ()
    learned_routes: int = 0
    encap_routes: int = 0
    sids: tuple[str, ...] = ()
    missing_features: tuple[str, ...] = ()
    last_error: str | None = None
    #: kernel | bpf: the SRv6 datapath the speaker runs (None: SRv6 off)
    datapath: str | None = None
    #: the capability probe: (check, ok, reason)
    capabilities: tuple[tuple[str, bool, str], ...] = ()
    extra_conditions: tuple[Condition, ...] = field(default=())
    #: service routes: prefix, service, source, reason, communities, announcedTo
    services: tuple[Mapping[str, Any], ...] = ()

    def conditions(self) -> list[Condition]:
        up = sum(1 for s in self.sessions if s.established)
        total = len(self.sessions)
        if self.last_error:
            applied = Condition("Applied", "False", "ApplyFailed", self.last_error)
        elif not self.applied:
            applied = Condition("Applied", "False", "Pending", "desired state not applied yet")
        else:
            applied = Condition("Applied", "True", "Applied", "")
        if total and up == total:
            bgp = Condition("BGPEstablished", "True", "AllEstablished", f"{up}/{total}")
        elif up:
            bgp = Condition("BGPEstablished", "False", "Degraded", f"{up}/{total} established")
        else:
            bgp = Condition("BGPEstablished", "False", "NoSession",
                            f"0/{total} established" if total else "no peers")
        ready = applied.status == "True" and up > 0
        why = ("Ready" if ready else applied.reason if applied.status != "True"
               else "NoSession")
        out = [Condition("Ready", "True" if ready else "False", why,
                         "" if ready else applied.message or bgp.message), applied, bgp]
        if self.missing_features:
            out.append(Condition("KernelFeatures", "False", "Missing",
                                 ", ".join(self.missing_features)))
        return out + list(self.extra_conditions)

    def to_doc(self, previous: Mapping[str, Any] | None = None,
               now: str | None = None) -> dict[str, Any]:
        """The status subresource document. Deterministic: the same report gives the same
        document (timestamps carried over from `previous` unless a condition flips)."""
        up = sum(1 for s in self.sessions if s.established)
        doc: dict[str, Any] = {
            "sessionsUp": f"{up}/{len(self.sessions)}",
            "sessionsEstablished": up, "sessionsTotal": len(self.sessions),
            "sessions": [strip_nulls({"peer": s.peer, "state": s.state, "address": s.address,
                                      "asn": s.asn, "prefixesReceived": s.prefixes_received,
                                      "lastError": s.last_error}) for s in self.sessions],
            "announced": sorted(self.announced), "announcedCount": len(self.announced),
            "installed": {"learned": self.learned_routes, "encap": self.encap_routes,
                          "sids": sorted(self.sids)},
            "missingFeatures": sorted(self.missing_features),
            "lastError": self.last_error or "",
        }
        if self.services:
            doc["services"] = [dict(x) for x in self.services]
        if self.datapath:
            doc["srv6Datapath"] = self.datapath
        if self.capabilities:
            doc["capabilities"] = [strip_nulls({"name": n, "ok": ok, "reason": why or None})
                                   for n, ok, why in self.capabilities]
        if self.generation is not None:
            doc["observedGeneration"] = self.generation
        if self.spec_hash:
            doc["appliedSpecHash"] = self.spec_hash
        prev_conds = (previous or {}).get("conditions")
        doc["conditions"] = merge_conditions(
            prev_conds if isinstance(prev_conds, list) else None, self.conditions(),
            self.generation, now)
        return doc
