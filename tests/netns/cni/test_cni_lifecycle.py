"""ADD, traffic, CHECK, DEL, DEL again and GC, in real namespaces, for every version."""

from __future__ import annotations

import pytest
from conftest import Node, ping, pod_links

from cni.config import SUPPORTED_VERSIONS

pytestmark = pytest.mark.root


@pytest.mark.parametrize("dual", [False, True], ids=["ipv4", "dual"])
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_lifecycle(node: Node, version: str, dual: bool) -> None:
    if not dual:
        node.write_node_file(["10.244.0.0/26"], [])
    conf = node.conf(version)
    pod_a, pod_b = node.pod(), node.pod()
    res_a = node.ok("ADD", conf, cid="ca", pod=pod_a)
    res_b = node.ok("ADD", conf, cid="cb", pod=pod_b)
    assert res_a is not None and res_b is not None
    assert res_a["cniVersion"] == version
    ips_a = [ip["address"] for ip in res_a["ips"]]
    ips_b = [ip["address"] for ip in res_b["ips"]]
    assert len(ips_a) == (2 if dual else 1)
    assert ips_a[0].endswith("/32") and ips_a[0].startswith("10.244.0.")
    assert set(ips_a).isdisjoint(ips_b)
    for ip in res_a["ips"]:
        assert ("version" in ip) == (version < "1.0.0")
        assert ip["interface"] == 1
    host_if, pod_if = res_a["interfaces"]
    assert len(host_if["name"]) <= 15 and host_if["name"].startswith("flr")
    assert pod_if == {**pod_if, "name": "eth0", "sandbox": f"/run/netns/{pod_a}"}
    assert pod_links(pod_a) == ["eth0", "lo"]
    mtu = sh_out(pod_a, "cat", "/sys/class/net/eth0/mtu")
    assert mtu == "1400"

    # Pod to pod on this node, pod to node, both families.
    b4 = ips_b[0].split("/")[0]
    assert ping(pod_a, b4)
    assert ping(pod_a, "192.0.2.1")
    if dual:
        assert ping(pod_a, ips_b[1].split("/")[0])
        assert ping(pod_a, "2001:db8::1")
    routes = node.our_routes()
    assert any(line.startswith(ips_a[0].split("/")[0] + " dev " + host_if["name"])
               for line in routes)

    if version >= "0.4.0":
        node.ok("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a)

    node.ok("DEL", conf, cid="ca", pod=pod_a)
    assert pod_links(pod_a) == ["lo"]
    assert host_if["name"] not in node.host_veths()
    if version >= "0.4.0":
        rc, err = node.call("CHECK", {**conf, "prevResult": res_a}, cid="ca", pod=pod_a)
        assert rc == 1 and err is not None and err["code"] == 3
    node.ok("DEL", conf, cid="ca", pod=pod_a)  # again
    node.ok("DEL", conf, cid="ca")  # and without CNI_NETNS

    # GC keeps what is valid, removes the rest.
    valid = {**conf, "cni.dev/valid-attachments": [{"containerID": "cb", "ifname": "eth0"}]}
    node.ok("GC", valid)
    assert len(node.host_veths()) == 1
    assert len(node.reservations()) == len(ips_b)
    assert ping(pod_b, "192.0.2.1")
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []})
    node.assert_clean()
    assert pod_links(pod_b) == ["lo"]


def test_gc_removes_leftovers_it_owns(node: Node) -> None:
    """A veth and reservation whose DEL never came (runtime crash) go at GC; others stay."""
    conf = node.conf()
    pod = node.pod()
    node.ok("ADD", conf, cid="gone", pod=pod)
    node.ok("ADD", conf, cid="kept", ifname="net1", pod=pod)
    # A route with the speaker's protocol (which plugins before 71 used for pods) on a foreign
    # interface must survive GC.
    from tests.netns_util import sh

    sh("ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "proto", "70", ns=node.name)
    node.ok("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "kept",
                                                          "ifname": "net1"}]})
    assert pod_links(pod) == ["lo", "net1"]
    assert len(node.attachments()) == 1
    assert any("198.51.100.0/24" in line for line in node.speaker_routes())


def sh_out(pod: str, *cmd: str) -> str:
    from tests.netns_util import sh

    return sh(*cmd, ns=pod).stdout.strip()


def test_pods_reach_each_other_before_the_node_has_any_default_route(node: Node) -> None:
    """A node whose default route comes over BGP has none until its sessions are up (and BFD
    too): proxy ARP alone then leaves the pods' IPv4 gateway unanswered, even toward a pod on
    the same node. The pod answers its gateway itself, from a permanent neighbour entry."""
    from tests.netns_util import sh

    sh("ip", "route", "del", "default", ns=node.name)
    conf = node.conf()
    pod_a, pod_b = node.pod(), node.pod()
    res_a = node.ok("ADD", conf, cid="na", pod=pod_a)
    res_b = node.ok("ADD", conf, cid="nb", pod=pod_b)
    assert res_a is not None and res_b is not None
    host_mac = res_a["interfaces"][0]["mac"]
    neigh = sh_out(pod_a, "ip", "neigh", "show", "169.254.1.1", "dev", "eth0")
    assert neigh == f"169.254.1.1 lladdr {host_mac} PERMANENT", neigh
    b4 = next(ip["address"] for ip in res_b["ips"] if "." in ip["address"]).split("/")[0]
    assert ping(pod_a, b4)
    node.ok("DEL", conf, cid="na", pod=pod_a)
    node.ok("DEL", conf, cid="nb", pod=pod_b)
