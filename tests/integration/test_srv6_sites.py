"""Issue 4's cross-site SRv6 test on real namespaces: two sites with FRR ToRs, an IPv6-only WAN
router, speakers applying the controller's node states, pods attached by the CNI plugin."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_lab import LAB_ROOT, Lab, flatroute
from tests.netns_util import need_root, need_tool

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def labs() -> Iterator[list[Lab]]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "vtysh", "tcpdump")
    made: list[Lab] = []
    try:
        yield made
    finally:
        for lab in made:
            lab.run("down")


def in_ns(lab: Lab, name: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{name}", *cmd],
                          capture_output=True, text=True, check=False, timeout=30).stdout


def capture_during_ping(lab: Lab, src_pod: str, dst: str) -> str:
    """tcpdump on the WAN router (verbose: shows the SRH) while one pod pings another."""
    cap = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-wan1", "tcpdump", "-i", "any",
                            "-nn", "-v", "--immediate-mode", "-c", "4",
                            # only encapsulated packets: SRH, or IPv4/IPv6 in IPv6
                            "ip6 and (ip6[6] == 43 or ip6[6] == 4 or ip6[6] == 41)"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.8)
    ping = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{src_pod}", "ping", "-c", "3",
                           "-i", "0.2", "-W", "1", dst], capture_output=True, text=True,
                          check=False)
    try:
        out, _ = cap.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        cap.kill()
        out, _ = cap.communicate()
    assert ping.returncode == 0, ping.stdout
    return out


def pod_ips(lab: Lab) -> dict[str, str]:
    state = json.loads((LAB_ROOT / lab.prefix / "lab.json").read_text())
    return {p["name"]: p["ipv4"] for p in state["pods"]}


def test_srv6_across_the_wan_with_waypoint_and_node_removal(labs: list[Lab]) -> None:
    lab = Lab("two-site.yaml", pods=1)
    labs.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    ips = pod_ips(lab)
    wire = capture_during_ping(lab, "tk-n1-p0", ips["os-n1-p0"])
    # IPv6 outer header with an SRH; the policy's waypoint (wan1's End SID) in the list
    assert "RT6 (len=4, type=4" in wire, wire
    assert "[1]fcbb:bb00:ff::1" in wire, wire
    assert f"{ips['tk-n1-p0']} > {ips['os-n1-p0']}: ICMP echo request" in wire, wire
    # the WAN router holds no IPv4 route at all, so none to pods
    assert in_ns(lab, "wan1", "ip", "-4", "route", "show").strip() == ""
    # Remove os-n2 from the fabric; it is drained before it leaves.
    state_dir = LAB_ROOT / lab.prefix / "state"
    leaving = json.loads((state_dir / "nodes" / "os-n2.json").read_text())["spec"]
    blocks = leaving["podBlocks"]["ipv4"] + leaving["podBlocks"]["ipv6"]
    locator = leaving["srv6"]["locator"]
    drain = subprocess.run(
        ["ip", "netns", "exec", f"{lab.prefix}-os-n2", "flatroute", "speaker", "drain",
         "--node", "os-n2", "--state-dir", str(state_dir), "--run-dir",
         str(LAB_ROOT / lab.prefix / "nodes" / "os-n2" / "run")],
        capture_output=True, text=True, check=False, timeout=60)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    fabric_copy = LAB_ROOT / lab.prefix / "fabric.yaml"
    doc = yaml.safe_load(fabric_copy.read_text())
    doc["spec"]["nodes"] = [n for n in doc["spec"]["nodes"] if n["name"] != "os-n2"]
    fabric_copy.write_text(yaml.safe_dump(doc, sort_keys=False))

    def gone() -> list[str]:
        left = []
        if (state_dir / "nodes" / "os-n2.json").exists():
            left.append("os-n2's node state")
        tk = in_ns(lab, "tk-n1", "ip", "route", "show") + in_ns(lab, "tk-n1", "ip", "-6",
                                                                  "route", "show")
        left += [f"tk-n1 route {b}" for b in blocks if b.split("/")[0] + "/" in tk]
        for router in ("wan1", "os-r1-a", "tk-r1-a"):
            six = in_ns(lab, router, "ip", "-6", "route", "show")
            four = in_ns(lab, router, "ip", "route", "show")
            left += [f"{router} route {p}" for p in (*blocks, locator)
                     if re.search(rf"^{re.escape(p)} ", six + four, re.M)]
        return left

    deadline = time.monotonic() + 30
    while gone() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert gone() == []
    # the others still reach each other across the WAN
    wire = capture_during_ping(lab, "os-n1-p0", ips["tk-n2-p0"])
    assert "RT6" in wire


def test_encap_red_one_sid_has_no_srh(labs: list[Lab], tmp_path: Path) -> None:
    def reduced(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = "two-site-red"
        doc["spec"]["srv6"]["encapMode"] = "encap.red"
        doc["spec"]["srv6"]["policies"] = []

    lab = Lab.variant("two-site.yaml", tmp_path, reduced)
    labs.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    ips = pod_ips(lab)
    wire = capture_during_ping(lab, "tk-n1-p0", ips["os-n1-p0"])
    # reduced encapsulation with one SID: IPv4-in-IPv6 straight to the SID, no SRH
    assert "RT6" not in wire, wire
    assert "fcbb:bb00:2:1::4" in wire, wire
    assert f"{ips['tk-n1-p0']} > {ips['os-n1-p0']}: ICMP echo request" in wire, wire
    assert flatroute("lab", "test", "--prefix", lab.prefix).returncode == 0


def test_jumbo_underlay_carries_full_size_pod_packets_between_sites(
        labs: list[Lab], tmp_path: Path) -> None:
    """underlayMtu 9000: the lab's links take it, and a pod packet of the full pod MTU (8920)
    crosses the WAN with don't-fragment set, encapsulated with the policy's two segments
    (+80 bytes: exactly 9000)."""
    def jumbo(doc: dict[str, Any]) -> None:
        doc["spec"]["srv6"]["underlayMtu"] = 9000
        doc["spec"]["pods"]["mtu"] = 8920

    lab = Lab.variant("two-site.yaml", tmp_path, jumbo)
    labs.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    ips = pod_ips(lab)
    big = lab.exec("tk-n1-p0", "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "8892",
                   ips["os-n1-p0"])
    assert big.returncode == 0, big.stdout + big.stderr
    one_more = lab.exec("tk-n1-p0", "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "8893",
                        ips["os-n1-p0"])
    assert one_more.returncode != 0  # the pod's own MTU refuses it, loudly
    assert "message too long" in one_more.stdout + one_more.stderr
