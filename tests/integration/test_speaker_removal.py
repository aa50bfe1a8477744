"""A node removed from the fabric, against two real FRR ToRs and a real ExaBGP: its tombstone
makes both ToRs' kernels lose its IPv4 and IPv6 blocks at once (not after the 120 s restart
time), with a Cease NOTIFICATION; a node state that merely vanished changes nothing.

One lab for the module; tests run in file order.
"""

from __future__ import annotations

import os
import signal
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


def _in_fabric(lab: L.Lab) -> None:
    L.publish(lab, _spec(lab))
    if lab.speaker is None:
        L.start_speaker(lab)
    L.wait_for(lambda: _everywhere(lab), 40)


def _notifications(lab: L.Lab) -> dict[str, tuple[int, str]]:
    """Per session of each ToR: (NOTIFICATIONs received, FRR's reason for the last reset)."""
    out = {}
    for t in lab.tors:
        for addr, p in t.json("show bgp neighbors json").items():
            if isinstance(p, dict):
                out[f"{t.name} {addr}"] = (int(p.get("messageStats", {}).get(
                    "notificationsRecv", 0)), f"{p.get('lastResetDueTo')}: "
                    f"{p.get('lastNotificationReason')}")
    return out


def _ceased(before: dict[str, tuple[int, str]], lab: L.Lab) -> bool:
    """Every session of both ToRs got a new Cease/Peer De-configured from the node."""
    now = _notifications(lab)
    return len(now) == 4 and all(
        n > before.get(k, (0, ""))[0]
        and why == "BGP Notification received: Cease/Peer De-configured"
        for k, (n, why) in now.items())


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
    assert _ceased(before, lab), _notifications(lab)
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
    assert _ceased(before, lab), _notifications(lab)
