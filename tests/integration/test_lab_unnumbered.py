"""The unnumbered example in the lab: no address on any node link, sessions over IPv6
link-local addresses found by router discovery. BFD on them, and a speaker killed with -9 and
restarted without a lost packet (graceful restart, kernel routes kept, ToR found again)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_lab import Lab, running
from tests.integration.test_lab_bfd import default_route, frr_pids, speaker_status, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def unnumbered_lab() -> Iterator[Lab]:
    with running(Lab("unnumbered.yaml", pods=1), "/usr/lib/frr/bfdd",
                 "/usr/lib/frr/zebra") as lab:
        yield lab


def test_bfd_on_link_local_sessions_of_unnumbered_uplinks(unnumbered_lab: Lab) -> None:
    """The same guarantee without a single configured address on the node links: bfdd (with
    the zebra it needs for link-local peers) runs on the sessions found by router discovery."""
    lab = unnumbered_lab
    wait_for("BFD up toward both ToRs", lambda: all(
        s["bfd"] == "up" for s in speaker_status(lab, "node1").values()))
    sessions = speaker_status(lab, "node1")
    assert sorted(sessions) == ["r1-a", "r1-b"]
    assert all(str(s["peer"]).startswith("fe80::") for s in sessions.values())
    assert "dev r1-a" in default_route(lab, "node1")
    frozen = frr_pids(lab, "r1-a", "bgpd", "bfdd")
    assert len(frozen) == 2
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for("r1-a's next hop to leave the default route",
                 lambda: "dev r1-a" not in default_route(lab, "node1"))
        sessions = speaker_status(lab, "node1")
        assert sessions["r1-a"]["bfd"] == "down"
        assert sessions["r1-a"]["state"] == "established"  # BGP has not noticed yet
        assert "dev r1-b" in default_route(lab, "node1")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    wait_for("r1-a back in the default route",
             lambda: "dev r1-a" in default_route(lab, "node1"), timeout=30)


def _processes(ns: str) -> list[tuple[int, list[str]]]:
    out = []
    for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                              check=False).stdout.split():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode() for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        out.append((int(pid), argv))
    return out


def test_speaker_kill9_and_restart_lose_no_packet(unnumbered_lab: Lab) -> None:
    lab = unnumbered_lab
    node_ns = f"{lab.prefix}-node1"
    wait_for("sessions usable", lambda: all(
        s["state"] == "established" and s["bfd"] == "up"
        for s in speaker_status(lab, "node1").values()))
    speaker = next((pid, argv) for pid, argv in _processes(node_ns)
                   if "speaker" in argv and "run" in argv)
    # node2's first pod: the first address of node2's block, across the ToRs
    ping = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-node1-p0", "ping", "-q",
                             "-i", "0.02", "-w", "12", "10.244.0.65"],
                            stdout=subprocess.PIPE, text=True)
    restarted = None
    try:
        time.sleep(1.5)
        os.kill(speaker[0], signal.SIGKILL)
        for pid, argv in _processes(node_ns):
            if any("exabgp" in a for a in argv) and not any("bfdd" in a for a in argv):
                os.kill(pid, signal.SIGKILL)
        time.sleep(2)  # away: the kernel routes stay, the ToRs keep our block as stale
        assert default_route(lab, "node1").count("via inet6 fe80::") == 2
        restarted = subprocess.Popen(["ip", "netns", "exec", node_ns, *speaker[1]],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        out, _ = ping.communicate(timeout=30)
        assert " 0% packet loss" in out, out
        wait_for("the restarted speaker's sessions", lambda: all(
            s["state"] == "established" for s in speaker_status(lab, "node1").values()))
        assert speaker_status(lab, "node1").keys() == {"r1-a", "r1-b"}
    finally:
        ping.kill()
        if restarted is not None and restarted.poll() is None:
            restarted.terminate()  # `lab down` would kill it too: it runs in the lab's netns


def test_two_site_srv6_lab_with_every_tor_unnumbered(tmp_path: Path) -> None:
    """two-site.yaml with every ToR unnumbered toward its nodes (and no node uplink address):
    the SRv6 paths between the sites work over the link-local sessions as over numbered ones."""
    def unnumbered(doc: dict[str, Any]) -> None:
        for site in doc["spec"]["sites"]:
            for rack in site["racks"]:
                for tor in rack["tors"]:
                    tor["peering"] = {"mode": "unnumbered"}
        for node in doc["spec"]["nodes"]:
            node.pop("uplinks", None)

    lab = Lab.variant("two-site.yaml", tmp_path, unnumbered)
    with running(lab, "/usr/lib/frr/zebra", "tcpdump", "flatroute-cni"):
        t = lab.run("test")
        assert t.returncode == 0, t.stdout + t.stderr
        assert re.search(r"^\d+ passed, 0 failed$", t.stdout.strip().splitlines()[-1])
        assert "0 plain IPv4 packets on the WAN" in t.stdout
        assert "wan1: 0 IPv4 routes" in t.stdout
        peers = speaker_status(lab, "tk-n1")
        assert all(str(s["peer"]).startswith("fe80::") for s in peers.values()), peers
