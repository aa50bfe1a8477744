"""Uplinks are found from the peering addresses, not from interface names (no root)."""

from __future__ import annotations

from ipaddress import ip_interface
from pathlib import Path

from flatroute import nodestate
from speaker import uplinks
from tests.unit.speaker.harness import DEV_A, A, B, Harness, default_via, spec

ST = nodestate.from_spec(spec())


def test_the_interface_holding_our_address_is_the_uplink() -> None:
    st, errors = uplinks.resolve(ST, {"eno1": [ip_interface("10.1.1.11/24")],
                                      "eno2": [ip_interface("10.1.2.11/24")], "lo": []})
    assert errors == []
    assert [st.uplink_device(t) for t in ("tor-a", "tor-b")] == ["eno1", "eno2"]


def test_else_the_interface_on_the_tors_subnet_else_the_one_named_after_it() -> None:
    st, errors = uplinks.resolve(ST, {"bond0.12": [ip_interface("10.1.2.99/24")],
                                      "tor-a": []})
    assert errors == []
    assert st.uplink_device("tor-b") == "bond0.12" and st.uplink_device("tor-a") == "tor-a"


def test_an_uplink_not_found_says_what_was_looked_for_and_where() -> None:
    st, errors = uplinks.resolve(ST, {"eno1": [ip_interface("10.1.1.11/24")], "lo": []})
    assert len(errors) == 1
    (err,) = errors
    assert "tor-b" in err and "10.1.2.11/24" in err and f"ToR address {B}" in err
    assert "'tor-b'" in err and "(interfaces: eno1, lo)" in err
    assert st.uplink_device("tor-b") == "tor-b"  # its routes then fail naming it


def test_a_renamed_uplink_carries_the_learned_routes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.kernel.up = {DEV_A, "enp3s0"}
    h.kernel.addrs = {"enp3s0": [ip_interface("10.1.2.11/24")]}
    h.write(spec())
    h.once()
    h.up(A, routes={"0.0.0.0/0": A})
    h.up(B, routes={"0.0.0.0/0": B})
    st = h.once(advance=3.0)
    assert h.default() == default_via((A, DEV_A), (B, "enp3s0"))
    assert st.last_error is None
