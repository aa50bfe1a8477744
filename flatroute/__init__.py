"""flatroute: routed L3 Kubernetes networking, BGP to the ToRs, SRv6 across sites."""

__version__ = "0.1.0"

#: The rtnetlink route protocol number that marks every kernel route the speaker creates.
#: Nothing else uses 70 ('F') in iproute2's rt_protos; the speaker never touches routes without
#: it.
ROUTE_PROTOCOL = 70
#: The route protocol of the pods' host routes (/32 and /128 via a pod's host veth) that the CNI
#: plugin creates: ownership is carried by the route itself, never inferred from the plan. The
#: speaker dumps only ROUTE_PROTOCOL, so it never sees these. Plugins before this number existed
#: wrote their pod routes with ROUTE_PROTOCOL: see docs/cni.md, "Route ownership and upgrades".
CNI_ROUTE_PROTOCOL = 71
