"""The planner: fabric + ledger (+ the previous plan) -> Plan. Pure and deterministic.

Nodes are planned in name order. Allocations already in the ledger are claimed first, so a
node keeps its ASN, blocks, locator and uplink addresses for life; new nodes take the first
free ones (`allocate`). Each node's plan is then built from its allocations (`nodes`), and
each site's SRv6 segments from the node plans (`srv6`). Nodes that left the fabric keep their
allocations (marked retired) until the caller expires them after a grace period
(`flatroute.plan.ledger.expire`).

Re-planning reuses the previous plan's NodePlan for every node whose inputs did not change, so
the work of a re-plan follows the size of the change.

Every part reports what it cannot do to one Problems channel: node problems end up in
`Plan.problems`; fabric problems (a waypoint with no SID) raise InvalidInput here, at the end.

A cold plan of thousands of nodes makes hundreds of thousands of objects, none in a reference
cycle: callers that plan at scale pause the cyclic collector around it (the controller around
its whole cycle, `flatroute plan`, the benchmarks; see `flatroute.gcpause`).
"""

from __future__ import annotations

from flatroute.fabric.model import Fabric, Node, Rack, Site
from flatroute.plan.allocate import Allocator
from flatroute.plan.model import Ledger, LedgerEntry, NodePlan, Plan, Srv6Settings
from flatroute.plan.nodes import NodePlanner
from flatroute.plan.problems import Problems
from flatroute.plan.srv6 import SitePlanner

RETIRED_UNKNOWN = "1970-01-01T00:00:00+00:00"
_NO_ENTRY = LedgerEntry()
#: what each node's plan was made from, beside the plan (see _Memo.key)
Memo = dict[str, tuple[object, NodePlan]]


def plan(
    fabric: Fabric,
    ledger: Ledger | None = None,
    previous: Plan | None = None,
    now: str | None = None,
) -> Plan:
    """Compute the whole plan. `now` (ISO 8601) stamps nodes that just left the fabric."""
    f = fabric
    ledger = ledger or Ledger()
    problems = Problems(f.source)
    alloc = Allocator(f, problems)
    nodes = sorted(f.nodes, key=lambda n: n.name)
    entries = alloc.claim(nodes, ledger)
    rack_asns = alloc.rack_asns(ledger)
    builder = NodePlanner(f, alloc.hosts, rack_asns, problems)
    memo = _Memo(f, alloc.racks, alloc.sites, rack_asns, previous.memo if previous else {})
    plans: list[NodePlan] = []
    # The memo is read and written in place here: this loop runs once per node, and a call
    # more per node was measurable on a cold plan of 5,000.
    previous_memo, new_memo = memo.previous, memo.new
    for node in nodes:
        entry = entries.get(node.name, _NO_ENTRY)
        cached = previous_memo.get(node.name)
        if cached is not None and memo.unchanged(cached[0], node, entry):
            plans.append(cached[1])
            new_memo[node.name] = cached
            continue
        problems_before = len(problems.nodes)
        entry = alloc.allocate(node, entry)
        entries[node.name] = entry
        node_plan = builder.plan(node, entry)
        plans.append(node_plan)
        if len(problems.nodes) == problems_before:
            # A node planned with a problem (exhaustion...) is planned again next time:
            # so its problem stays reported, and it gets what it lacks once there is room.
            new_memo[node.name] = (memo.key(node, entry), node_plan)
    new_ledger = _retire(entries, {n.name for n in nodes}, now or RETIRED_UNKNOWN, rack_asns)
    sites = SitePlanner(f, f.routers(), plans, problems).plans_by_site()
    problems.raise_invalid()
    return Plan(
        fabric=f.name,
        mtu=f.pods.mtu,
        bgp=f.bgp,
        srv6=Srv6Settings(f.srv6.enabled, f.srv6.encap_mode),
        nodes=tuple(plans),
        sites=sites,
        ledger=new_ledger,
        problems=tuple(problems.nodes),
        memo=memo.new,
    )


def _retire(entries: dict[str, LedgerEntry], present: set[str], now: str,
            rack_asns: dict[str, int]) -> Ledger:
    """The new ledger: nodes that left are stamped retired, nodes back are active again."""
    for name, entry in list(entries.items()):
        if name not in present and entry.retired_at is None:
            entries[name] = _replace(entry, retired_at=now)
        elif name in present and entry.retired_at is not None:
            entries[name] = _replace(entry, retired_at=None)
    return Ledger(dict(sorted(entries.items())), dict(sorted(rack_asns.items())))


class _Memo:
    """The keys of node plans: the previous plan's is reused where its key is unchanged."""

    def __init__(self, fabric: Fabric, racks: dict[str, Rack], sites: dict[str, Site],
                 rack_asns: dict[str, int], previous: Memo) -> None:
        self.f = fabric
        self.racks = racks
        self.sites = sites
        self.rack_asns = rack_asns
        self.previous = previous
        self.new: Memo = {}
        self._rack_keys: dict[str, tuple[object, ...]] = {}

    def key(self, node: Node, entry: LedgerEntry) -> tuple[Node, tuple[object, ...],
                                                           LedgerEntry]:
        """Everything a node's plan depends on: the node, its ledger entry, and its rack's
        key (the rack, its site and the fabric-wide settings)."""
        return (node, self._rack_key(node.rack), entry)

    def _rack_key(self, rack_name: str) -> tuple[object, ...]:
        # One tuple per rack, shared by the keys of the rack's nodes (see unchanged).
        key = self._rack_keys.get(rack_name)
        if key is None:
            f = self.f
            rack = self.racks[rack_name]
            site = self.sites[rack.site]
            key = (rack, site.name, site.ipv4_pools, site.ipv6_pools, site.locator_block,
                   f.asn, f.pods, f.bgp.ipv4_over_ipv6, f.bgp.bfd.enabled, f.srv6.enabled,
                   f.srv6.scope,
                   f.srv6.decap_ipv4, f.srv6.decap_ipv6, f.srv6.locator_length,
                   f.srv6.datapath, self.rack_asns.get(rack_name))
            self._rack_keys[rack_name] = key
        return key

    def unchanged(self, before: object, node: Node, entry: LedgerEntry) -> bool:
        """Whether a node's key equals the one its previous plan was made with."""
        key = self.key(node, entry)
        if not (isinstance(before, tuple) and len(before) == len(key)):
            return False
        rack_key = key[1]
        if before[1] is not rack_key and before[1] == rack_key:
            # Equal: adopt the previous plan's tuple, so that the rack's other nodes compare
            # theirs by identity (comparing a rack, its ToRs and their subnets node by node
            # was a third of a re-plan at 5,000 nodes).
            self._rack_keys[node.rack] = rack_key = before[1]
        return (before[1] is rack_key and (before[0] is node or before[0] == node)
                and (before[2] is entry or before[2] == entry))


def _replace(e: LedgerEntry, *, retired_at: str | None) -> LedgerEntry:
    return LedgerEntry(e.asn, e.ipv4_blocks, e.ipv6_blocks, e.locator, e.uplinks, retired_at)
