"""Issue 4's cross-site SRv6 test on real namespaces: two sites with FRR ToRs, an IPv6-only WAN
router, speakers applying the controller's node states, pods attached by the CNI plugin."""

from __future__ import annotations

import json
import os
import re
import signal
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
            lab.finish()


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
        # the controller replaces the node state with a tombstone (flatroute/tombstone.py)
        path = state_dir / "nodes" / "os-n2.json"
        if not path.exists() or "removed" not in json.loads(path.read_text())["spec"]:
            left.append("os-n2's tombstone")
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


def test_speakers_killed_and_restarted_lose_no_cross_site_packet(labs: list[Lab]) -> None:
    """Graceful restart on the eBPF datapath: kill -9 both ends' speakers (and ExaBGP) while
    pods ping across the WAN through SRv6. The pinned programs and maps carry the traffic
    while nobody runs them; the restarted speakers reuse them and change nothing."""
    from tests.integration.test_lab_unnumbered import _processes

    lab = Lab("two-site.yaml", pods=1)
    labs.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    ips = pod_ips(lab)
    # right after `lab up` the speakers are still settling their held paths (End-of-RIB + 2 s)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        warm = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-tk-n1-p0", "ping", "-q",
                               "-c", "25", "-i", "0.02", ips["os-n1-p0"]],
                              capture_output=True, text=True, check=False)
        if " 0% packet loss" in warm.stdout:
            break
    ping4 = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-tk-n1-p0", "ping", "-q",
                              "-i", "0.02", "-w", "10", ips["os-n1-p0"]],
                             stdout=subprocess.PIPE, text=True)
    v6 = json.loads((LAB_ROOT / lab.prefix / "lab.json").read_text())["pods"]
    six = next(p["ipv6"] for p in v6 if p["name"] == "tk-n1-p0")
    ping6 = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-os-n1-p0", "ping", "-q",
                              "-i", "0.02", "-w", "10", six], stdout=subprocess.PIPE, text=True)
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(1.5)
        for node in ("tk-n1", "os-n1"):
            ns = f"{lab.prefix}-{node}"
            speaker = next((pid, argv) for pid, argv in _processes(ns)
                           if "speaker" in argv and "run" in argv)
            os.kill(speaker[0], signal.SIGKILL)
            for pid, argv in _processes(ns):
                if any("exabgp" in a for a in argv):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(1.5)  # nobody runs the datapath of this node now
            restarted.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, *speaker[1]], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        out4, _ = ping4.communicate(timeout=30)
        out6, _ = ping6.communicate(timeout=30)
        assert " 0% packet loss" in out4 and " 0% packet loss" in out6, out4 + out6
    finally:
        ping4.kill()
        ping6.kill()
        for p in restarted:
            if p.poll() is None:
                p.terminate()
