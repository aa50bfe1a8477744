"""The speaker under faults (issue 18), against real FRR ToRs, real ExaBGP and a real bfdd:
- BFD per ToR: tor1 runs BFD, tor2 does not; tor2 is used on BGP alone, and when tor1 goes
  silent bfdd's event (not the next pass) takes its next hop out;
- the node's own block is unreachable: one ping to an unused pod address crosses the uplink
  once and comes back as ICMP unreachable, while a pod's /32 (the CNI's protocol) still wins;
- route refresh: `clear bgp ... soft in` on a ToR is answered with our routes again.

One lab for the module; tests run in file order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flatroute import CNI_ROUTE_PROTOCOL
from tests.integration import speaker_lab as L
from tests.netns_util import Netns, need_root, need_tool, sh

pytestmark = pytest.mark.root

BLOCK = "10.244.0.0/26"
UNUSED = "10.244.0.50"  # inside the block, no pod holds it
POD = "10.244.0.7"


def _tor1_with_bfd(t: L.Tor) -> str:
    return L.frr_config(t, bfd=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[L.Lab]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "/usr/lib/frr/bfdd", "vtysh",
              "tcpdump", "iptables")
    lab = L.build(Netns(), n_tors=2)
    try:
        t1, t2 = lab.tors
        L.start_frr(t1, _tor1_with_bfd(t1), bfd=True)
        L.start_frr(t2, L.frr_config(t2))
        spec = L.node_spec(lab, bfd=True)
        for p in spec["peers"]:
            p["bfd"] = p["name"] == t1.name  # the fabric's per-ToR choice
        L.publish(lab, spec)
        L.start_speaker(lab)
        yield lab
    finally:
        L.cleanup(lab)


def _sessions(lab: L.Lab) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in L.status(lab).get("sessions", [])}


def _default(lab: L.Lab) -> str:
    return sh("ip", "route", "show", "default", ns=lab.node_ns).stdout


def test_a_tor_without_bfd_is_used_on_bgp_alone(lab: L.Lab) -> None:
    t1, t2 = lab.tors
    L.wait_for(lambda: (s := _sessions(lab)) and s.get(t1.name, {}).get("bfd") == "up"
               and s.get(t2.name, {}).get("state") == "established", 40)
    s = _sessions(lab)
    assert s[t2.name]["bfd"] == "off" and s[t2.name]["lastError"] is None
    L.wait_for(lambda: t1.v4 in _default(lab) and t2.v4 in _default(lab), 15)
    with open(os.path.join(lab.run_dir, "bfdd", "bfdd.conf"), encoding="utf-8") as fh:
        conf = fh.read()
    assert f"peer {t1.v4}" in conf and f"peer {t2.v4}" not in conf


def test_the_own_block_is_unreachable_and_a_pod_route_still_wins(lab: L.Lab) -> None:
    t1 = lab.tors[0]
    L.wait_for(lambda: BLOCK in L.routes(t1.ns), 15)
    route = sh("ip", "route", "show", BLOCK, ns=lab.node_ns).stdout
    assert route.startswith("unreachable") and "proto 70" in route
    # a pod: a veth into a namespace of ours, its /32 with the CNI plugin's protocol
    pod = lab.netns.add("pod")
    lab.netns.veth(lab.node_ns, "flrtestpod0", pod, "eth0")
    sh("ip", "addr", "add", f"{POD}/32", "dev", "eth0", ns=pod)
    sh("ip", "route", "add", "169.254.1.1", "dev", "eth0", ns=pod)
    sh("ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0", ns=pod)
    sh("sysctl", "-qw", "net.ipv4.conf.flrtestpod0.proxy_arp=1", ns=lab.node_ns)
    sh("ip", "route", "add", f"{POD}/32", "dev", "flrtestpod0", "proto",
       str(CNI_ROUTE_PROTOCOL), ns=lab.node_ns)
    assert sh("ping", "-c", "1", "-W", "3", POD, ns=t1.ns, check=False).returncode == 0
    # one ping to an unused address: exactly one echo request crosses tor1's uplink
    cap = subprocess.Popen(["ip", "netns", "exec", t1.ns, "tcpdump", "-i", "servers", "-n",
                            "--immediate-mode", "-l", "icmp"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1.0)  # tcpdump attached
        ping = sh("ping", "-c", "1", "-W", "3", "-t", "64", UNUSED, ns=t1.ns, check=False)
        time.sleep(1.0)
    finally:
        cap.terminate()
        out, _ = cap.communicate(timeout=10)
    requests = [x for x in out.splitlines() if f"> {UNUSED}: ICMP echo request" in x]
    assert len(requests) == 1, out
    assert re.search(rf"> {re.escape(t1.v4)}: ICMP (host|net) {re.escape(UNUSED)} "
                     r"unreachable", out), out
    assert ping.returncode != 0
    # announcements are unchanged: still the block, to both ToRs
    assert L.status(lab)["announced"] == [BLOCK]


def _updates_received(t: L.Tor) -> int:
    n = t.json(f"show bgp neighbors {t.node_v4} json").get(t.node_v4, {})
    return int(n.get("messageStats", {}).get("updatesRecv", 0))


def test_a_route_refresh_is_answered_with_our_routes(lab: L.Lab) -> None:
    t2 = lab.tors[1]
    n = t2.json(f"show bgp neighbors {t2.node_v4} json")[t2.node_v4]
    assert "routeRefresh" in n["neighborCapabilities"]
    assert "Received" in n["neighborCapabilities"]["routeRefresh"]
    before, resets = _updates_received(t2), n.get("connectionsEstablished")
    out = t2.vtysh(f"clear bgp ipv4 unicast {t2.node_v4} soft in")
    assert "not support" not in out.lower(), out
    L.wait_for(lambda: _updates_received(t2) > before, 10)
    n = t2.json(f"show bgp neighbors {t2.node_v4} json")[t2.node_v4]
    assert n.get("connectionsEstablished") == resets  # a refresh, no reset
    assert BLOCK in t2.json("show bgp ipv4 unicast json").get("routes", {})


def _bfd_events(lab: L.Lab) -> list[dict[str, Any]]:
    out = []
    with open(os.path.join(lab.tmp, "speaker.log"), encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if doc.get("event") == "bfd_event":
                    out.append({k: doc.get(k) for k in ("peer", "state")})
    return out


def test_a_silent_tor_leaves_the_ecmp_route_on_bfds_event(lab: L.Lab) -> None:
    t1, t2 = lab.tors
    L.wait_for(lambda: t1.v4 in _default(lab) and t2.v4 in _default(lab), 15)
    for chain in ("INPUT", "OUTPUT"):
        sh("iptables", "-I", chain, "-j", "DROP", ns=t1.ns)
    try:
        L.wait_for(lambda: t1.v4 not in _default(lab), 15, interval=0.02)
        s = _sessions(lab)
        assert s[t1.name]["bfd"] == "down" and s[t1.name]["state"] == "established"
        assert t2.v4 in _default(lab)
        assert {"peer": t1.v4, "state": "down"} in _bfd_events(lab)  # bfdd's notification
    finally:
        for chain in ("INPUT", "OUTPUT"):
            sh("iptables", "-D", chain, "-j", "DROP", ns=t1.ns, check=False)
    L.wait_for(lambda: t1.v4 in _default(lab), 30)


def test_a_renamed_uplink_is_found_by_its_address(lab: L.Lab) -> None:
    t2 = lab.tors[1]
    old = L.ifname(t2.name)
    L.wait_for(lambda: f"dev {old}" in _default(lab), 15)
    sh("sysctl", "-qw", f"net.ipv6.conf.{old}.keep_addr_on_down=1", ns=lab.node_ns)
    sh("ip", "link", "set", old, "down", ns=lab.node_ns)
    sh("ip", "link", "set", old, "name", "enp9s0", ns=lab.node_ns)
    sh("ip", "link", "set", "enp9s0", "up", ns=lab.node_ns)
    # the link went down: the kernel dropped our routes through it; they come back, on the
    # renamed interface, once tor2 resends them (a hard reset of its session, to be sure)
    flaps = _sessions(lab)[t2.name]["flaps"]
    t2.vtysh(f"clear bgp ipv4 unicast {t2.node_v4}")
    L.wait_for(lambda: _sessions(lab)[t2.name]["flaps"] > flaps
               and _sessions(lab)[t2.name]["state"] == "established", 30)
    L.wait_for(lambda: f"via {t2.v4} dev enp9s0" in _default(lab), 30)
    L.wait_for(lambda: L.status(lab).get("lastError") is None, 15)
