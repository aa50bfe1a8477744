"""flatroute: routed L3 Kubernetes networking, BGP to the ToRs, SRv6 across sites."""

__version__ = "0.1.0"

#: The rtnetlink route protocol number that marks every kernel route flatroute creates.
#: Nothing else uses 70 ('F') in iproute2's rt_protos; we never touch routes without it.
ROUTE_PROTOCOL = 70
