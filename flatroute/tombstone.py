"""The NodeState tombstone: "this node was removed from the fabric", said out loud.

A speaker must tell three cases apart, and only one of them may make it withdraw:
- not published yet: no document at all (a new node, or a controller that has not run);
- unreadable: a document it cannot read or that fails its checks (or one that vanished):
  nothing of it is applied, the last good state stays in force;
- removed: the controller says so, with this document. Only then does the speaker withdraw
  every announcement at once and end its sessions with a NOTIFICATION.

A missing document never means "removed": a wiped state directory, a CRD reinstalled (which
deletes every NodeState) or a controller started on an empty ledger must not take nodes off the
fabric. The controller publishes the tombstone as long as the node's allocations are reserved
(its `--release-grace`) and removes it when they are released, so a block is never announced
by a removed node while another node holds it.

The document has the NodeState envelope (a file in static mode, the spec of the NodeState
resource in Kubernetes mode); its spec carries the node's name and `removed`:

    {"apiVersion": "flatroute.dev/v1", "kind": "NodeState", "metadata": {"name": "n3"},
     "spec": {"node": "n3", "removed": {"at": "2026-01-01T00:00:30+00:00",
                                        "reason": "not in the fabric"}},
     "generation": "<spec hash>"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flatroute import nodestate
from flatroute.errors import InvalidInput, field_error
from flatroute.nodestate import NodeState

#: why the controller removed a node (the only reason so far)
NOT_IN_FABRIC = "not in the fabric"


@dataclass(frozen=True, slots=True)
class Removed:
    node: str
    at: str  # when the node left the fabric (the ledger's retiredAt), ISO 8601
    reason: str = NOT_IN_FABRIC


def spec_doc(r: Removed) -> dict[str, Any]:
    return {"node": r.node, "removed": {"at": r.at, "reason": r.reason}}


def generation(r: Removed) -> str:
    return nodestate.spec_hash(spec_doc(r))


def to_json(r: Removed) -> str:
    """The published document: the same envelope and encoding as `nodestate.to_json`."""
    spec = spec_doc(r)
    doc = {"apiVersion": nodestate.API_VERSION, "kind": nodestate.KIND,
           "metadata": {"name": r.node}, "spec": spec, "generation": nodestate.spec_hash(spec)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def is_tombstone(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("removed") is not None


def from_spec(spec: Any, source: str = "<node state>") -> NodeState | Removed:
    """A NodeState spec, or a tombstone; raises InvalidInput naming the bad field."""
    if not is_tombstone(spec):
        return nodestate.from_spec(spec, source)
    removed = spec["removed"]
    node = spec.get("node")
    errors = []
    if not isinstance(node, str) or not node:
        errors.append(field_error(source, "spec.node", "must be the node's name", node))
    if not isinstance(removed, dict):
        errors.append(field_error(source, "spec.removed", "must be a mapping with at and "
                                  "reason", removed))
        raise InvalidInput(errors)
    at, reason = removed.get("at"), removed.get("reason", NOT_IN_FABRIC)
    if not isinstance(at, str) or not at:
        errors.append(field_error(source, "spec.removed.at", "must be a time (ISO 8601)", at))
    if not isinstance(reason, str):
        errors.append(field_error(source, "spec.removed.reason", "must be text", reason))
    if errors:
        raise InvalidInput(errors)
    return Removed(str(node), str(at), str(reason))


def from_json(text: str, source: str = "<node state>") -> NodeState | Removed:
    """A published document: a NodeState, or a tombstone (InvalidInput when neither)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([field_error(source, "", f"not valid JSON: {exc}")]) from exc
    if not isinstance(doc, dict) or doc.get("kind") != nodestate.KIND:
        raise InvalidInput([field_error(source, "kind", f"must be {nodestate.KIND}",
                                        doc.get("kind") if isinstance(doc, dict) else doc)])
    return from_spec(doc.get("spec"), source)
