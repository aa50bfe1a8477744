"""Rendering a uSID fabric: SONiC's CONFIG_DB tables, FRR's companion script, and the
platforms that refuse, each with its field (pure)."""

from __future__ import annotations

import json

import pytest

from flatroute.errors import InvalidInput
from flatroute.fabric import load_fabric
from render import render
from tests.conftest import EXAMPLES


def _files(platform: str, example: str = "two-site-usid.yaml") -> dict[str, str]:
    return {f.name: f.text for f in render(load_fabric(EXAMPLES / example), platform=platform)}


def test_sonic_gets_its_un_in_config_db_and_no_script() -> None:
    files = _files("sonic")
    assert not [n for n in files if n.endswith(".sh")]
    db = json.loads(files["wan2.json"])
    assert db["SRV6_MY_LOCATORS"] == {"flatroute": {
        "prefix": "fcbb:bb00:2::", "block_len": "32", "node_len": "16", "func_len": "16",
        "arg_len": "0"}}
    assert db["SRV6_MY_SIDS"] == {"flatroute|fcbb:bb00:2::/48": {
        "action": "uN", "decap_dscp_mode": "pipe"}}
    # the locator is announced, as the nodes' are: the ToRs route it
    assert "default|ipv6_unicast|fcbb:bb00:2::/48" in db["BGP_GLOBALS_AF_NETWORK"]
    assert "SRV6_MY_LOCATORS" not in json.loads(files["tk-r1-a.json"])


def test_sonic_refuses_a_full_sid_end_with_the_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        render(load_fabric(EXAMPLES / "two-site.yaml"), platform="sonic")
    (err,) = exc.value.errors
    assert err.path == "spec.wan.routers[0].locator"
    assert "SRV6_MY_SIDS" in err.message and "never its ASIC" in err.message


@pytest.mark.parametrize("platform", ["eos", "nxos", "junos"])
def test_eos_nxos_junos_refuse_usid_with_the_field(platform: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        render(load_fabric(EXAMPLES / "two-site-usid.yaml"), platform=platform)
    assert [e.path for e in exc.value.errors] == ["spec.wan.routers[0].usid",
                                                  "spec.wan.routers[1].usid"]
    assert all("cannot express SRv6 uSID" in e.message for e in exc.value.errors)


def test_frr_says_what_its_config_expresses_and_what_the_script_does() -> None:
    files = _files("frr")
    conf, script = files["wan1.conf"], files["wan1.srv6.sh"]
    assert "  network fcbb:bb00:1::/48\n" in conf
    assert "segment-routing" not in conf  # FRR 8.4 has no uSID behaviour to configure
    assert "the uN itself is this script's" in script
    assert ("ip -6 route replace fcbb:bb00:1::/48 encap seg6local action End flavors next-csid "
            "lblen 32 nflen 16 dev flrsid") in script
    assert "flatroute speaker end-sid --behavior uN --sid fcbb:bb00:1:: " in script
