"""Bad inputs get the right code and leave nothing behind; concurrency; chains; delegation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import Node, ping, pod_links

from tests.netns_util import sh

pytestmark = pytest.mark.root

RANGES = [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/120"}]]

CASES: list[tuple[str, dict[str, Any], dict[str, str | None], str | None, int]] = [
    # id, conf changes, env changes, stdin override, expected code
    ("no-command", {}, {"CNI_COMMAND": None}, None, 4),
    ("bad-command", {}, {"CNI_COMMAND": "ATTACH"}, None, 4),
    ("no-containerid", {}, {"CNI_CONTAINERID": None}, None, 4),
    ("bad-containerid", {}, {"CNI_CONTAINERID": "../x"}, None, 4),
    ("no-ifname", {}, {"CNI_IFNAME": None}, None, 4),
    ("long-ifname", {}, {"CNI_IFNAME": "a-sixteen-chars!"}, None, 4),
    ("no-netns", {}, {"CNI_NETNS": None}, None, 4),
    ("missing-netns", {}, {"CNI_NETNS": "/run/netns/ft-no-such-ns"}, None, 4),
    ("not-a-netns", {}, {"CNI_NETNS": "/etc/hostname"}, None, 4),
    ("no-path", {}, {"CNI_PATH": None}, None, 4),
    ("garbage-stdin", {}, {}, "{not json", 6),
    ("not-an-object", {}, {}, "[1, 2]", 6),
    ("unknown-version", {"cniVersion": "9.9.9"}, {}, None, 1),
    ("no-name", {"name": ""}, {}, None, 7),
    ("bad-subnet", {"ipam": {"ranges": [[{"subnet": "10.0.0.0/33"}]]}}, {}, None, 7),
    ("host-bits-garbage", {"ipam": {"ranges": [[{"subnet": "nonsense"}]]}}, {}, None, 7),
    ("start-outside", {"ipam": {"ranges": [[{"subnet": "10.0.0.0/24",
                                             "rangeStart": "10.0.1.1"}]]}}, {}, None, 7),
    ("mixed-set", {"ipam": {"ranges": [[{"subnet": "10.0.0.0/24"},
                                        {"subnet": "fd00::/64"}]]}}, {}, None, 7),
    ("empty-ranges", {"ipam": {"ranges": []}}, {}, None, 7),
    ("bad-mtu", {"mtu": 10}, {}, None, 7),
    ("no-node-file", {"nodeFile": "/nonexistent/node.json"}, {}, None, 50),
    ("ipam-plugin-missing", {"ipam": {"type": "no-such-ipam"}}, {}, None, 106),
]


@pytest.mark.parametrize(("conf_changes", "env_changes", "stdin", "code"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(node: Node, conf_changes: dict[str, Any], env_changes: dict[str, str | None],
                   stdin: str | None, code: int) -> None:
    pod = node.pod()
    conf = {**node.conf(), **conf_changes}
    rc, err = node.call("ADD", stdin if stdin is not None else conf, cid="c1", pod=pod,
                        env=env_changes)
    assert rc == 1
    assert err is not None and err["code"] == code, err
    assert set(err) <= {"cniVersion", "code", "msg", "details"} and err["msg"]
    node.assert_clean()
    assert pod_links(pod) == ["lo"]


def test_exhausted_range(node: Node) -> None:
    conf = node.conf(ipam={"ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.7",
                                        "rangeEnd": "10.9.0.7"}]]})
    first, second = node.pod(), node.pod()
    res = node.ok("ADD", conf, cid="c1", pod=first)
    assert res is not None and res["ips"][0]["address"] == "10.9.0.7/32"
    rc, err = node.call("ADD", conf, cid="c2", pod=second)
    assert rc == 1 and err is not None and err["code"] == 102
    assert pod_links(second) == ["lo"]
    assert node.reservations() == ["10.9.0.7"] and len(node.host_veths()) == 1
    node.ok("DEL", conf, cid="c1", pod=first)
    node.ok("ADD", conf, cid="c2", pod=second)  # released, so free again


def test_duplicate_add_keeps_the_first(node: Node) -> None:
    conf = node.conf()
    pod = node.pod()
    res = node.ok("ADD", conf, cid="c1", pod=pod)
    rc, err = node.call("ADD", conf, cid="c1", pod=pod)
    assert rc == 1 and err is not None and err["code"] == 103
    node.ok("CHECK", {**conf, "prevResult": res}, cid="c1", pod=pod)
    assert len(node.reservations()) == 2


def test_interface_exists_in_pod(node: Node) -> None:
    pod = node.pod()
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=pod)
    rc, err = node.call("ADD", node.conf(), cid="c1", pod=pod)
    assert rc == 1 and err is not None and err["code"] == 104, err
    node.assert_clean()


def test_lock_timeout(node: Node) -> None:
    conf = node.conf(ipam={"lockTimeout": 0.2})
    root = node.data / "frnet"
    root.mkdir(parents=True)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR); os.lockf(fd, os.F_LOCK, 0);"
        "print('locked', flush=True); time.sleep(30)"), str(root / "lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        pod = node.pod()
        rc, err = node.call("ADD", conf, cid="c1", pod=pod)
        assert rc == 1 and err is not None and err["code"] == 11
        assert pod_links(pod) == ["lo"]
    finally:
        holder.kill()
        holder.wait()
        os.close(fd)
    node.assert_clean()


def test_check_reports_each_missing_piece(node: Node) -> None:
    conf = node.conf()
    pod = node.pod()
    res = node.ok("ADD", conf, cid="c1", pod=pod)
    assert res is not None
    sh("ip", "-6", "route", "del", "default", ns=pod)
    v4 = res["ips"][0]["address"]
    sh("ip", "route", "del", v4, ns=node.name)
    rc, err = node.call("CHECK", {**conf, "prevResult": res}, cid="c1", pod=pod)
    assert rc == 1 and err is not None and err["code"] == 110
    assert "pod default route via fe80::1" in err["details"]
    assert f"host route {v4}" in err["details"]
    assert err["msg"] == "CHECK found 2 problem(s)"


def test_status(node: Node) -> None:
    conf = node.conf()
    assert node.call("STATUS", conf)[0] == 0
    node.write_node_file([], [])
    rc, err = node.call("STATUS", conf)
    assert rc == 1 and err is not None and err["code"] == 50 and "no pod block" in err["msg"]
    rc, err = node.call("STATUS", {**conf, "nodeFile": str(node.tmp / "absent.json")})
    assert rc == 1 and err is not None and err["code"] == 50
    (node.tmp / "file").write_text("")
    rc, err = node.call("STATUS", {**conf, "dataDir": str(node.tmp / "file")})
    assert rc == 1 and err is not None and err["code"] == 50
    # An address outside the node's current blocks: that pod is no longer routed here.
    node.write_node_file(["10.244.0.0/26"], [])
    pod = node.pod()
    node.ok("ADD", conf, cid="c1", pod=pod)
    node.write_node_file(["10.244.1.0/26"], [])
    rc, err = node.call("STATUS", conf)
    assert rc == 1 and err is not None and err["code"] == 51


def test_concurrent_adds_unique(node: Node) -> None:
    """Two processes, 50 ADDs each, one IPAM store: every address unique and accounted for."""
    conf = json.dumps(node.conf(ipam={"ranges": RANGES}))
    pods = [node.pod(), node.pod()]
    script = (
        "import json, os, subprocess, sys\n"
        "pod, node, binary, conf, tag = sys.argv[1:]\n"
        "out = []\n"
        "for i in range(50):\n"
        "    env = dict(os.environ, CNI_COMMAND='ADD', CNI_CONTAINERID=f'{tag}{i}',\n"
        "               CNI_IFNAME=f'eth{i}', CNI_NETNS=f'/run/netns/{pod}', CNI_PATH='/x')\n"
        "    p = subprocess.run(['ip', 'netns', 'exec', node, binary], input=conf, env=env,\n"
        "                       capture_output=True, text=True)\n"
        "    out.append(p.stdout.strip() or json.dumps({'stderr': p.stderr}))\n"
        "print('\\n'.join(out))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, pod, node.name,
                               str(node.bin / "flatroute-cni-py"), conf, tag],
                              stdout=subprocess.PIPE, text=True) for pod, tag in zip(pods, "ab",
                                                                                     strict=True)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    results = [json.loads(line) for out in outputs for line in out.splitlines()]
    assert all("ips" in r for r in results), [r for r in results if "ips" not in r][:3]
    addresses = [ip["address"].split("/")[0] for r in results for ip in r["ips"]]
    assert len(addresses) == 200 and len(set(addresses)) == 200
    assert sorted(node.reservations()) == sorted(addresses)
    assert len(node.attachments()) == 100 and len(node.host_veths()) == 100
    owners = {(node.data / "frnet" / "ip" / a).read_text() for a in node.reservations()}
    assert len(owners) == 100
    node.ok("GC", {**json.loads(conf), "cni.dev/valid-attachments": []})
    node.assert_clean()


def test_chain_with_reference_meta_plugins(node: Node) -> None:
    """flatroute-cni -> tuning -> bandwidth (Debian's reference plugins), with prevResult."""
    sysctl = "net.ipv4.conf.eth0.rp_filter"
    base = node.conf("1.0.0")
    tuning = {"cniVersion": "1.0.0", "name": "frnet", "type": "tuning",
              "sysctl": {sysctl: "2"}}
    bandwidth = {"cniVersion": "1.0.0", "name": "frnet", "type": "bandwidth",
                 "egressRate": 10_000_000, "egressBurst": 100_000}
    pod = node.pod()
    res = node.ok("ADD", base, cid="c1", pod=pod)
    res = node.ok("ADD", {**tuning, "prevResult": res}, cid="c1", pod=pod, plugin="tuning")
    res = node.ok("ADD", {**bandwidth, "prevResult": res}, cid="c1", pod=pod,
                  plugin="bandwidth")
    assert res is not None
    host = res["interfaces"][0]["name"]
    assert sh("sysctl", "-n", sysctl, ns=pod).stdout.strip() == "2"
    qdisc = sh("tc", "qdisc", "show", "dev", host, ns=node.name).stdout
    assert "tbf" in qdisc or "ingress" in qdisc, qdisc
    assert ping(pod, "192.0.2.1")
    for conf, plugin in ((bandwidth, "bandwidth"), (tuning, "tuning"), (base, "flatroute-cni-py")):
        node.ok("CHECK", {**conf, "prevResult": res}, cid="c1", pod=pod, plugin=plugin)
    for conf, plugin in ((bandwidth, "bandwidth"), (tuning, "tuning"), (base, "flatroute-cni-py")):
        node.ok("DEL", {**conf, "prevResult": res}, cid="c1", pod=pod, plugin=plugin)
    node.assert_clean()
    assert "ifb" not in sh("ip", "-o", "link", ns=node.name).stdout


def test_delegated_ipam_host_local(node: Node) -> None:
    hl_dir = node.tmp / "host-local"
    conf = node.conf("1.0.0", ipam={"type": "host-local", "dataDir": str(hl_dir),
                                    "ranges": [[{"subnet": "10.77.0.0/24"}]]})
    pod_a, pod_b = node.pod(), node.pod()
    res = node.ok("ADD", conf, cid="c1", pod=pod_a)
    node.ok("ADD", conf, cid="c2", pod=pod_b)
    assert res is not None and res["ips"][0]["address"] == "10.77.0.2/32"
    assert (hl_dir / "frnet" / "10.77.0.2").exists()
    assert ping(pod_a, "10.77.0.3")
    node.ok("CHECK", {**conf, "prevResult": res}, cid="c1", pod=pod_a)
    node.ok("DEL", conf, cid="c1", pod=pod_a)
    assert not (hl_dir / "frnet" / "10.77.0.2").exists()
    node.ok("DEL", conf, cid="c1", pod=pod_a)
    # A failed ADD gives the delegated address back.
    rc, _ = node.call("ADD", conf, cid="c3", ifname="eth0", pod=pod_b)  # eth0 exists there
    assert rc == 1
    assert sorted(p.name for p in (hl_dir / "frnet").iterdir()
                  if p.name.startswith("10.")) == ["10.77.0.3"]
    node.ok("GC", {**conf, "cni.dev/valid-attachments": []})
    assert not (hl_dir / "frnet" / "10.77.0.3").exists()
    node.assert_clean()
