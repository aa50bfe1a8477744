"""The speaker under faults, against two real FRR ToRs and a real ExaBGP (issue 18):
- `speaker status` exits with the health (a BGP outage is never 0), and says why in words;
- relative --run-dir / --state-dir work (ExaBGP runs in the run dir);
- a removed node's tombstone makes both ToRs' kernels lose its IPv4 and IPv6 blocks at once
  (not after the 120 s restart time), with a Cease NOTIFICATION; a node state that merely
  vanished changes nothing.

One lab for the module; tests run in file order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from flatroute import tombstone
from tests.integration import speaker_lab as L
from tests.netns_util import Netns, need_root, need_tool

pytestmark = pytest.mark.root

V4, V6 = "10.244.0.0/26", "fd00:244::/64"
GONE = tombstone.Removed("n1", "2026-01-01T00:00:30+00:00")


@pytest.fixture(scope="module")
def lab() -> Iterator[L.Lab]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh")
    lab = L.build(Netns(), n_tors=2)
    try:
        for t in lab.tors:
            L.start_frr(t, L.frr_config(t, v6_session=True))
        yield lab
    finally:
        L.cleanup(lab)


def _spec(lab: L.Lab) -> dict[str, object]:
    return L.node_spec(lab, v6_session=True, v6_blocks=(V6,))


def _in_kernel(tor: L.Tor, prefix: str) -> bool:
    return prefix in L.routes(tor.ns, "-6" if ":" in prefix else "-4")


def _everywhere(lab: L.Lab) -> bool:
    return all(_in_kernel(t, p) for t in lab.tors for p in (V4, V6))


def _nowhere(lab: L.Lab) -> bool:
    return not any(_in_kernel(t, p) for t in lab.tors for p in (V4, V6))


def _start_relative(lab: L.Lab) -> None:
    """The speaker with relative directories, from the lab's directory (issue 18, item 4)."""
    log = open(os.path.join(lab.tmp, "speaker.log"), "ab")  # noqa: SIM115
    lab.speaker = subprocess.Popen(
        ["ip", "netns", "exec", lab.node_ns, sys.executable, "-m", "cli.main", "speaker",
         "run", "--node", "n1", "--state-dir", "state", "--run-dir", "run",
         "--config-dir", ".", "--interval", "5", "--bpf-dir", os.path.relpath(lab.bpf_dir,
                                                                             lab.tmp)],
        stdout=log, stderr=log, cwd=lab.tmp)
    log.close()


def _in_fabric(lab: L.Lab) -> None:
    L.publish(lab, _spec(lab))
    if lab.speaker is None:
        _start_relative(lab)
    L.wait_for(lambda: _everywhere(lab), 40)


def _status_cli(lab: L.Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "speaker", "status",
                           "--node", "n1", "--state-dir", "state", *extra], cwd=lab.tmp,
                          capture_output=True, text=True, timeout=60, check=False)


def _exits(lab: L.Lab, code: int, *extra: str) -> subprocess.CompletedProcess[str] | None:
    out = _status_cli(lab, *extra)
    return out if out.returncode == code else None


def test_status_exit_codes_follow_bgp_and_say_why(lab: L.Lab) -> None:
    _in_fabric(lab)  # with relative directories: ExaBGP found its configuration
    assert L.wait_for(lambda: _exits(lab, 0), 30)
    tor1, tor2 = lab.tors
    L.stop_daemon(tor1, "bgpd")  # tor1's BGP process dies
    out = L.wait_for(lambda: _exits(lab, 4), 30)  # degraded: tor2 still carries traffic
    assert "health: degraded: session tor1 (10.1.1.1) down: " in out.stdout, out.stdout
    assert _exits(lab, 0, "--probe", "ready")
    words = {s["peer"]: s["lastError"] for s in L.status(lab)["sessions"]}
    print("\ntor1 bgpd killed:", words)
    assert words["10.1.1.1"].startswith(("the peer closed the TCP connection",
                                         "connection refused: nothing listens"))
    assert "closing connection" not in str(words) and "MD5" not in str(words)
    L.stop_daemon(tor2, "bgpd")
    out = L.wait_for(lambda: _exits(lab, 5), 30)  # every session down: a BGP outage
    assert "health: down: no BGP session is up" in out.stdout
    assert _exits(lab, 5, "--probe", "ready") and _exits(lab, 0, "--probe", "live")
    # the ToRs' bgpd still down: a connect finds nothing listening, said as such
    L.wait_for(lambda: all((s["lastError"] or "").startswith("connection refused")
                           for s in L.status(lab)["sessions"]), 30)
    for t in lab.tors:
        L.reload_frr(t, L.frr_config(t, v6_session=True))
    assert L.wait_for(lambda: _exits(lab, 0), 60)


def _notifications(lab: L.Lab) -> dict[str, tuple[int, str]]:
    """Per session of each ToR: (NOTIFICATIONs received, the last one's reason)."""
    out = {}
    for t in lab.tors:
        for addr, p in t.json("show bgp neighbors json").items():
            if isinstance(p, dict):
                # the reason of the last NOTIFICATION stays when a later reset (ExaBGP
                # reconnecting after its teardown, then stopped) becomes lastResetDueTo
                out[f"{t.name} {addr}"] = (int(p.get("messageStats", {}).get(
                    "notificationsRecv", 0)), str(p.get("lastNotificationReason")))
    return out


def _ceased(before: dict[str, tuple[int, str]], lab: L.Lab) -> bool:
    """Every session of both ToRs received a new NOTIFICATION from the node, and it was
    Cease/Peer De-configured. (FRR shows the last one's reason only while the last reset
    is that NOTIFICATION: ExaBGP may reconnect once more before it is stopped.)"""
    now = _notifications(lab)
    reasons = {why for _, why in now.values() if why != "None"}
    return len(now) == 4 and reasons == {"Cease/Peer De-configured"} and all(
        n > before.get(k, (0, ""))[0] for k, (n, _) in now.items())


def _assert_ceased(before: dict[str, tuple[int, str]], lab: L.Lab) -> None:
    if _ceased(before, lab):
        return
    with open(os.path.join(lab.tmp, "speaker.log"), encoding="utf-8") as fh:
        log = fh.read().splitlines()
    print("\n".join(x[-400:] for x in log if "teardown" in x or "left" in x
                    or "withdraw" in x or "exabgp" in x)[-6000:])
    print({a: {k: v for k, v in n.items() if "ast" in k or "eset" in k}
           for t in lab.tors for a, n in t.json("show bgp neighbors json").items()})
    raise AssertionError((before, _notifications(lab)))


def test_a_vanished_node_state_changes_nothing(lab: L.Lab) -> None:
    _in_fabric(lab)
    os.unlink(lab.state_file)
    time.sleep(3)  # three passes at --interval 1
    assert _everywhere(lab)
    st = L.status(lab)
    assert "no node state" in (st.get("lastError") or "") and st.get("removed") is None


def test_a_tombstone_takes_both_blocks_off_both_tors_at_once(lab: L.Lab) -> None:
    _in_fabric(lab)
    before = _notifications(lab)
    t0 = time.monotonic()
    L.publish(lab, tombstone.to_json(GONE))
    L.wait_for(lambda: _nowhere(lab), 10, interval=0.05)
    gone_after = time.monotonic() - t0
    print(f"\ntombstone published -> blocks gone from both ToRs' kernels: {gone_after:.2f} s")
    assert gone_after < 5.0  # the restart time is 120 s: this is no stale-route expiry
    L.wait_for(lambda: (L.status(lab).get("removed") or {}).get("state") == "left", 20)
    st = L.status(lab)
    assert st["removed"]["why"] == "notified", st["removed"]
    assert st["announced"] == [] and not st["exabgp"]["running"]
    _assert_ceased(before, lab)
    assert not os.path.exists(os.path.join(lab.run_dir, "node.json"))
    time.sleep(2)
    assert _nowhere(lab)  # and nothing comes back


def test_back_in_the_fabric_it_announces_again(lab: L.Lab) -> None:
    _in_fabric(lab)
    assert L.status(lab).get("removed") is None


def test_sigterm_right_after_the_tombstone_still_withdraws(lab: L.Lab) -> None:
    _in_fabric(lab)
    L.wait_for(lambda: len(L.status(lab).get("sessions", [])) == 4 and all(
        s["state"] == "established" for s in L.status(lab)["sessions"]), 30)
    before = _notifications(lab)
    t0 = time.monotonic()
    L.publish(lab, tombstone.to_json(GONE))
    assert lab.speaker is not None
    lab.speaker.send_signal(signal.SIGTERM)  # before a pass could read the tombstone
    L.wait_for(lambda: _nowhere(lab), 10, interval=0.05)
    print(f"\ntombstone + SIGTERM -> blocks gone: {time.monotonic() - t0:.2f} s")
    assert lab.speaker.wait(timeout=20) == 0
    lab.speaker = None
    _assert_ceased(before, lab)


FABRIC = """\
apiVersion: flatroute.dev/v1
kind: Fabric
metadata: {name: faults}
spec:
  asn: {scheme: cluster, cluster: 64512}
  bgp: {holdTime: 9, keepalive: 3, gracefulRestart: 120}
  pods: {ipv4BlockSize: 26, ipv6BlockSize: 122, mtu: 1500}
  sites:
    - name: s1
      pools: {ipv4: [10.244.0.0/20], ipv6: ["fd00:10:244::/64"]}
      racks:
        - name: r1
          tors:
            - {name: tor1, asn: 65001, routerId: 10.255.0.1, platform: frr,
               peering: {ipv4: 10.1.1.1/24, ipv6: "fd00:1:1::1/64"}}
            - {name: tor2, asn: 65002, routerId: 10.255.0.2, platform: frr,
               peering: {ipv4: 10.1.2.1/24, ipv6: "fd00:1:2::1/64"}}
  nodes:
    - {name: n2, rack: r1}
"""
# n1 pins its uplink addresses in both forms (issue 18, item 9)
N1 = """\
    - name: n1
      rack: r1
      uplinks:
        tor1: {ipv4: 10.1.1.11/24, ipv6: "fd00:1:1::11/64"}
        tor2: {ipv4: 10.1.2.11, ipv6: "fd00:1:2::11"}
"""
PLANNED = ("10.244.0.0/26", "fd00:10:244::/122")  # what the planner gives n1


def _write_fabric(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def _planned_on(lab: L.Lab, present: bool) -> bool:
    return all(_in_kernel(t, p) == present for t in lab.tors for p in PLANNED)


def test_a_fabric_edit_takes_the_node_off_both_tors(lab: L.Lab) -> None:
    """End to end: the real controller (static mode) and the speaker, the node removed from
    the fabric file; timed from the edit to the blocks gone from both ToRs' kernels."""
    fabric = os.path.join(lab.tmp, "fabric.yaml")
    _write_fabric(fabric, FABRIC + N1)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lab.state_file)
    log = open(os.path.join(lab.tmp, "controller.log"), "ab")  # noqa: SIM115
    ctl = subprocess.Popen([sys.executable, "-m", "cli.main", "controller", "run",
                            "--fabric", fabric, "--state-dir", lab.state_dir],
                           stdout=log, stderr=log)
    log.close()
    try:
        L.wait_for(lambda: os.path.exists(lab.state_file), 30)
        _start_relative(lab)
        L.wait_for(lambda: _planned_on(lab, True), 60)
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            _write_fabric(fabric, FABRIC)
            L.wait_for(lambda: _planned_on(lab, False), 30, interval=0.02)
            took.append(time.monotonic() - t0)
            L.wait_for(lambda: (L.status(lab).get("removed") or {}).get("state") == "left", 30)
            _write_fabric(fabric, FABRIC + N1)  # back within the grace: the same blocks
            L.wait_for(lambda: _planned_on(lab, True), 60)
        print(f"\nfabric edit -> blocks gone from both ToRs' kernels: "
              f"{', '.join(f'{t:.2f}' for t in took)} s (median {sorted(took)[1]:.2f} s)")
        assert sorted(took)[1] < 2.0, took  # the goal: p50 under 2 s
    finally:
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(timeout=15)
        except subprocess.TimeoutExpired:
            ctl.kill()
            ctl.wait()
