"""The services example in the lab (root): nftables standing in for kube-proxy, the client
behind the spine reaching every service over IPv4 and IPv6, ECMP at the ToR for the Local
service, an endpoint deleted withdrawing its node's path while traffic keeps flowing, and
`lab status` showing who announces what."""

from __future__ import annotations

import pytest

from tests.integration.test_lab import Lab, assert_gone, running

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_services_lab_up_test_status_down() -> None:
    lab = Lab("services.yaml")
    with running(lab, "nft", "flatroute-cni"):
        assert "kube-proxy's part played by nftables" in lab.up_output
        t = lab.run("test", timeout=300)
        out = t.stdout
        assert t.returncode == 0, out + t.stderr
        for row in ("default/web 198.51.100.2 port 80: answered by sv-n",
                    "default/web 2001:db8:51::2 port 80: answered by sv-n",
                    "default/api 2001:db8:51::1 port 8080: answered by sv-n3-p0",
                    "default/legacy 198.51.100.34 port 443: answered by sv-n1-p1",
                    "ECMP at sv-tor: 2 paths to 198.51.100.2/32",
                    "sv-n2-p0 deleted: 1 path(s); client answered by ['sv-n1-p0']"):
            assert row in out, out
        st = lab.run("status").stdout
        rows = [ln.split() for ln in st.splitlines() if ln.startswith("  198.51.100.2/32")]
        assert sorted(r[2] for r in rows) == ["sv-n1", "sv-n2"], st
        assert all(r[3] == "announced" and r[4] == "Local:" for r in rows)
    assert_gone(lab)
