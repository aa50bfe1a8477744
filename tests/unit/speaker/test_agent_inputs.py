"""The agent's input decisions, with fakes (no root): bad node states leave nothing half-applied,
unnumbered peers not yet found, the SRv6 datapath choice and the eBPF datapath's reconcile."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from flatroute.fabric.naming import POD_VETH_PREFIX, ifname
from tests.unit.speaker.fakes import FakeKernel, FakeNdisc, capabilities
from tests.unit.speaker.harness import DEV_A, DEV_B, Harness, doc, spec

POD = POD_VETH_PREFIX + "0123456789ab"
SRV6: dict[str, Any] = {
    "enabled": True, "locator": "fcbb:bb00:1:1::/64",
    "localSids": [{"sid": "fcbb:bb00:1:1::", "behavior": "End"},
                  {"sid": "fcbb:bb00:1:1::4", "behavior": "End.DX4"},
                  {"sid": "fcbb:bb00:1:1::46", "behavior": "End.DT46"}],
    "routes": [{"prefix": "10.245.0.0/26", "segments": ["fcbb:bb00:2:1::4"],
                "target": "n2"}]}


def _bad_states() -> list[tuple[str, str]]:
    other = doc(spec())
    other["spec"]["node"] = "n2"
    unknown = doc(spec())
    unknown["spec"]["peers"][0]["families"] = ["ipx"]
    return [("{not json", "invalid node state, nothing of it applied"),
            (json.dumps(other), "spec.node"),
            (json.dumps(unknown), "invalid node state, nothing of it applied")]


@pytest.mark.parametrize(("text", "words"), _bad_states())
def test_a_bad_node_state_leaves_the_last_good_one_in_force(tmp_path: Path, text: str,
                                                            words: str) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    good = h.once()
    assert good.last_error is None and good.generation is not None
    touched, events = h.kernel.touched(), h.bgp.events()
    h.write(text)
    st = h.once()
    assert st.last_error is not None and words in st.last_error
    assert h.kernel.touched() == touched  # not one kernel op or sysctl
    assert h.bgp.events() == events  # no start, reload, kill or command
    assert st.generation == good.generation and st.seen_generation is None
    assert st.announced == good.announced


def test_a_bad_first_node_state_touches_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write("{not json")
    st = h.once()
    assert st.last_error is not None and st.generation is None
    assert h.kernel.touched() == 0 and h.bgp.events() == (0, 0, 0, 0)
    h.once()  # nor on the next pass
    assert h.kernel.touched() == 0 and h.bgp.events() == (0, 0, 0, 0)


def test_a_missing_md5_file_is_bad_input(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec(bgp={**spec()["bgp"], "md5": {"file": "nope.secret"}}))
    st = h.once()
    assert st.last_error is not None and "spec.bgp.md5.file" in st.last_error
    assert h.kernel.touched() == 0 and h.bgp.events() == (0, 0, 0, 0)


UNNUMBERED = spec(
    uplinks=[{"tor": "tor-a", "unnumbered": True}, {"tor": "tor-b", "unnumbered": True}],
    peers=[{"name": "tor-a", "asn": 65001, "families": ["ipv4", "ipv6"]},
           {"name": "tor-b", "asn": 65002, "families": ["ipv4", "ipv6"]}])


def test_unnumbered_peers_not_yet_found_are_left_out_and_named(tmp_path: Path) -> None:
    tor_a = IPv6Address("fe80::a")
    kernel = FakeKernel(links_up=[DEV_A, DEV_B], link_locals={
        DEV_A: IPv6Address("fe80::1:a"), DEV_B: IPv6Address("fe80::1:b")})
    nd = FakeNdisc({DEV_A: tor_a})  # tor-b has not advertised itself yet
    h = Harness(tmp_path, kernel=kernel, ndisc=nd)
    h.write(UNNUMBERED)
    st = h.once()
    assert st.last_error is not None and "peer tor-b: no router advertisement" in st.last_error
    assert "tor-a" not in st.last_error.replace("tor-b", "")
    assert [s.peer for s in st.sessions] == [str(tor_a)]  # tor-a is not held back
    assert h.bgp.config is not None and f"neighbor {tor_a}" in h.bgp.config
    assert sorted(nd.advertised) == [DEV_A, DEV_B] and sorted(nd.asked) == [DEV_A, DEV_B]
    h.once(advance=1.0)
    assert sorted(nd.asked) == [DEV_A, DEV_B]  # not asked again before the retry time
    nd.routers[DEV_B] = IPv6Address("fe80::b")
    st = h.once(advance=10.0)
    assert st.last_error is None
    assert sorted(s.peer for s in st.sessions) == ["fe80::a", "fe80::b"]
    assert len(h.bgp.reloads) == 1  # the API was connected: tor-b added by a reload
    assert h.bgp.starts == 1


def test_the_agent_refuses_the_kernel_datapath_the_kernel_lacks(tmp_path: Path) -> None:
    h = Harness(tmp_path, kernel=FakeKernel(capabilities(kernel=False)))
    h.write(spec(srv6={**SRV6, "datapath": "kernel"}))
    st = h.once()
    assert st.last_error is not None
    assert "spec.srv6.datapath: kernel SRv6 datapath chosen, but this kernel cannot" \
        in st.last_error
    assert h.kernel.touched() == 0 and h.bgp.events() == (0, 0, 0, 0)
    assert h.bpf.loaded == 0


def test_the_kernel_datapath_programs_seg6_routes_and_sysctls(tmp_path: Path) -> None:
    h = Harness(tmp_path, kernel=FakeKernel(capabilities(bpf=False),
                                            links_up=[DEV_A, DEV_B]))
    h.write(spec(srv6={**SRV6, "datapath": "auto"}))
    st = h.once()
    assert st.datapath == "kernel", st.last_error
    assert h.kernel.sysctls["net.ipv6.conf.all.seg6_enabled"] == "1"
    assert ("tunsrc", "fcbb:bb00:1:1::") in h.kernel.writes
    kinds = sorted(r.kind for r in h.kernel.routes.values())
    assert kinds.count("encap") == 1 and kinds.count("sid") == 3
    assert st.installed == {"routes": 0, "encap": 1, "sids": 3, "unreachable": 1}
    assert h.bpf.loaded == 0


def test_the_bpf_datapath_gets_entries_and_attachments_not_seg6_routes(tmp_path: Path
                                                                       ) -> None:
    h = Harness(tmp_path, kernel=FakeKernel(capabilities(kernel=False),
                                            links_up=[DEV_A, DEV_B]),
                links=[DEV_A, DEV_B, POD, "lo"])
    h.write(spec(srv6={**SRV6, "datapath": "auto"}))
    st = h.once()
    assert st.datapath == "bpf", st.last_error
    assert "net.ipv6.conf.all.seg6_enabled" not in h.kernel.sysctls
    assert not any(r.encap is not None for r in h.kernel.routes.values())
    assert sorted(k for k, _ in h.bpf.entries) == ["encap", "locator", "sid", "sid", "sid"]
    assert set(h.bpf.attachments) == {DEV_A, DEV_B, POD}
    assert st.bpf is not None and st.bpf["entries"] == {"encap": 1, "sids": 3, "locators": 1}
    assert st.installed["encap"] == 1 and st.installed["sids"] == 3
    h.links.remove(POD)  # the pod went: its attachment is left to the kernel
    h.once()
    assert set(h.bpf.attachments) >= {DEV_A, DEV_B}
    (tmp_path / "run" / "drain").write_text("")
    st = h.once()
    assert h.bpf.removed == 1 and h.bpf.entries == {} and st.bpf is None


def test_a_missing_uplink_is_named_on_the_bpf_datapath(tmp_path: Path) -> None:
    h = Harness(tmp_path, kernel=FakeKernel(capabilities(kernel=False),
                                            links_up=[DEV_A]), links=[DEV_A])
    h.write(spec(srv6={**SRV6, "datapath": "bpf"}))
    st = h.once()
    assert st.last_error is not None
    assert f"eBPF SRv6: uplink {ifname('tor-b')} not found" in st.last_error
