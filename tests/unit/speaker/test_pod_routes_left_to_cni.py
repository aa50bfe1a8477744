"""The speaker owns exactly its protocol's routes, whatever the plan says.

The CNI plugin writes the pods' host routes with flatroute.CNI_ROUTE_PROTOCOL, which the speaker's
dump never returns. Plugins before that wrote them with the speaker's ROUTE_PROTOCOL, on a pod's
host veth (`flr` + 12 hex digits): the speaker leaves those alone by their device, which is what
the plugin created, not by the node's pod blocks (which change under the pods' feet).
"""

from __future__ import annotations

from ipaddress import ip_network

from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL, nodefile, nodestate
from flatroute.fabric import load_fabric
from flatroute.nodestate import NodeState
from flatroute.plan import plan
from speaker import reconcile
from speaker.routes import Nexthop, Route, Seg6Encap
from tests.conftest import EXAMPLES

POD_VETH = "flr0123456789ab"  # what cni.verbs.veth_name makes


def _state() -> NodeState:
    p = plan(load_fabric(EXAMPLES / "two-site.yaml"))
    return nodestate.from_plan(p, p.node("tk-n1"))


def _pod_routes(st: NodeState) -> list[Route]:
    b4, b6 = st.ipv4_blocks[0], st.ipv6_blocks[0]
    return [Route(ip_network(f"{b4.network_address + 2}/32"), (Nexthop(None, POD_VETH),)),
            Route(ip_network(f"{b6.network_address + 2}/128"), (Nexthop(None, POD_VETH),),
                  metric=reconcile.V6_METRIC)]


def test_the_protocols_differ_and_the_node_file_carries_both() -> None:
    assert CNI_ROUTE_PROTOCOL != ROUTE_PROTOCOL
    nf = nodefile.NodeFile("n1", ("10.0.0.0/26",), ())
    back = nodefile.parse(nf.to_json())
    assert (back.route_protocol, back.pod_route_protocol) == (ROUTE_PROTOCOL, CNI_ROUTE_PROTOCOL)
    # a node file from an older speaker has no podRouteProtocol: the default applies
    old = nodefile.parse('{"version": 1, "node": "n1", "routeProtocol": 70}')
    assert old.pod_route_protocol == CNI_ROUTE_PROTOCOL


def test_legacy_pod_routes_survive_their_block_leaving_the_node_state() -> None:
    """A pod block moved away from the node (re-plan, block reclaimed) while its pods still
    run: the old pod routes (speaker's protocol, pod veth) must not be deleted by the speaker.
    Before ownership was carried by the route, the speaker told pod routes apart by the current
    pod blocks, so this diff deleted them."""
    st = _state()
    pods = _pod_routes(st)
    # the kernel still holds the pods' routes; the node state no longer has their block, and
    # the speaker's desired routes (learned, SRv6) never include them: nothing is deleted
    owned = reconcile.speaker_owned(pods)
    assert owned == []
    assert reconcile.diff([], owned) == []


def test_the_speaker_still_owns_its_routes_inside_the_pod_blocks() -> None:
    """Ownership is not inferred from the plan in either direction: a /32 of the speaker's
    protocol inside a pod block that is not on a pod veth is the speaker's, and a stale one is
    deleted."""
    st = _state()
    b4 = st.ipv4_blocks[0]
    stale = Route(ip_network(f"{b4.network_address + 9}/32"), (Nexthop("10.1.1.1", "tk-r1-a"),))
    encap = Route(ip_network(f"{b4.network_address + 5}/32"), (Nexthop(None, "lo"),),
                  Seg6Encap("encap", ()), kind="encap")
    sid = Route(ip_network("fcbb:0:1::/128"), (Nexthop(None, reconcile.SID_DEVICE),),
                kind="sid")
    default = Route(ip_network("0.0.0.0/0"), (Nexthop("10.1.1.1", "tk-r1-a"),))
    actual = [*_pod_routes(st), stale, encap, sid, default]
    owned = reconcile.speaker_owned(actual)
    assert owned == [stale, encap, sid, default]
    ops = reconcile.diff([default], owned)
    assert sorted(str(op.route.dst) for op in ops) == sorted(
        str(r.dst) for r in (stale, encap, sid))
    assert all(op.action == "delete" for op in ops)


def test_a_route_with_any_path_through_a_pod_veth_is_not_the_speakers() -> None:
    mixed = Route(ip_network("10.9.9.9/32"), (Nexthop(None, POD_VETH), Nexthop(None, "eth0")))
    assert reconcile.speaker_owned([mixed]) == []
