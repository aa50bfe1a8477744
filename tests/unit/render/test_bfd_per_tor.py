"""BFD chosen per ToR and per rack: the plan, the node state and all five platforms agree."""

from __future__ import annotations

import re

import pytest

from flatroute import nodestate
from flatroute.errors import InvalidInput
from flatroute.fabric import Fabric, parse_fabric
from flatroute.plan import plan
from render import render
from render.view import build_views
from tests.conftest import EXAMPLES

#: every platform can express these sessions (NX-OS has no RFC 8950 on numbered sessions)
BASE = (EXAMPLES / "leaf-spine.yaml").read_text().replace("ipv4OverIpv6: true",
                                                          "ipv4OverIpv6: false")


def _fabric(text: str) -> Fabric:
    return parse_fabric(text, "leaf-spine.yaml")


def _mixed() -> Fabric:
    """BFD on for the fabric, off for rack r1 (both its ToRs) and for ToR r2-leaf2 alone."""
    text = BASE.replace("        - name: r1\n", "        - name: r1\n          bfd: false\n")
    text = text.replace("            - name: r2-leaf2\n",
                        "            - name: r2-leaf2\n              bfd: false\n")
    return _fabric(text)


def test_tor_then_rack_then_fabric_decides() -> None:
    f = _mixed()
    assert {r: f.bfd_on(r) for r in ("r1-leaf1", "r1-leaf2", "r2-leaf1", "r2-leaf2",
                                      "spine1")} == {
        "r1-leaf1": False, "r1-leaf2": False, "r2-leaf1": True, "r2-leaf2": False,
        "spine1": True}
    tor = "            - name: r1-leaf2\n"
    off = _fabric(BASE.replace("bfd: {enabled: true,", "bfd: {enabled: false,").replace(
        tor, tor + "              bfd: true\n"))
    assert off.bfd_on("r1-leaf2") and not off.bfd_on("r1-leaf1")


def test_a_bfd_choice_must_be_a_boolean() -> None:
    with pytest.raises(InvalidInput) as exc:
        _fabric(BASE.replace("        - name: r1\n",
                             "        - name: r1\n          bfd: yes-please\n"))
    assert "spec.sites[0].racks[0].bfd" in str(exc.value)


def test_each_peer_of_the_node_state_carries_its_tors_choice() -> None:
    f = _mixed()
    p = plan(f)
    by_peer = {(pp.tor, str(pp.address)): pp.bfd for pp in p.node("r2-n1").peers}
    assert by_peer == {("r2-leaf1", "10.20.1.1"): True, ("r2-leaf1", "fd00:20:1::1"): True,
                       ("r2-leaf2", "10.20.2.1"): False, ("r2-leaf2", "fd00:20:2::1"): False}
    st = nodestate.from_plan(p, p.node("r2-n1"))
    again = nodestate.from_json(nodestate.to_json(st))
    assert {x.name: x.bfd for x in again.peers} == {"r2-leaf1": True, "r2-leaf2": False}
    assert again.bgp.bfd.enabled  # the timers are in force: one peer runs BFD
    r1 = nodestate.from_plan(p, p.node("r1-n1"))
    assert not r1.bgp.bfd.enabled and not any(x.bfd for x in r1.peers)


def test_a_node_state_without_peer_choices_follows_bgp_bfd() -> None:
    p = plan(_fabric(BASE))
    doc = nodestate.spec_doc(nodestate.from_plan(p, p.node("r2-n1")))
    for peer in doc["peers"]:
        del peer["bfd"]
    st = nodestate.from_spec(doc)
    assert all(x.bfd for x in st.peers)


def test_views_mark_node_sessions_and_router_links() -> None:
    f = _mixed()
    views = {v.router.name: v for v in build_views(f, plan(f), None)}
    assert all(s.bfd for s in views["r2-leaf1"].sessions)
    assert not any(s.bfd for s in views["r2-leaf2"].sessions)
    spine = {lk.neighbor: lk.bfd for lk in views["spine1"].links}
    assert spine == {"r1-leaf1": False, "r1-leaf2": False, "r2-leaf1": True, "r2-leaf2": False}
    # a link without BFD never shares a peer group with one that has it
    groups = {lk.group for lk in views["spine1"].links if lk.bfd} & {
        lk.group for lk in views["spine1"].links if not lk.bfd}
    assert not groups


#: the statements that turn BFD on, per platform
BFD_LINE = {
    "frr": re.compile(r"^(bfd|\s*neighbor \S+ bfd( profile \S+)?)$"),
    "eos": re.compile(r"^\s*(neighbor \S+ bfd|bfd interval .*)$"),
    "nxos": re.compile(r"^\s*(bfd|feature bfd|bfd interval .*)$"),
    "junos": re.compile(r"^\s*bfd-liveness-detection"),
    "sonic": re.compile(r'^\s*"bfd": "true"'),
}


def _bfd_lines(platform: str, text: str) -> list[str]:
    return [x for x in text.splitlines() if BFD_LINE[platform].match(x)]


@pytest.mark.parametrize("platform", sorted(BFD_LINE))
def test_every_platform_renders_bfd_only_where_the_tor_runs_it(platform: str) -> None:
    f = _mixed()
    files = render(f, platform=platform)

    def text(router: str) -> str:
        suffix = ".json" if platform == "sonic" else ""
        return next(x.text for x in files if x.router == router and x.name.endswith(suffix)
                    and not x.name.endswith(".srv6.sh"))

    assert _bfd_lines(platform, text("r2-leaf1"))
    for router in ("r1-leaf1", "r2-leaf2"):
        assert _bfd_lines(platform, text(router)) == [], router
