"""Plan -> one rendered NodeState document per node, rebuilt only where something changed.

The text of every document is byte for byte `flatroute.nodestate.to_json(from_plan(...))`
(tests check it), so publishers compare documents as strings and speakers hash what they
read. Building it the direct way costs ~0.4 ms a node (a NodeState, a dict, `str()` of a
dozen ipaddress objects, a sorted `json.dumps`): at 5,000 nodes that was most of a cold
publish. So the builder renders through templates:

- Most of a document is the same for every node of a rack: the fabric-wide BGP and SRv6
  settings, the ToRs' names, ASNs and addresses, and (per site) the SRv6 encapsulation
  routes. Only a dozen values differ per node (its name, ASN, router id, uplink and peering
  addresses, pod blocks, locator, SIDs).
- For each *shape* of node (rack, role, which values are present, how many blocks and SIDs)
  the builder renders one skeleton node whose per-node values are numbered placeholders,
  through the very same `from_plan` / `spec_doc` / `json.dumps` path, and keeps the text
  split at the placeholders. A node's document is then the template with its values filled
  in, formatted exactly as `str()` formats them.
- The site's encapsulation routes are serialised once per site and spliced in.

A node whose NodePlan, site routes and fabric-wide settings are unchanged keeps its previous
document object: a steady-state cycle renders nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from flatroute import tombstone
from flatroute.nodestate import (
    API_VERSION,
    KIND,
    NodeState,
    from_plan,
    from_spec,
    routes_doc,
    spec_doc,
)
from flatroute.plan.alloc import v6_text
from flatroute.plan.model import Ledger, NodePlan, Plan, Segment, SitePlan
from flatroute.plan.services import ServiceRoute


@dataclass(frozen=True, slots=True)
class Rendered:
    """One node's desired state, ready to publish."""

    node: str
    site: str
    rack: str
    text: str  # exactly nodestate.to_json(state)
    generation: str  # the document's generation (content hash of its spec)
    #: a tombstone (`flatroute.tombstone`): the node was removed from the fabric
    removed: bool = False

    def spec(self) -> dict[str, Any]:
        """The document's spec as data: what `nodestate.spec_doc` gives for this node."""
        spec: dict[str, Any] = json.loads(self.text)["spec"]
        return spec

    def state(self) -> NodeState:
        return from_spec(self.spec(), self.node)


def tombstones(ledger: Ledger, published: Collection[str], skip: Collection[str],
               where: dict[str, tuple[str, str]]) -> dict[str, Rendered]:
    """The tombstones of nodes that left the fabric and whose allocations are still reserved:
    every retired ledger entry that is neither published as a node nor held back. `where`
    gives a node's last (site, rack), for the publishers' labels."""
    out: dict[str, Rendered] = {}
    for name, entry in sorted(ledger.nodes.items()):
        if entry.retired_at is None or name in published or name in skip:
            continue
        removed = tombstone.Removed(name, entry.retired_at)
        site, rack = where.get(name, ("", ""))
        out[name] = Rendered(name, site, rack, tombstone.to_json(removed),
                             tombstone.generation(removed), removed=True)
    return out


@dataclass(eq=False, slots=True)
class _SiteRoutes:
    segments: tuple[Segment, ...]
    compact: str  # the routes as they stand in the compact document


class _Slot:
    """Stands for one per-node value while a template is rendered: it prints (and, through
    `json.dumps(default=str)`, serialises) as a marker no real value can contain."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __str__(self) -> str:
        return f"\x00slot{self.index}\x00"


_SLOT = re.compile(r'"\\u0000slot(-?\d+)\\u0000"')
_ROUTES = -1  # the template part that takes the site's routes


@dataclass(frozen=True, slots=True)
class _Template:
    literals: tuple[str, ...]  # len(order) + 1 pieces of text between the values
    order: tuple[int, ...]  # which value goes after each literal (_ROUTES: the routes)


class StateBuilder:
    """Remembers what it built last time; `build` returns every node's rendered state."""

    def __init__(self) -> None:
        self._sites: dict[str, _SiteRoutes] = {}
        self._nodes: dict[str, tuple[tuple[object, ...], Rendered]] = {}
        self._templates: dict[Hashable, _Template] = {}
        self._common: tuple[object, ...] | None = None
        #: how many documents the last build actually rendered (the rest were reused)
        self.rendered = 0

    def build(self, plan: Plan, skip: Collection[str] = (),
              services: Mapping[str, tuple[ServiceRoute, ...]] | None = None
              ) -> dict[str, Rendered]:
        """Rendered states of every planned node except those in `skip`, in plan order,
        each with its service routes from `services`."""
        sites: dict[str, _SiteRoutes] = {}
        for sp in plan.sites:
            prev = self._sites.get(sp.name)
            sites[sp.name] = prev if prev is not None and prev.segments == sp.segments \
                else _site_routes(sp)
        self._sites = sites
        common = (plan.fabric, plan.mtu, plan.bgp, plan.srv6)
        if common != self._common:
            self._templates = {}
            self._common = common
        # The plan without segments: from_plan then builds everything but the routes.
        bare = dataclasses.replace(
            plan, sites=tuple(dataclasses.replace(s, segments=()) for s in plan.sites),
            memo={})
        out: dict[str, Rendered] = {}
        nodes: dict[str, tuple[tuple[object, ...], Rendered]] = {}
        self.rendered = 0
        for node_plan in plan.nodes:
            if node_plan.name in skip:
                continue
            site = sites[node_plan.site]
            routes = (services or {}).get(node_plan.name, ())
            key: tuple[object, ...] = (common, node_plan, site, routes)
            cached = self._nodes.get(node_plan.name)
            if cached is not None and cached[0] == key:
                rendered = cached[1]
            elif routes:
                rendered = _render_direct(bare, node_plan, site, routes)
                self.rendered += 1
            else:
                rendered = self._render(bare, node_plan, site)
                self.rendered += 1
            nodes[node_plan.name] = (key, rendered)
            out[node_plan.name] = rendered
        self._nodes = nodes
        return out

    def _render(self, bare: Plan, node: NodePlan, site: _SiteRoutes) -> Rendered:
        shape, values = _shape_and_values(node)
        template = self._templates.get(shape)
        if template is None:
            template = _template(bare, node)
            self._templates[shape] = template
        parts = [template.literals[0]]
        for index, literal in zip(template.order, template.literals[1:], strict=True):
            parts.append(site.compact if index == _ROUTES else values[index])
            parts.append(literal)
        compact = "".join(parts)
        generation = hashlib.sha256(compact.encode()).hexdigest()[:16]
        # Keys sorted as json.dumps(sort_keys=True) would: apiVersion, generation, kind,
        # metadata, spec.
        head = json.dumps({"apiVersion": API_VERSION, "generation": generation, "kind": KIND,
                           "metadata": {"name": node.name}}, sort_keys=True,
                          separators=(",", ":"))
        text = f"{head[:-1]},\"spec\":{compact}}}\n"
        return Rendered(node.name, node.site, node.rack, text, generation)


def _render_direct(bare: Plan, node: NodePlan, site: _SiteRoutes,
                   services: tuple[ServiceRoute, ...]) -> Rendered:
    """A node with service routes, the direct way (`to_json(from_plan(...))`): few nodes
    carry them, and their routes change with endpoints rather than with the fabric."""
    spec = spec_doc(from_plan(bare, node, services))
    spec["srv6"]["routes"] = routes_doc(site.segments)
    compact = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    generation = hashlib.sha256(compact.encode()).hexdigest()[:16]
    doc = {"apiVersion": API_VERSION, "generation": generation, "kind": KIND,
           "metadata": {"name": node.name}, "spec": spec}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"
    return Rendered(node.name, node.site, node.rack, text, generation)


def _site_routes(sp: SitePlan) -> _SiteRoutes:
    # The routes document spec_doc makes, rendered once per site instead of once per node.
    return _SiteRoutes(sp.segments, json.dumps(routes_doc(sp.segments), sort_keys=True,
                                               separators=(",", ":")))


# -- templates ---------------------------------------------------------------------------------
def _shape_and_values(n: NodePlan) -> tuple[Hashable, list[str]]:
    """What the node's template depends on, and its per-node values as JSON text, in the
    order `_skeleton` numbers its placeholders."""
    values = [json.dumps(n.name)]
    if n.asn is not None:
        values.append(str(n.asn))
    if n.router_id is not None:
        values.append(f'"{n.router_id}"')
    ups = []
    for u in n.uplinks:
        ups.append((u.tor, u.ipv4 is None, u.ipv6 is None, u.unnumbered))
        if u.ipv4 is not None:
            values.append(f'"{u.ipv4}"')
        if u.ipv6 is not None:
            values.append(f'"{_iface6(u.ipv6)}"')
    peers = []
    for p in n.peers:
        peers.append((p.tor, p.asn, p.address, p.families, p.local_address is None,
                      p.ipv6_next_hop is None, p.bfd))
        if p.local_address is not None:
            values.append(f'"{_addr(p.local_address)}"')
        if p.ipv6_next_hop is not None:
            values.append(f'"{_addr(p.ipv6_next_hop)}"')
    for b4 in n.ipv4_blocks:
        values.append(f'"{b4}"')
    for b6 in n.ipv6_blocks:
        values.append(f'"{_net6(b6)}"')
    if n.locator is not None:
        values.append(f'"{_net6(n.locator)}"')
    for s in n.sids:
        values.append(f'"{v6_text(int(s.sid))}"')
    shape = (n.site, n.rack, n.role, n.asn is None, n.router_id is None, tuple(ups),
             tuple(peers), len(n.ipv4_blocks), len(n.ipv6_blocks), n.locator is None,
             tuple(s.behavior for s in n.sids), n.srv6_datapath)
    return shape, values


def _skeleton(n: NodePlan) -> NodePlan:
    """The node with each per-node value replaced by a numbered placeholder, numbered in the
    order `_shape_and_values` lists the values."""
    counter = iter(range(1 << 30))

    def slot(present: object = True) -> Any:
        return _Slot(next(counter)) if present is not None else None

    name = slot()
    asn = slot(n.asn)
    router_id = slot(n.router_id)
    uplinks = []
    for u in n.uplinks:
        uplinks.append(dataclasses.replace(u, ipv4=slot(u.ipv4), ipv6=slot(u.ipv6)))
    peers = []
    for p in n.peers:
        peers.append(dataclasses.replace(p, local_address=slot(p.local_address),
                                         ipv6_next_hop=slot(p.ipv6_next_hop)))
    return dataclasses.replace(
        n, name=name, asn=asn, router_id=router_id, uplinks=tuple(uplinks),
        peers=tuple(peers), ipv4_blocks=tuple(slot() for _ in n.ipv4_blocks),
        ipv6_blocks=tuple(slot() for _ in n.ipv6_blocks), locator=slot(n.locator),
        sids=tuple(dataclasses.replace(s, sid=slot()) for s in n.sids))


def _template(bare: Plan, n: NodePlan) -> _Template:
    """Render the node's skeleton the direct way and split the text at its placeholders."""
    spec = spec_doc(from_plan(bare, _skeleton(n)))
    spec["srv6"]["routes"] = _Slot(_ROUTES)
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    literals: list[str] = []
    order: list[int] = []
    pos = 0
    for m in _SLOT.finditer(text):
        literals.append(text[pos:m.start()])
        order.append(int(m.group(1)))
        pos = m.end()
    literals.append(text[pos:])
    return _Template(tuple(literals), tuple(order))


# -- values, formatted exactly as str() formats them (at a fraction of the cost) ----------------
def _addr(a: object) -> str:
    return v6_text(int(a)) if isinstance(a, IPv6Address) else str(a)


def _iface6(i: IPv6Interface) -> str:
    return f"{v6_text(int(i))}/{i.network.prefixlen}"


def _net6(n: IPv6Network | IPv4Network) -> str:
    return f"{v6_text(int(n.network_address))}/{n.prefixlen}"
