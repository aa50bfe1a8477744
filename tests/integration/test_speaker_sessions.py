"""MD5 (right and wrong), IPv6 sessions and RFC 8950 against one FRR ToR."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration import speaker_lab as L
from tests.netns_util import Netns, need_root, need_tool

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[L.Lab]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh")
    lab = L.build(Netns(), n_tors=1)
    try:
        yield lab
    finally:
        L.cleanup(lab)


def _session(lab: L.Lab, peer: str) -> dict[str, object]:
    for s in L.status(lab).get("sessions", []):
        if s["peer"] == peer:
            return dict(s)
    return {}


def test_md5_right_password_establishes(lab: L.Lab) -> None:
    tor = lab.tors[0]
    L.start_frr(tor, L.frr_config(tor, md5="s3cret-pw"))
    with open(os.path.join(lab.tmp, "md5"), "w", encoding="utf-8") as fh:
        fh.write("s3cret-pw\n")
    L.publish(lab, L.node_spec(lab, md5_file="md5"))
    L.start_speaker(lab)
    L.wait_for(lambda: _session(lab, tor.v4).get("state") == "established", 30)
    L.wait_for(lambda: "10.244.0.0/26" in L.routes(tor.ns), 10)


def test_md5_wrong_password_shows_in_status(lab: L.Lab) -> None:
    tor = lab.tors[0]
    with open(os.path.join(lab.tmp, "md5"), "w", encoding="utf-8") as fh:
        fh.write("wrong-pw\n")
    os.utime(lab.state_file)
    L.wait_for(lambda: _session(lab, tor.v4).get("lastError")
               == "MD5 mismatch or peer unreachable", 30)
    assert _session(lab, tor.v4)["state"] != "established"


def test_ipv6_session_announces_v6_block_and_learns_v6_default(lab: L.Lab) -> None:
    tor = lab.tors[0]
    L.reload_frr(tor, L.frr_config(tor, v6_session=True))
    L.publish(lab, L.node_spec(lab, v6_session=True, v6_blocks=("fd00:10:244::/122",)))
    L.wait_for(lambda: _session(lab, tor.v6).get("state") == "established", 30)
    L.wait_for(lambda: "fd00:10:244::/122" in L.routes(tor.ns, "-6"), 10)
    L.wait_for(lambda: "default via fd00:1:1::1 dev tor1 proto 70"
               in L.routes(lab.node_ns, "-6"), 10)
    assert _session(lab, tor.v4).get("state") == "established"


def test_rfc8950_ipv4_over_ipv6_session(lab: L.Lab) -> None:
    tor = lab.tors[0]
    L.reload_frr(tor, L.frr_config(tor, rfc8950=True, v6_session=True))
    L.publish(lab, L.node_spec(lab, rfc8950=True, v6_blocks=("fd00:10:244::/122",)))
    L.wait_for(lambda: _session(lab, tor.v6).get("state") == "established", 30)
    # FRR installs our IPv4 block through our IPv6 address (explicit next hop, not router-id)
    L.wait_for(lambda: "via inet6 fd00:1:1::11" in L.routes(tor.ns), 15)
    # and we install its IPv4 default route through its IPv6 address
    L.wait_for(lambda: "default via inet6 fd00:1:1::1 dev tor1 proto 70"
               in L.routes(lab.node_ns), 15)
    assert "fd00:10:244::/122" in L.routes(tor.ns, "-6")
