"""Service routes through the same session: communities, status and metrics with the reason,
withdrawn first (and acknowledged) on drain and on stop, through the fakes (no root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.speaker.harness import A, B, Harness, spec

WEB = {"prefix": "198.51.100.2/32", "service": "default/web", "source": "LoadBalancer",
       "reason": "Local: 1 ready endpoint(s) on this node (pool public)",
       "communities": ["65200:100"]}
CIP = {"prefix": "10.96.0.0/16", "service": "ClusterIP range", "source": "ClusterIP",
       "reason": "ClusterIP range: every node announces the aggregate",
       "communities": ["65200:300"]}
V6 = {"prefix": "2001:db8:51::2/128", "service": "default/web", "source": "LoadBalancer",
      "reason": "Local", "communities": []}


def with_services(*routes: dict[str, Any]) -> dict[str, Any]:
    s = spec(services=list(routes))
    s["bgp"]["communities"] = ["65200:1"]
    return s


def test_service_routes_are_announced_with_their_communities(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(with_services(WEB, CIP, V6))
    st = h.once()
    assert "198.51.100.2/32" in st.announced and "10.96.0.0/16" in st.announced
    assert "2001:db8:51::2/128" not in st.announced  # IPv4-only sessions: no /128
    line = next(c for c in h.bgp.config.splitlines() if "198.51.100.2/32" in c) \
        if h.bgp.config else ""
    assert "community [65200:1 65200:100]" in line
    web = next(x for x in st.services if x["prefix"] == "198.51.100.2/32")
    assert web["reason"].startswith("Local: 1 ready") and web["announcedTo"] == [A, B]
    v6 = next(x for x in st.services if x["prefix"] == "2001:db8:51::2/128")
    assert v6["announcedTo"] == []
    text = h.agent.metrics.registry.get_sample_value(
        "flatroute_speaker_service_route",
        {"node": "n1", "prefix": "198.51.100.2/32", "service": "default/web",
         "source": "LoadBalancer", "reason": web["reason"]})
    assert text == 1.0


def test_endpoint_gone_withdraws_only_that_route(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(with_services(WEB, CIP))
    h.once()
    h.bgp.sent.clear()
    h.write(with_services(CIP))
    st = h.once()
    assert sorted(h.bgp.sent) == [f"neighbor {A} withdraw route 198.51.100.2/32 next-hop self "
                                  "community [65200:1 65200:100]",
                                  f"neighbor {B} withdraw route 198.51.100.2/32 next-hop self "
                                  "community [65200:1 65200:100]"]
    assert "198.51.100.2/32" not in st.announced and "10.244.0.0/26" in st.announced
    assert h.agent.metrics.registry.get_sample_value(
        "flatroute_speaker_service_route",
        {"node": "n1", "prefix": "198.51.100.2/32", "service": "default/web",
         "source": "LoadBalancer", "reason": WEB["reason"]}) is None


def test_drain_withdraws_service_routes_first(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(with_services(WEB, CIP))
    h.once()
    h.bgp.sent.clear()
    (tmp_path / "run" / "drain").write_text("")
    st = h.once()
    assert st.drained and st.announced == ()
    withdrawn = [c.split()[4] for c in h.bgp.sent]
    services_at = max(i for i, p in enumerate(withdrawn) if p in {"198.51.100.2/32",
                                                                   "10.96.0.0/16"})
    blocks_at = min(i for i, p in enumerate(withdrawn) if p == "10.244.0.0/26")
    assert services_at < blocks_at, withdrawn
    assert all(" withdraw " in c for c in h.bgp.sent)


def test_stop_withdraws_service_routes_and_keeps_the_blocks(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(with_services(WEB))
    h.once()
    h.bgp.sent.clear()
    h.agent.stop()
    assert sorted(c.split()[4] for c in h.bgp.sent) == ["198.51.100.2/32"] * 2
    assert all(" withdraw " in c for c in h.bgp.sent)
    assert h.bgp.kills == 1  # then the planned stop: SIGKILL, no NOTIFICATION
    assert "10.244.0.0/26" in h.status().announced


def test_no_services_no_change(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    st = h.once()
    h.agent.stop()
    assert st.services == () and h.bgp.kills == 1
    assert all("198.51" not in c for c in h.bgp.sent)
