"""uSID (RFC 9800 NEXT-C-SID, F3216) facts of a fabric, and the rules a uSID fabric obeys.

In `spec.srv6.format: usid-f3216` every node and every router with `usid: true` gets a 16-bit
node ID inside a /32 locator block: its site's `locatorBlock`, else the fabric's
`spec.srv6.locatorBlock` (WAN routers, which belong to no site, always take the fabric's).
Its uSID locator is block:ID::/48. A router's uSID is uN; a node's is its decapsulation
(uDT4, uDT6 or uDT46), so that a path costs one uSID per waypoint and one for the egress.

The checks below record each problem with its field path, like `flatroute.fabric.checks`.
"""

from __future__ import annotations

from ipaddress import IPv6Network

from flatroute.fabric.model import (
    USID_BLOCK_LENGTH,
    Fabric,
    Platform,
    Router,
)
from flatroute.fabric.reader import Reader

#: platforms whose renderer can program uSID behaviours (uN, uA, uDT46)
USID_PLATFORMS = (Platform.FRR, Platform.SONIC)
#: uSIDs in one container: 128 bits less the 32-bit block, 16 bits each
USIDS_PER_CONTAINER = (128 - USID_BLOCK_LENGTH) // 16
#: segments (here containers) the datapaths put in one packet (speaker/bpf MAX_SEGMENTS)
MAX_CONTAINERS = 6


def site_block(f: Fabric, site: str) -> IPv6Network | None:
    """The /32 a site's nodes, ToRs and spines take their node IDs from."""
    s = f.site(site)
    return s.locator_block or f.srv6.locator_block


def router_blocks(f: Fabric) -> dict[str, IPv6Network | None]:
    """Every uSID router's block (None: it has none to take a node ID from)."""
    out: dict[str, IPv6Network | None] = {
        w.name: f.srv6.locator_block for w in f.wan_routers if w.usid}
    for s in f.sites:
        block = site_block(f, s.name)
        for sp in s.spines:
            if sp.usid:
                out[sp.name] = block
        for rack in s.racks:
            out.update({t.name: block for t in rack.tors if t.usid})
    return out


def containers(blocks: list[IPv6Network | None]) -> int:
    """How many containers carry uSIDs from these blocks, in order: consecutive uSIDs of
    one block share a container, up to USIDS_PER_CONTAINER each."""
    count, last, used = 0, None, 0
    for b in blocks:
        if count == 0 or b != last or used == USIDS_PER_CONTAINER:
            count, last, used = count + 1, b, 0
        used += 1
    return count


def policy_containers(f: Fabric) -> int:
    """The most containers any planned path needs (1: no policy, the egress only)."""
    rb = router_blocks(f)
    most = 1
    for pol in f.srv6.policies:
        dest: list[IPv6Network | None] = [site_block(f, pol.to.site) if pol.to.site else None]
        most = max(most, containers([rb.get(w) for w in pol.waypoints] + dest))
    return most


def check_usid(f: Fabric, r: Reader, routers: list[tuple[str, Router, str]]) -> None:
    """The rules of spec.srv6.format (all of them, both formats)."""
    p = "spec.srv6"
    if not f.srv6.usid:
        if f.srv6.locator_block is not None:
            r.error(f"{p}.locatorBlock", "is for format: usid-f3216 only",
                    str(f.srv6.locator_block))
        for path, router, _ in routers:
            if router.usid:
                r.error(f"{path}.usid", "needs spec.srv6.format: usid-f3216", router.name)
        return
    _check_blocks(f, r)
    _check_routers(f, r, routers)
    _check_capacity(f, r)
    _check_waypoints(f, r)


def _check_blocks(f: Fabric, r: Reader) -> None:
    blocks = [("spec.srv6.locatorBlock", f.srv6.locator_block)] + [
        (f"spec.sites[{si}].locatorBlock", s.locator_block) for si, s in enumerate(f.sites)]
    for path, b in blocks:
        if b is not None and b.prefixlen != USID_BLOCK_LENGTH:
            r.error(path, f"a uSID F3216 locator block is a /{USID_BLOCK_LENGTH} (32-bit "
                    "block, then 16-bit node IDs and functions)", str(b))
    for si, s in enumerate(f.sites):
        if s.locator_block is None and f.srv6.locator_block is None:
            r.error(f"spec.sites[{si}].locatorBlock", "is required (or spec.srv6.locatorBlock "
                    "for the whole fabric) with format: usid-f3216", s.name)


def _check_routers(f: Fabric, r: Reader, routers: list[tuple[str, Router, str]]) -> None:
    rb = router_blocks(f)
    lo, hi = f.srv6.node_ids
    for path, router, role in routers:
        if not router.usid:
            continue
        if router.platform not in USID_PLATFORMS:
            r.error(f"{path}.usid", f"platform {router.platform.value} has no uSID "
                    "(uN) behaviour flatroute can configure; only "
                    f"{', '.join(p.value for p in USID_PLATFORMS)}", router.name)
        block = rb.get(router.name)
        if block is None:
            r.error(f"{path}.usid", "a WAN router takes its node ID from "
                    "spec.srv6.locatorBlock, which is not set" if role == "wan" else
                    "no locator block to take a node ID from", router.name)
            continue
        loc = router.locator
        if loc is not None and not (loc.prefixlen == USID_BLOCK_LENGTH + 16
                                    and loc.subnet_of(block)
                                    and lo <= node_id(loc) <= hi):
            r.error(f"{path}.locator", f"a uSID router's locator pins its node ID: a /48 "
                    f"inside {block} with a node ID in spec.srv6.nodeIds "
                    f"[{lo:#x}, {hi:#x}]", str(loc))


def node_id(locator: IPv6Network) -> int:
    """The 16-bit node ID of a block:ID::/48 uSID locator."""
    return (int(locator.network_address) >> (128 - USID_BLOCK_LENGTH - 16)) & 0xFFFF


def _check_capacity(f: Fabric, r: Reader) -> None:
    lo, hi = f.srv6.node_ids
    room = hi - lo + 1
    users: dict[IPv6Network, int] = {}
    racks = f.racks()
    for n in f.nodes:
        rack = racks.get(n.rack)
        block = site_block(f, rack.site) if rack else None
        if block is not None:
            users[block] = users.get(block, 0) + 1
    for block in router_blocks(f).values():
        if block is not None:
            users[block] = users.get(block, 0) + 1
    paths = {f.srv6.locator_block: "spec.srv6.locatorBlock"}
    paths.update({s.locator_block: f"spec.sites[{si}].locatorBlock"
                  for si, s in enumerate(f.sites) if s.locator_block})
    for block, count in sorted(users.items(), key=lambda x: str(x[0])):
        if count > room:
            r.error(paths.get(block, "spec.srv6.nodeIds"), f"node IDs exhausted: {count} "
                    f"nodes and uSID routers need one each, spec.srv6.nodeIds has {room}",
                    str(block))


def _check_waypoints(f: Fabric, r: Reader) -> None:
    routers = f.routers()
    nodes = {n.name for n in f.nodes}
    rb = router_blocks(f)
    for pi, pol in enumerate(f.srv6.policies):
        dest: list[IPv6Network | None] = [site_block(f, pol.to.site) if pol.to.site else None]
        need = containers([rb.get(w) for w in pol.waypoints] + dest)
        if need > MAX_CONTAINERS:
            r.error(f"spec.srv6.policies[{pi}].waypoints", f"the path needs {need} uSID "
                    f"containers; the datapaths carry at most {MAX_CONTAINERS} (waypoints "
                    "in one block share a container, six uSIDs each)", pol.name)
        for wi, w in enumerate(pol.waypoints):
            path = f"spec.srv6.policies[{pi}].waypoints[{wi}]"
            if w in nodes:
                r.error(path, "in usid-f3216 a node's uSID decapsulates (uDT): a waypoint "
                        "must be a router with usid: true", w)
                continue
            router = routers.get(w)
            if router is None or router.usid:
                continue
            if router.locator is not None:
                r.error(path, "mixes SID formats on the path: this router has a full-SID "
                        "locator and no uSID (give it usid: true)", w)
            else:
                r.error(path, "router cannot do uSID: give it usid: true (frr or sonic)", w)
