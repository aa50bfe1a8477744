"""The speaker never deletes the pods' host routes, although they carry its protocol number."""

from __future__ import annotations

from ipaddress import ip_network

from flatroute import nodestate
from flatroute.fabric import load_fabric
from flatroute.plan import plan
from speaker import reconcile
from speaker.routes import Nexthop, Route, Seg6Encap
from tests.conftest import EXAMPLES


def test_pod_host_routes_are_not_the_speakers() -> None:
    f = load_fabric(EXAMPLES / "two-site.yaml")
    p = plan(f)
    st = nodestate.from_plan(p, p.node("tk-n1"))
    b4, b6 = st.ipv4_blocks[0], st.ipv6_blocks[0]
    pod4 = Route(ip_network(f"{b4.network_address + 2}/32"), (Nexthop(None, "flr1"),))
    pod6 = Route(ip_network(f"{b6.network_address + 2}/128"), (Nexthop(None, "flr1"),))
    default = Route(ip_network("0.0.0.0/0"), (Nexthop("10.1.1.1", "tk-r1-a"),))
    foreign32 = Route(ip_network("10.9.9.9/32"), (Nexthop(None, "x"),))
    encap = Route(ip_network(f"{b4.network_address + 5}/32"), (Nexthop(None, "lo"),),
                  Seg6Encap("encap", ("fcbb::1",)), kind="encap")
    owned = reconcile.speaker_owned([pod4, pod6, default, foreign32, encap], st)
    assert owned == [default, foreign32, encap]
    # and so the diff against an empty desired set never deletes a pod's route
    ops = reconcile.diff([], owned)
    assert {op.route.dst for op in ops} == {default.dst, foreign32.dst, encap.dst}
