"""The lab's stand-in for kube-proxy: nftables rules per node (pure)."""

from __future__ import annotations

import ipaddress

from lab.services import nft_script, targets
from lab.state import PodRecord
from tests.unit.services.util import fabric

A = ipaddress.ip_address
PODS = {"sv-n1-p0": PodRecord("sv-n1-p0", "sv-n1", "x", "c", "10.50.0.2", "fd00:50::2"),
        "sv-n2-p0": PodRecord("sv-n2-p0", "sv-n2", "x", "c", "10.50.0.66", "fd00:50::42"),
        "sv-n3-p0": PodRecord("sv-n3-p0", "sv-n3", "x", "c", "10.50.0.130", None)}
ALLOC = {"default/web": [A("198.51.100.2"), A("2001:db8:51::2")],
         "default/api": [A("198.51.100.1"), A("2001:db8:51::1")]}


def test_local_dnats_only_to_this_nodes_endpoint_cluster_masquerades_remote() -> None:
    ts = targets(fabric(), ALLOC)
    text = nft_script("sv-n1", ts, PODS)
    assert "ip daddr 198.51.100.2 tcp dport 80 jump" in text
    assert "meta l4proto tcp dnat ip to 10.50.0.2:80" in text
    assert "10.50.0.66" not in text  # web is Local: sv-n2's pod is not a target on sv-n1
    api = text.split("10.50.0.130:8080")[0].rsplit("chain", 1)[1]
    assert "meta mark set meta mark | 0x4000" in api  # api is Cluster, its pod is remote
    assert "2001:db8:51::1" not in text  # api's pod has no IPv6 address: no rule
    assert text.startswith("table inet flatroute_lab_services\ndelete table")


def test_a_node_without_local_endpoints_has_no_local_rule() -> None:
    text = nft_script("sv-n3", targets(fabric(), ALLOC), PODS)
    assert "198.51.100.2 " not in text
    assert "dnat ip to 10.50.0.130:8080" in text and "0x4000\n    meta l4proto tcp dnat ip to " \
        "10.50.0.130" not in text  # local endpoint: no masquerade
