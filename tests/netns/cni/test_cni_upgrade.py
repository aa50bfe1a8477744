"""Route ownership in a real namespace: the speaker's reconcile and the plugin's verbs against pods
made before the upgrade (host routes with the speaker's protocol 70) and after (71)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Node, ping

from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL
from tests.netns_util import sh

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[3]

# The speaker's level-triggered step with nothing desired: dump its protocol, keep what it owns,
# delete the rest. A node state whose pod blocks are gone is the worst case for the old rule.
SPEAKER_RECONCILE = """
import json
from flatroute import ROUTE_PROTOCOL
from speaker import reconcile
from speaker.rtnl import Rtnl
with Rtnl(ROUTE_PROTOCOL) as k:
    owned = reconcile.speaker_owned(k.dump())
    ops = reconcile.diff([], owned)
    assert k.apply(ops) == []
print(json.dumps(sorted(str(op.route.dst) for op in ops)))
"""


def _speaker_reconcile(node: Node) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["ip", "netns", "exec", node.name, sys.executable, "-c",
                          SPEAKER_RECONCILE], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    dsts: list[str] = json.loads(out)
    return dsts


def _ip(res: dict[str, object], family: str) -> str:
    ips = res["ips"]
    assert isinstance(ips, list)
    return next(ip["address"] for ip in ips if (":" in ip["address"]) == (family == "6")
                ).split("/")[0]


def test_pods_of_the_old_plugin_survive_the_upgrade(node: Node) -> None:
    conf = node.conf()
    old_conf = node.conf(routeProtocol=ROUTE_PROTOCOL)  # what the plugin wrote before 71
    pod_old, pod_new = node.pod(), node.pod()
    res_old = node.ok("ADD", old_conf, cid="old", pod=pod_old)
    res_new = node.ok("ADD", conf, cid="new", pod=pod_new)
    assert res_old is not None and res_new is not None
    veth_old, veth_new = res_old["interfaces"][0]["name"], res_new["interfaces"][0]["name"]
    old4, new4 = _ip(res_old, "4"), _ip(res_new, "4")
    assert any(r.startswith(f"{old4} dev {veth_old}") for r in node.speaker_routes())
    assert any(r.startswith(f"{new4} dev {veth_new}") for r in node.our_routes())
    assert not any(veth_new in r for r in node.speaker_routes())

    # The speaker, with nothing desired, deletes its own stale route and no pod's route.
    sh("ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "proto",
       str(ROUTE_PROTOCOL), ns=node.name)
    assert _speaker_reconcile(node) == ["198.51.100.0/24"]
    assert any(r.startswith(f"{old4} dev {veth_old}") for r in node.speaker_routes())
    assert any(r.startswith(f"{new4} dev {veth_new}") for r in node.our_routes())
    assert ping(pod_old, new4) and ping(pod_new, old4)
    assert ping(pod_old, _ip(res_new, "6"))

    # The new plugin checks, collects and deletes the old pod as its own.
    node.ok("CHECK", {**conf, "prevResult": res_old}, cid="old", pod=pod_old)
    node.ok("CHECK", {**conf, "prevResult": res_new}, cid="new", pod=pod_new)
    # Stale routes on our veths in either protocol go at GC; another protocol's stays.
    sh("ip", "route", "add", "10.244.0.60/32", "dev", veth_old, "proto", str(ROUTE_PROTOCOL),
       ns=node.name)
    sh("ip", "route", "add", "10.244.0.61/32", "dev", veth_new, "proto",
       str(CNI_ROUTE_PROTOCOL), ns=node.name)
    sh("ip", "route", "add", "10.244.0.62/32", "dev", veth_old, "proto", "static", ns=node.name)
    valid = [{"containerID": "old", "ifname": "eth0"}, {"containerID": "new", "ifname": "eth0"}]
    node.ok("GC", {**conf, "cni.dev/valid-attachments": valid})
    every = node.speaker_routes() + node.our_routes()
    assert not any(r.startswith(("10.244.0.60 ", "10.244.0.61 ")) for r in every)
    assert "10.244.0.62 dev " + veth_old in sh("ip", "route", "show", "proto", "static",
                                             ns=node.name).stdout
    assert ping(pod_old, new4)
    node.ok("DEL", conf, cid="old", pod=pod_old)
    node.ok("DEL", conf, cid="new", pod=pod_new)
    node.assert_clean()
