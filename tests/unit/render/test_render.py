"""What the router side says: sessions, filters, platform choice, errors and secrets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flatroute.errors import InvalidInput
from flatroute.fabric import Fabric, load_fabric, parse_fabric
from flatroute.fabric.wiring import Role
from flatroute.plan import plan
from render import PLATFORMS, RenderedFile, render
from render.view import MD5_PLACEHOLDER, PEER_GROUP_THRESHOLD, build_views
from tests.conftest import EXAMPLES
from tests.unit.render.fabrics import big_rack, big_rack_text

SECRET = "Sup3r-s3cret-MD5-x9"


def _example(name: str) -> Fabric:
    return load_fabric(EXAMPLES / f"{name}.yaml")


def _text(files: list[RenderedFile], router: str, suffix: str = "") -> str:
    return next(f.text for f in files if f.router == router and f.name.endswith(suffix))


# -- platform choice --------------------------------------------------------------------------

def test_default_platform_is_each_routers_own() -> None:
    files = render(_example("leaf-spine"))
    by_router = {f.router: f.platform for f in files}
    assert by_router == {"r1-leaf1": "sonic", "r1-leaf2": "sonic", "r2-leaf1": "frr",
                         "r2-leaf2": "frr", "spine1": "eos", "spine2": "eos"}


def test_platform_flag_forces_every_router() -> None:
    assert {f.platform for f in render(_example("leaf-spine"), platform="junos")} == {"junos"}


def test_unknown_platform_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown platform"):
        render(_example("single-rack"), platform="ios")


# -- what the ToR says --------------------------------------------------------------------------

def test_tor_accepts_from_each_node_exactly_its_blocks_and_locator() -> None:
    fabric = _example("two-site")
    p = plan(fabric)
    conf = _text(render(fabric, p, platform="frr"), "tk-r1-a")
    for node in (n for n in p.nodes if n.rack == "tk-r1"):
        v4 = re.findall(rf"ip prefix-list FR-NODE-{node.name.upper()}-V4 seq \d+ permit (\S+)$",
                        conf, re.M)
        v6 = re.findall(rf"ipv6 prefix-list FR-NODE-{node.name.upper()}-V6 seq \d+ permit "
                        r"(\S+)$", conf, re.M)
        assert v4 == [str(b) for b in node.ipv4_blocks]  # exact lengths: no ge/le
        assert v6 == [*map(str, node.ipv6_blocks), str(node.locator)]
        for peer in node.peers:
            if peer.tor == "tk-r1-a":
                fam = "V4" if peer.local_address.version == 4 else "V6"  # type: ignore[union-attr]
                assert (f"neighbor {peer.local_address} prefix-list "
                        f"FR-NODE-{node.name.upper()}-{fam} in") in conf
                assert f"neighbor {peer.local_address} remote-as {node.asn}" in conf
    assert "neighbor 10.1.1.11 maximum-prefix 100" in conf
    assert "neighbor 10.1.1.11 default-originate" in conf
    assert "neighbor 10.1.1.11 prefix-list FR-DEFAULT-V4 out" in conf
    assert "ip prefix-list FR-DEFAULT-V4 seq 5 permit 0.0.0.0/0\n" in conf
    assert "set community 64600:100 additive" in conf


def test_cluster_asn_nodes_are_still_ebgp_peers_of_the_tor() -> None:
    conf = _text(render(_example("single-rack"), platform="frr"), "r1-tor")
    assert "router bgp 65001" in conf
    assert conf.count("remote-as 64512") == 6  # 3 nodes x (IPv4 + IPv6 session)


def test_ipv4_over_ipv6_uses_one_session_with_extended_nexthop() -> None:
    files = render(_example("leaf-spine"), platform="frr")
    conf = _text(files, "r2-leaf1")
    assert "neighbor 10.20.1." not in conf
    assert "neighbor fd00:20:1::2 capability extended-nexthop" in conf
    v4 = conf.split("address-family ipv4 unicast")[1].split("exit-address-family")[0]
    assert "neighbor fd00:20:1::2 prefix-list FR-NODE-R2-N1-V4 in" in v4
    eos = _text(render(_example("leaf-spine"), platform="eos"), "r2-leaf1")
    assert "neighbor fd00:20:1::2 next-hop address-family ipv6 originate" in eos
    junos = _text(render(_example("leaf-spine"), platform="junos"), "r2-leaf1")
    assert "extended-nexthop;" in junos


def test_graceful_restart_timers_bfd_ecmp_on_every_platform() -> None:
    fabric = _example("leaf-spine")
    expect = {
        "frr": ["bgp graceful-restart restart-time 120", "timers bgp 3 9", "maximum-paths 64",
                "bgp bestpath as-path multipath-relax", "bfd profile flatroute",
                "detect-multiplier 3", "bgp router-id 10.254.2.1"],
        "eos": ["graceful-restart restart-time 120", "timers bgp 3 9", "maximum-paths 64",
                "bgp bestpath as-path multipath-relax", "bfd interval 300 min-rx 300",
                "router-id 10.254.2.1"],
        "junos": ["restart-time 120", "hold-time 9", "multiple-as", "bfd-liveness-detection",
                  "router-id 10.254.2.1", "load-balance per-packet"],
        "sonic": ['"gr_restart_time": "120"', '"holdtime": "9"', '"keepalive": "3"',
                  '"load_balance_mp_relax": "true"', '"bfd": "true"', '"max_ebgp_paths": "64"'],
    }
    for platform, needles in expect.items():
        files = render(fabric, platform=platform)
        text = _text(files, "r2-leaf1", ".json" if platform == "sonic" else "")
        for needle in needles:
            assert needle in text, (platform, needle)


def test_big_rack_uses_peer_groups_with_per_node_asn_and_filters() -> None:
    fabric = big_rack()
    files = render(fabric, platform="frr")
    conf = _text(files, "r1-tor")
    assert "neighbor FR-NODES-V4 peer-group" in conf
    assert "neighbor 10.30.1.2 peer-group FR-NODES-V4" in conf
    assert "neighbor 10.30.1.2 remote-as " in conf  # the node's own ASN, not "external"
    assert "neighbor 10.30.1.2 prefix-list FR-NODE-R1-N01-V4 in" in conf
    assert "neighbor FR-NODES-V4 maximum-prefix 20" in conf
    small = _text(render(big_rack(rack1=PEER_GROUP_THRESHOLD), platform="frr"), "r1-tor")
    assert "peer-group" not in small
    eos = _text(render(fabric, platform="eos"), "r1-tor")
    assert "neighbor FR-NODES-V4 peer group" in eos
    nxos = _text(render(fabric, platform="nxos"), "r1-tor")
    assert "template peer FR-NODES-V4" in nxos and "inherit peer FR-NODES-V4" in nxos


def test_unnumbered_node_sessions_use_the_ports_mapping() -> None:
    conf = _text(render(big_rack(), platform="frr"), "r2-tor")
    assert "neighbor swp1 interface remote-as" in conf
    assert "interface swp1\n" in conf
    assert "interface servers" not in conf


# -- the fabric and the WAN ---------------------------------------------------------------------

def test_wan_carries_only_locators_and_announces_its_own() -> None:
    fabric = _example("two-site")
    files = render(fabric, platform="frr")
    wan = _text(files, "wan1", ".conf")
    assert "address-family ipv4" not in wan
    assert "ip prefix-list" not in wan
    assert "network fcbb:bb00:ff::/48" in wan
    assert "neighbor tk-r1-a prefix-list FR-FROM-TOKYO-V6 in" in wan
    assert re.findall(r"ipv6 prefix-list FR-FROM-TOKYO-V6 seq \d+ permit (.*)$", wan, re.M) == [
        "fcbb:bb00:1::/48", "fcbb:bb00:1::/48 ge 64 le 64"]
    sh = _text(files, "wan1", ".srv6.sh")
    assert "ip -6 route replace fcbb:bb00:ff::1/128 encap seg6local action End dev flrsid" in sh
    tor = _text(files, "tk-r1-a")
    wan_af = tor.split("address-family ipv6 unicast")[1]
    assert "aggregate-address fcbb:bb00:1::/48" in wan_af
    assert "neighbor wan1 prefix-list FR-TO-WAN-V6 out" in wan_af
    v4 = tor.split("address-family ipv4 unicast")[1].split("exit-address-family")[0]
    assert "wan1" not in v4  # never an IPv4 pod route toward the WAN
    assert re.findall(r"ipv6 prefix-list FR-TO-WAN-V6 seq \d+ permit (.*)$", tor, re.M) == [
        "fcbb:bb00:1::/48", "fcbb:bb00:1::/48 ge 64 le 64"]


def test_spines_and_tors_meet_unnumbered_with_site_filters() -> None:
    fabric = _example("leaf-spine")
    views = {v.router.name: v for v in build_views(fabric, plan(fabric), None)}
    assert views["spine1"].role is Role.SPINE
    assert {lk.neighbor for lk in views["spine1"].links} == {
        "r1-leaf1", "r1-leaf2", "r2-leaf1", "r2-leaf2"}
    assert {lk.neighbor for lk in views["r1-leaf1"].links} == {"spine1", "spine2"}
    conf = _text(render(fabric, platform="frr"), "spine1")
    assert "neighbor r1-leaf1 interface remote-as 65111" in conf
    assert "ip prefix-list FR-SITE-V4 seq 5 permit 10.100.0.0/16 ge 26 le 26" in conf


# -- errors ---------------------------------------------------------------------------------------

def test_platform_that_cannot_express_a_feature_names_the_tor_and_feature() -> None:
    with pytest.raises(InvalidInput) as exc:
        render(_example("leaf-spine"), platform="nxos")
    errs = exc.value.errors
    assert {e.path for e in errs} == {"spec.bgp.ipv4OverIpv6"}
    assert sorted(re.search(r"ToR (\S+):", e.message).group(1) for e in errs) == [  # type: ignore[union-attr]
        "r1-leaf1", "r1-leaf2", "r2-leaf1", "r2-leaf2"]
    assert all("RFC 8950" in e.message and "nxos" in e.message for e in errs)


def test_junos_refuses_unnumbered_node_sessions() -> None:
    with pytest.raises(InvalidInput) as exc:
        render(big_rack(), platform="junos")
    [err] = exc.value.errors
    assert err.path == "spec.sites[0].racks[1].tors[0].peering.mode"
    assert "r2-tor" in err.message and "unnumbered node sessions" in err.message


def test_junos_refuses_a_keepalive_it_cannot_set() -> None:
    text = (EXAMPLES / "single-rack.yaml").read_text().replace("keepalive: 3", "keepalive: 2")
    fabric = parse_fabric(text, "x.yaml")
    with pytest.raises(InvalidInput, match="keepalive"):
        render(fabric, platform="junos")
    assert render(fabric, platform="frr")  # the others can


def test_with_secrets_needs_a_secret_file() -> None:
    with pytest.raises(InvalidInput, match="cannot read the MD5 secret file"):
        render(big_rack("/nonexistent/secret"), with_secrets=True)
    text = big_rack_text().replace("{file: /nonexistent/flatroute-md5}",
                                   "{kubernetesSecret: {name: bgp, key: md5}}")
    with pytest.raises(InvalidInput, match=r"reads only a secretRef\.file"):
        render(parse_fabric(text, "k.yaml"), with_secrets=True)


def test_a_secret_with_spaces_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = tmp_path / "md5"
    secret.write_text("two words\n")
    with pytest.raises(InvalidInput) as exc:
        render(big_rack(str(secret)), with_secrets=True)
    assert "two words" not in str(exc.value)


def test_unknown_router_filter() -> None:
    with pytest.raises(InvalidInput, match="names no router"):
        render(_example("single-rack"), routers=("nope",))


# -- secrets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_secret_never_in_clear_text_without_with_secrets(platform: str, tmp_path: Path) -> None:
    secret = tmp_path / "md5"
    secret.write_text(SECRET + "\n")
    fabric = big_rack(str(secret))
    # junos refuses r2-tor's unnumbered sessions: render rack r1 only there
    kw = {"routers": ("r1-tor",)} if platform == "junos" else {}
    plain = render(fabric, platform=platform, **kw)  # type: ignore[arg-type]
    assert plain
    for f in plain:
        assert SECRET not in f.text
        if f.name.endswith((".conf", ".cfg", ".json")) and "r1-tor" in f.name:
            assert MD5_PLACEHOLDER in f.text
            assert "MD5 secret" in f.text  # the header says the network team must supply it
    secret_files = render(fabric, platform=platform, with_secrets=True, **kw)  # type: ignore[arg-type]
    tor = [f for f in secret_files if f.router == "r1-tor" and not f.name.endswith(".sh")]
    assert all(SECRET in f.text and MD5_PLACEHOLDER not in f.text for f in tor)
    assert all("CONTAINS THE BGP MD5 SECRET" in f.text for f in tor)


def test_files_with_secrets_are_written_private(tmp_path: Path) -> None:
    from render.output import write_files

    secret = tmp_path / "md5"
    secret.write_text(SECRET)
    files = render(big_rack(str(secret)), platform="frr", with_secrets=True)
    out = tmp_path / "out"
    write_files(files, out, by_platform=False, secret=True)
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in out.iterdir())


def test_site_scope_needs_no_router_sids_but_the_wan_end_sid() -> None:
    text = (EXAMPLES / "two-site.yaml").read_text().replace("scope: node", "scope: site")
    text = text.replace("    - name: tk-n1\n      rack: tk-r1\n",
                        "    - name: tk-n1\n      rack: tk-r1\n      role: gateway\n")
    text = text.replace("    - name: os-n1\n      rack: os-r1\n",
                        "    - name: os-n1\n      rack: os-r1\n      role: gateway\n")
    fabric = parse_fabric(text, "site.yaml")
    p = plan(fabric)
    gw = p.node("tk-n1")
    assert len(gw.sids) > 1  # the gateway decapsulates (node side)
    files = render(fabric, p, platform="frr")
    assert [f.name for f in files if f.name.endswith(".sh")] == ["wan1.srv6.sh"]
    tor = _text(files, "tk-r1-a")
    assert f"ipv6 prefix-list FR-NODE-TK-N1-V6 seq 10 permit {gw.locator}\n" in tor
    assert "seg6" not in tor


def test_a_session_without_blocks_of_its_family_accepts_nothing() -> None:
    text = (EXAMPLES / "single-rack.yaml").read_text().replace(
        "        ipv4: [10.244.0.0/20]\n", "")
    fabric = parse_fabric(text, "v6pods.yaml")
    assert not plan(fabric).node("node1").ipv4_blocks
    files = render(fabric, platform="frr")
    conf = _text(files, "r1-tor")
    assert "ip prefix-list FR-NODE-NODE1-V4 seq 5 deny any" in conf
    assert "neighbor 10.0.1.2 prefix-list FR-NODE-NODE1-V4 in" in conf
    for platform in ("eos", "nxos", "sonic", "junos"):
        for f in render(fabric, platform=platform):
            assert "None" not in f.text, (platform, f.name)


def test_long_node_names_give_bounded_policy_names() -> None:
    from render.view import MAX_POLICY_NAME, node_list_name

    long = "ip-10-0-1-2.eu-west-1.compute.internal.example.cluster.local"
    a, b = node_list_name(long, 4), node_list_name(long + "x", 4)
    assert len(a) <= MAX_POLICY_NAME and len(b) <= MAX_POLICY_NAME and a != b
    assert node_list_name("node1", 6) == "FR-NODE-NODE1-V6"


def test_a_tor_with_a_locator_announces_it_and_the_fabric_accepts_it() -> None:
    text = (EXAMPLES / "two-site.yaml").read_text().replace(
        "              routerId: 10.255.1.1\n",
        "              routerId: 10.255.1.1\n              locator: \"fcbb:bb00:f1::/48\"\n")
    fabric = parse_fabric(text, "tor-locator.yaml")
    files = render(fabric, platform="frr")
    tor = _text(files, "tk-r1-a", ".conf")
    assert "network fcbb:bb00:f1::/48" in tor
    assert "ipv6 prefix-list FR-TO-WAN-V6 seq 15 permit fcbb:bb00:f1::/48\n" in tor
    assert "fcbb:bb00:f1::1/128 encap seg6local action End" in _text(files, "tk-r1-a", ".sh")
    wan = _text(files, "wan1", ".conf")
    assert "ipv6 prefix-list FR-FROM-TOKYO-V6 seq 15 permit fcbb:bb00:f1::/48\n" in wan
    osaka = _text(files, "os-r1-a", ".conf")
    assert "FR-FROM-WAN-V6 seq 15 permit fcbb:bb00:f1::/48\n" in osaka


def test_a_plan_with_problems_is_not_rendered() -> None:
    from flatroute.errors import AllocationError

    text = (EXAMPLES / "single-rack.yaml").read_text().replace(
        "ipv4: [10.244.0.0/20]", "ipv4: [10.244.0.0/26]")  # room for one node only
    with pytest.raises(AllocationError, match="cannot plan"):
        render(parse_fabric(text, "tiny.yaml"))
