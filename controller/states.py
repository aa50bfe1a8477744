"""Plan -> one rendered NodeState document per node, rebuilt only where something changed.

Every node of a site carries the same SRv6 encapsulation routes (the site's segments): at 5,000
nodes that is most of each document. So the routes are built and serialised once per site, and
spliced into each node's document; a node whose NodePlan, site routes and fabric-wide settings
are unchanged keeps its previous document object. The text is byte for byte
`flatroute.nodestate.to_json` (tests check it), so publishers can compare documents as strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass

from flatroute.nodestate import API_VERSION, KIND, EncapRoute, NodeState, from_plan, spec_doc
from flatroute.plan.model import Plan, Segment, SitePlan

_MARK = json.dumps("\x00flatroute:srv6-routes\x00")  # never produced by real content


@dataclass(frozen=True, slots=True)
class Rendered:
    """One node's desired state, ready to publish."""

    node: str
    state: NodeState
    text: str  # exactly nodestate.to_json(state)
    generation: str  # the document's generation (content hash of its spec)


@dataclass(eq=False, slots=True)
class _SiteRoutes:
    segments: tuple[Segment, ...]
    routes: tuple[EncapRoute, ...]
    compact: str | None = None  # the routes as they stand in the compact document


class StateBuilder:
    """Remembers what it built last time; `build` returns every node's rendered state."""

    def __init__(self) -> None:
        self._sites: dict[str, _SiteRoutes] = {}
        self._nodes: dict[str, tuple[tuple[object, ...], Rendered]] = {}
        #: how many documents the last build actually rendered (the rest were reused)
        self.rendered = 0

    def build(self, plan: Plan, skip: Collection[str] = ()) -> dict[str, Rendered]:
        """Rendered states of every planned node except those in `skip`, in plan order."""
        sites: dict[str, _SiteRoutes] = {}
        for sp in plan.sites:
            prev = self._sites.get(sp.name)
            sites[sp.name] = prev if prev is not None and prev.segments == sp.segments \
                else _site_routes(sp)
        self._sites = sites
        # The plan without segments: from_plan then builds everything but the routes.
        bare = dataclasses.replace(
            plan, sites=tuple(dataclasses.replace(s, segments=()) for s in plan.sites),
            memo={})
        common = (plan.fabric, plan.mtu, plan.bgp, plan.srv6)
        out: dict[str, Rendered] = {}
        nodes: dict[str, tuple[tuple[object, ...], Rendered]] = {}
        self.rendered = 0
        for node_plan in plan.nodes:
            if node_plan.name in skip:
                continue
            site = sites[node_plan.site]
            key: tuple[object, ...] = (common, node_plan, site)
            cached = self._nodes.get(node_plan.name)
            if cached is not None and cached[0] == key:
                rendered = cached[1]
            else:
                rendered = _render(from_plan(bare, node_plan), site)
                self.rendered += 1
            nodes[node_plan.name] = (key, rendered)
            out[node_plan.name] = rendered
        self._nodes = nodes
        return out


def _site_routes(sp: SitePlan) -> _SiteRoutes:
    # The same conversion from_plan makes, once per site instead of once per node.
    routes = tuple(EncapRoute(s.prefix, s.segments, s.target, s.policy) for s in sp.segments)
    return _SiteRoutes(sp.segments, routes)


def _render(bare: NodeState, site: _SiteRoutes) -> Rendered:
    state = dataclasses.replace(bare, encap_routes=site.routes)
    if site.compact is None:
        docs = spec_doc(state)["srv6"]["routes"]
        site.compact = json.dumps(docs, sort_keys=True, separators=(",", ":"))
    spec = spec_doc(bare)
    spec["srv6"]["routes"] = json.loads(_MARK)
    # The same canonical compact form as nodestate.to_json, with the site's routes spliced in.
    compact = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    compact = compact.replace(_MARK, site.compact, 1)
    generation = hashlib.sha256(compact.encode()).hexdigest()[:16]
    # Keys sorted as json.dumps(sort_keys=True) would: apiVersion, generation, kind, metadata,
    # spec.
    head = json.dumps({"apiVersion": API_VERSION, "generation": generation, "kind": KIND,
                       "metadata": {"name": bare.node}}, sort_keys=True,
                      separators=(",", ":"))
    text = f"{head[:-1]},\"spec\":{compact}}}\n"
    return Rendered(bare.node, state, text, generation)
