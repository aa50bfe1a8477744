"""The speaker against two FRR ToRs (IPv4 sessions): announce, withdraw, ECMP, drain, GR, owners.

One lab for the whole module (set-up is the expensive part); tests run in file order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration import speaker_lab as L
from tests.netns_util import Netns, need_root, need_tool, sh

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[L.Lab]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh")
    lab = L.build(Netns(), n_tors=2)
    try:
        for t in lab.tors:
            L.start_frr(t, L.frr_config(t))
            # an anycast "remote" address behind both ToRs, for traffic through the node
            sh("ip", "addr", "add", "10.200.0.1/32", "dev", "lo", ns=t.ns)
        L.publish(lab, L.node_spec(lab))
        L.start_speaker(lab)
        yield lab
    finally:
        L.cleanup(lab)


def _frr_has(tor: L.Tor, prefix: str) -> bool:
    return prefix in tor.json("show bgp ipv4 unicast json").get("routes", {})


def _established(lab: L.Lab) -> bool:
    st = L.session_states(lab)
    return len(st) == 2 and all(v == "established" for v in st.values())


def test_sessions_come_up_and_pod_block_reaches_frr_rib_and_kernel(lab: L.Lab) -> None:
    L.wait_for(lambda: _established(lab), 30)
    for t in lab.tors:
        L.wait_for(lambda t=t: _frr_has(t, "10.244.0.0/26"), 10)
        L.wait_for(lambda t=t: "10.244.0.0/26" in L.routes(t.ns), 10)
    assert "proto bgp" in L.routes(lab.tors[0].ns)
    st = L.status(lab)
    assert st["announced"] == ["10.244.0.0/26"]
    assert all(s["prefixesSent"] == 1 for s in st["sessions"])
    assert st["lastError"] is None


def test_dual_tors_give_ecmp_default_route(lab: L.Lab) -> None:
    def ecmp() -> bool:
        out = L.routes(lab.node_ns)
        return "default proto 70" in out and "via 10.1.1.1" in out and "via 10.1.2.1" in out
    L.wait_for(ecmp, 15)
    assert all(s["prefixesReceived"] == 1 for s in L.status(lab)["sessions"])


def test_added_block_is_announced_removed_block_withdrawn_without_session_reset(
        lab: L.Lab) -> None:
    before = {s["peer"]: s["flaps"] for s in L.status(lab)["sessions"]}
    L.publish(lab, L.node_spec(lab, v4_blocks=("10.244.0.0/26", "10.244.0.64/26")))
    L.wait_for(lambda: all(_frr_has(t, "10.244.0.64/26") for t in lab.tors), 10)
    L.publish(lab, L.node_spec(lab, v4_blocks=("10.244.0.64/26",)))
    L.wait_for(lambda: not any(_frr_has(t, "10.244.0.0/26") for t in lab.tors), 10)
    L.wait_for(lambda: "10.244.0.0/26" not in L.routes(lab.tors[0].ns), 10)
    assert all(_frr_has(t, "10.244.0.64/26") for t in lab.tors)
    L.publish(lab, L.node_spec(lab))
    L.wait_for(lambda: all(_frr_has(t, "10.244.0.0/26") for t in lab.tors), 10)
    after = {s["peer"]: s["flaps"] for s in L.status(lab)["sessions"]}
    assert after == before  # announcement changes never reset a session
    assert L.status(lab)["exabgp"]["starts"] == 1


def _drops(tor: L.Tor) -> tuple[str, int]:
    n = tor.json(f"show bgp neighbors {tor.node_v4} json").get(tor.node_v4, {})
    return n.get("bgpState", "?"), int(n.get("connectionsDropped", -1))


def test_a_peer_removed_and_added_back_leaves_the_other_session_alone(lab: L.Lab) -> None:
    """Peer changes reload ExaBGP: only the neighbour whose configuration changed is reset
    (MetalLB users' complaint: any change flapped every session)."""
    tor1, tor2 = lab.tors
    L.wait_for(lambda: _established(lab), 20)
    before = _drops(tor1)
    assert before[0] == "Established"
    only_tor1 = L.node_spec(lab)
    only_tor1["peers"] = [p for p in only_tor1["peers"] if p["name"] == tor1.name]
    L.publish(lab, only_tor1)
    L.wait_for(lambda: _drops(tor2)[0] != "Established", 15)
    L.wait_for(lambda: [s["name"] for s in L.status(lab)["sessions"]] == [tor1.name], 10)
    L.publish(lab, L.node_spec(lab))
    L.wait_for(lambda: _established(lab) and _frr_has(tor2, "10.244.0.0/26"), 20)
    assert _drops(tor1) == before  # never reset, from start to end
    assert _frr_has(tor1, "10.244.0.0/26")
    assert L.status(lab)["exabgp"]["starts"] == 1  # reloaded, never restarted


def test_foreign_routes_are_left_alone(lab: L.Lab) -> None:
    sh("ip", "route", "add", "10.99.0.0/24", "via", "10.1.1.1", "proto", "static",
       ns=lab.node_ns)
    sh("ip", "route", "add", "10.98.0.0/24", "via", "10.1.2.1", ns=lab.node_ns)
    os.kill(L.speaker_pid(lab), signal.SIGHUP)
    time.sleep(2.5)  # a few reconcile passes
    out = L.routes(lab.node_ns)
    assert "10.99.0.0/24 via 10.1.1.1 dev tor1 proto static" in out
    assert "10.98.0.0/24 via 10.1.2.1 dev tor2" in out
    sh("ip", "route", "del", "10.99.0.0/24", ns=lab.node_ns)
    sh("ip", "route", "del", "10.98.0.0/24", ns=lab.node_ns)


def _cli(lab: L.Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "speaker", *args, "--node",
                           "n1", "--state-dir", lab.state_dir, "--run-dir", lab.run_dir],
                          capture_output=True, text=True, timeout=60, check=False)


def test_status_command_and_drain(lab: L.Lab) -> None:
    out = _cli(lab, "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "established" in out.stdout and "10.1.2.1" in out.stdout
    res = _cli(lab, "drain")
    assert res.returncode == 0, res.stderr
    L.wait_for(lambda: not any(_frr_has(t, "10.244.0.0/26") for t in lab.tors), 10)
    assert _established(lab)  # drained, not disconnected
    res = _cli(lab, "drain", "--undo")
    assert res.returncode == 0, res.stderr
    L.wait_for(lambda: all(_frr_has(t, "10.244.0.0/26") for t in lab.tors), 10)


def test_graceful_restart_kill9_and_restart_lose_no_packets(lab: L.Lab) -> None:
    # A pod behind the node pings an address behind the ToRs: the ToRs need our pod block
    # (kept stale by GR), the node needs its learned default route (kept in the kernel).
    pod = lab.netns.add("pod")
    lab.netns.veth(pod, "eth0", lab.node_ns, "vpod")
    sh("ip", "addr", "add", "10.244.0.2/32", "dev", "eth0", ns=pod)
    sh("ip", "route", "add", "10.1.1.11/32", "dev", "eth0", ns=pod)
    sh("ip", "route", "add", "default", "via", "10.1.1.11", "dev", "eth0", ns=pod)
    sh("ip", "route", "add", "10.244.0.2/32", "dev", "vpod", ns=lab.node_ns)
    sh("sysctl", "-qw", "net.ipv4.conf.vpod.proxy_arp=1", ns=lab.node_ns)
    L.wait_for(lambda: sh("ping", "-c1", "-W1", "10.200.0.1", ns=pod, check=False)
               .returncode == 0, 15)
    ping = subprocess.Popen(["ip", "netns", "exec", pod, "ping", "-q", "-i", "0.02", "-w",
                             "14", "10.200.0.1"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    exabgp = sh("ip", "netns", "pids", lab.node_ns).stdout.split()
    assert lab.speaker is not None
    lab.speaker.kill()  # kill -9 the speaker...
    for pid in exabgp:  # ...and its ExaBGP (it dies with the speaker anyway)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if b"exabgp" in cmd and b"bfdd" not in cmd:
            os.kill(int(pid), signal.SIGKILL)
    lab.speaker.wait()
    time.sleep(2)  # away: the kernel routes stay, the ToRs keep our block as stale
    assert "default proto 70" in L.routes(lab.node_ns)
    assert all(_frr_has(t, "10.244.0.0/26") for t in lab.tors)
    L.start_speaker(lab)
    L.wait_for(lambda: _established(lab) and L.status(lab)["exabgp"]["running"], 20)
    out, _ = ping.communicate(timeout=30)
    assert " 0% packet loss" in out, out
    assert "via 10.1.1.1" in L.routes(lab.node_ns) and "via 10.1.2.1" in L.routes(lab.node_ns)


def test_peer_down_drops_its_next_hop(lab: L.Lab) -> None:
    L.wait_for(lambda: _established(lab), 20)
    L.stop_daemon(lab.tors[1], "bgpd")  # tor2's BGP dies: TCP reset, session down
    # without BFD the node notices at the TCP reset or the hold timer (9 s)
    L.wait_for(lambda: "via 10.1.2.1" not in L.routes(lab.node_ns), 20)
    assert "via 10.1.1.1" in L.routes(lab.node_ns)
    down = next(s for s in L.status(lab)["sessions"] if s["peer"] == "10.1.2.1")
    assert down["state"] != "established" and down["lastError"]
