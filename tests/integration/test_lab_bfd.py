"""BFD and metrics on the leaf-spine lab: the node's speaker runs FRR's bfdd beside ExaBGP and
drops a ToR's next hop on BFD down, before BGP itself has noticed anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab.up import METRICS_PORT
from tests.integration.test_lab import LAB_ROOT, Lab, running

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with running(Lab("leaf-spine.yaml", pods=1), "/usr/lib/frr/bfdd") as lab:
        yield lab


def speaker_status(lab: Lab, node: str) -> dict[str, dict[str, object]]:
    out = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{node}", "flatroute", "speaker",
                          "status", "--node", node, "--state-dir",
                          str(LAB_ROOT / lab.prefix / "state"), "--json"],
                         capture_output=True, text=True, check=False).stdout
    return {s["name"]: s for s in json.loads(out)["sessions"]}


def default_route(lab: Lab, node: str) -> str:
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-{node}", "ip", "route", "show",
                           "default"], capture_output=True, text=True, check=False).stdout


def wait_for(what: str, check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def frr_pids(lab: Lab, router: str, *daemons: str) -> list[int]:
    pids = subprocess.run(["ip", "netns", "pids", f"{lab.prefix}-{router}"],
                          capture_output=True, text=True, check=False).stdout.split()
    out = []
    for pid in pids:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if os.path.basename(exe) in daemons:
            out.append(int(pid))
    return out


def test_bfd_drops_the_next_hop_before_bgp_notices_and_metrics_say_so(lab: Lab) -> None:
    wait_for("BFD up toward both leaves", lambda: all(
        s["bfd"] == "up" for s in speaker_status(lab, "r1-n1").values()))
    assert "r1-leaf1" in default_route(lab, "r1-n1")
    # metrics on the node's loopback
    metrics = subprocess.run(
        ["ip", "netns", "exec", f"{lab.prefix}-r1-n1", "python3", "-c",
         "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
         f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())"],
        capture_output=True, text=True, check=False).stdout
    assert 'flatroute_speaker_bgp_session_up{node="r1-n1"' in metrics
    assert 'flatroute_speaker_bfd_up{node="r1-n1",peer="fd00:10:1::1",tor="r1-leaf1"} 1.0' \
        in metrics
    assert "flatroute_speaker_reconcile_duration_seconds_count" in metrics
    # r1-leaf1 freezes (bgpd and bfdd stop answering, its links stay up)
    frozen = frr_pids(lab, "r1-leaf1", "bgpd", "bfdd")
    assert len(frozen) == 2
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for("r1-leaf1's next hop to leave the default route",
                 lambda: "r1-leaf1" not in default_route(lab, "r1-n1"))
        sessions = speaker_status(lab, "r1-n1")
        assert sessions["r1-leaf1"]["bfd"] == "down"
        # BGP's hold timer (9 s) has not fired yet: BFD alone took the path out
        assert sessions["r1-leaf1"]["state"] == "established"
        assert "r1-leaf2" in default_route(lab, "r1-n1")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    wait_for("r1-leaf1 back in the default route",
             lambda: "r1-leaf1" in default_route(lab, "r1-n1"), timeout=30)
