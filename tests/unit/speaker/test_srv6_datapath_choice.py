"""The SRv6 datapath choice, the eBPF datapath's planning, and how both reach the status: pure
values and fakes, no root."""

from __future__ import annotations

import struct
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest

from flatroute import nodestate
from flatroute.errors import InvalidInput
from flatroute.fabric import parse_fabric
from flatroute.fabric.naming import is_pod_veth
from speaker import linkwatch, srv6_bpf
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry
from speaker.capabilities import (
    BPF_NEEDS,
    KERNEL_NEEDS,
    Capabilities,
    Check,
    DatapathUnavailable,
    choose_datapath,
    render_text,
)
from speaker.routes import Nexthop, Route, Seg6Encap, Seg6Local
from tests.conftest import EXAMPLES


def caps(kernel: bool, bpf: bool) -> Capabilities:
    checks = [Check(n, kernel, "" if kernel else "Operation not supported (errno 95)")
              for n in KERNEL_NEEDS]
    checks += [Check(n, bpf, "" if bpf else "not in BTF") for n in BPF_NEEDS]
    checks.append(Check("vrf", False, "Operation not supported (errno 95)"))
    return Capabilities(tuple(checks), "6.18.44")


@pytest.mark.parametrize(("wanted", "kernel", "bpf", "chosen"), [
    ("auto", True, True, "kernel"), ("auto", False, True, "bpf"), ("bpf", True, True, "bpf"),
    ("kernel", True, False, "kernel"), ("auto", True, False, "kernel")])
def test_choice(wanted: str, kernel: bool, bpf: bool, chosen: str) -> None:
    assert choose_datapath(wanted, caps(kernel, bpf)) == chosen


def test_refusals_name_the_missing_feature_and_the_kernels_words() -> None:
    with pytest.raises(DatapathUnavailable, match=r"kernel SRv6 datapath chosen.*seg6\.encap: "
                       r"Operation not supported \(errno 95\)"):
        choose_datapath("kernel", caps(False, True))
    with pytest.raises(DatapathUnavailable, match=r"eBPF SRv6 datapath chosen.*bpf\.btf"):
        choose_datapath("bpf", caps(True, False))
    with pytest.raises(DatapathUnavailable, match=r"no SRv6 datapath: kernel seg6 .* nor eBPF"):
        choose_datapath("auto", caps(False, False))
    with pytest.raises(DatapathUnavailable, match="unknown"):
        choose_datapath("vpp", caps(True, True))


def test_capabilities_round_trip_and_text() -> None:
    c = caps(False, True)
    assert Capabilities.from_doc(c.to_doc()) == c
    assert c.to_doc()["kernelSrv6"] is False and c.to_doc()["bpfSrv6"] is True
    assert "seg6.encap: Operation not supported (errno 95)" in c.missing
    text = render_text(c)
    assert "no   seg6.encap" in text and "srv6.datapath auto -> bpf" in text


def test_the_fabric_chooses_per_fabric_and_per_node() -> None:
    text = (EXAMPLES / "two-site.yaml").read_text()
    text = text.replace("    encapMode: encap\n", "    encapMode: encap\n    datapath: bpf\n")
    text = text.replace("    - name: os-n2\n      rack: os-r1\n",
                        "    - name: os-n2\n      rack: os-r1\n      srv6: {datapath: kernel}\n")
    f = parse_fabric(text, "two-site.yaml")
    assert f.srv6.datapath == "bpf"
    from flatroute.plan import plan

    p = plan(f)
    by = {n.name: n.srv6_datapath for n in p.nodes}
    assert by == {"tk-n1": "bpf", "tk-n2": "bpf", "os-n1": "bpf", "os-n2": "kernel"}
    st = nodestate.from_plan(p, next(n for n in p.nodes if n.name == "os-n2"))
    back = nodestate.from_json(nodestate.to_json(st), "x")
    assert back.srv6_datapath == "kernel"


def test_bad_datapath_values_are_refused_with_their_field() -> None:
    text = (EXAMPLES / "two-site.yaml").read_text().replace(
        "    encapMode: encap\n", "    encapMode: encap\n    datapath: xdp\n")
    with pytest.raises(InvalidInput, match=r"spec\.srv6\.datapath"):
        parse_fabric(text, "two-site.yaml")
    doc = nodestate.spec_doc(nodestate.from_plan(*_first_node()))
    doc["srv6"]["datapath"] = "xdp"
    with pytest.raises(InvalidInput, match=r"spec\.srv6\.datapath: must be auto, kernel or bpf"):
        nodestate.from_spec(doc)


def _first_node() -> tuple[object, object]:
    from flatroute.plan import plan

    p = plan(parse_fabric((EXAMPLES / "two-site.yaml").read_text(), "two-site.yaml"))
    return p, p.nodes[0]


SRC = IPv6Address("fcbb:bb00:1:1::1")
ROUTES = [
    Route(ip_network("10.245.0.0/26"), (Nexthop(None, "(bpf)"),),
          Seg6Encap("encap", (IPv6Address("fcbb:bb00:2:1::4"),)), kind="encap"),
    Route(ip_network("fcbb:bb00:1:1::4/128"), (Nexthop(None, "flrsid"),),
          Seg6Local("End.DX4"), kind="sid"),
]


def test_the_same_route_model_becomes_map_entries() -> None:
    want, problems = srv6_bpf.desired(ROUTES, source=SRC,
                                      locator=IPv6Network("fcbb:bb00:1:1::/64"),
                                      uplinks=["tor1", "tor2"],
                                      pod_veths=["flr0123456789ab"])
    assert problems == []
    assert want.entries == {
        EncapEntry(IPv4Network("10.245.0.0/26"), "encap", (IPv6Address("fcbb:bb00:2:1::4"),),
                   SRC),
        SidEntry(IPv6Address("fcbb:bb00:1:1::4"), "End.DX4"),
        LocatorEntry(IPv6Network("fcbb:bb00:1:1::/64"))}
    assert want.attach == {"tor1": "flr_sid", "tor2": "flr_sid",
                           "flr0123456789ab": "flr_encap"}
    # no End SID: no outer source, so the encapsulation cannot be programmed, and says why
    _, problems = srv6_bpf.desired(ROUTES, source=None, locator=None, uplinks=[], pod_veths=[])
    assert "no End SID" in problems[0]


def test_entry_and_attachment_diffs_touch_only_what_changed() -> None:
    a = SidEntry(IPv6Address("fc00::1"), "End")
    b = SidEntry(IPv6Address("fc00::2"), "End.DT6")
    b2 = SidEntry(IPv6Address("fc00::2"), "End.DT46")
    put, delete = srv6_bpf.diff([a, b2], [a, b, LocatorEntry(IPv6Network("fc00::/64"))])
    assert put == [b2] and delete == [LocatorEntry(IPv6Network("fc00::/64"))]
    assert srv6_bpf.diff([a], [a]) == ([], [])
    attach, detach = srv6_bpf.attach_diff(
        {"tor1": "flr_sid", "flr0123456789ab": "flr_encap", "tor2": "flr_sid"},
        {"tor1": "flr_sid", "flrdeadbeef0000": "flr_encap"},
        ["tor1", "flr0123456789ab", "flrdeadbeef0000"])
    assert attach == [("flr0123456789ab", "flr_encap")]  # tor2 does not exist (yet)
    assert detach == ["flrdeadbeef0000"]


def test_pod_veth_names_are_the_cni_plugins() -> None:
    from cni.verbs import is_our_veth, veth_name

    name = veth_name("c0ffee", "eth0")
    assert is_pod_veth(name) and is_our_veth(name)
    assert not is_pod_veth("flrsid") and not is_pod_veth("tor1")


def test_link_events_are_parsed_from_rtnetlink_datagrams() -> None:
    def newlink(name: str, mtype: int = linkwatch.RTM_NEWLINK) -> bytes:
        attr = struct.pack("=HH", 4 + len(name) + 1, linkwatch.IFLA_IFNAME) + name.encode() \
            + b"\0"
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + attr
        return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body

    data = newlink("flr0123456789ab") + newlink("gone", 17) + newlink("tor1")
    assert linkwatch.names_in(data) == ["flr0123456789ab", "tor1"]
    assert linkwatch.names_in(b"\x01\x02") == []


class _Kernel:
    """Just enough of the kernel adapter for the agent's loading step."""

    def __init__(self, c: Capabilities) -> None:
        from speaker.netlink import Features

        self.feats = Features.from_caps(c)

    def features(self) -> object:
        return self.feats


def test_the_agent_refuses_a_datapath_the_kernel_cannot_run_before_changing_anything(
        tmp_path: object) -> None:
    import json
    from pathlib import Path

    from speaker.agent import Agent, Options

    p, node = _first_node()
    st = nodestate.from_plan(p, node)  # type: ignore[arg-type]
    doc = json.loads(nodestate.to_json(st))
    doc["spec"]["srv6"]["datapath"] = "kernel"
    where = Path(str(tmp_path))
    (where / "nodes").mkdir()
    (where / "nodes" / f"{st.node}.json").write_text(json.dumps(doc))
    agent = Agent(Options(node=st.node, state_dir=str(where), run_dir=str(where / "run")),
                  kernel=_Kernel(caps(False, True)),  # type: ignore[arg-type]
                  tcp_probe=lambda _: {})
    error = agent._load()
    assert error is not None
    assert "spec.srv6.datapath: kernel SRv6 datapath chosen, but this kernel cannot: " \
           "seg6.encap: Operation not supported (errno 95)" in error
    assert agent.desired is None  # nothing of it is in force
    doc["spec"]["srv6"]["datapath"] = "auto"
    (where / "nodes" / f"{st.node}.json").write_text(json.dumps(doc))
    assert agent._load() is None
    assert agent.desired is not None and agent.desired.datapath == "bpf"


def test_only_the_missing_features_the_node_state_needs_are_reported() -> None:
    from speaker.capabilities import needed_missing

    c = caps(False, True)  # no kernel seg6, no VRF, eBPF fine
    assert needed_missing(c, None, ["End.DT4"]) == ()  # no SRv6: nothing is missing
    assert needed_missing(c, "bpf", ["End.DT4", "End"]) == ()  # eBPF needs no VRF
    k = caps(True, True)
    assert needed_missing(k, "kernel", ["End", "End.DX4"]) == ()
    assert needed_missing(k, "kernel", ["End.DT4"]) == (
        "vrf: Operation not supported (errno 95)", "seg6local.End.DT4: not probed")


def test_what_is_in_force_after_an_apply_is_derived_without_a_second_dump() -> None:
    a = SidEntry(IPv6Address("fc00::1"), "End")
    b = SidEntry(IPv6Address("fc00::2"), "End.DT6")
    b2 = SidEntry(IPv6Address("fc00::2"), "End.DT46")
    c = SidEntry(IPv6Address("fc00::3"), "End.DX4")
    loc = LocatorEntry(IPv6Network("fc00::/64"))
    now = srv6_bpf.after([a, b, loc], put=[b2, c], delete=[loc, a], failed=[c, a])
    # b replaced by b2, loc deleted; the failed put of c is not there, the failed delete of
    # a still is
    assert sorted(map(str, now)) == sorted(map(str, [a, b2]))
