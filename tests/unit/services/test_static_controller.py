"""The static-mode controller publishes service routes, keeps addresses across restarts,
frees them when a service goes, and reports exhaustion as a problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flatroute.nodestate import from_json, from_plan, to_json
from flatroute.plan import service_ledger
from tests.unit.controller.test_controller_reconciler import Env
from tests.unit.services.util import doc


def _announced(env: Env, node: str) -> dict[str, str]:
    st = from_json((env.dir / "nodes" / f"{node}.json").read_text())
    return {str(r.prefix): r.service for r in st.services}


def test_static_services_are_published_and_stable(tmp_path: Path) -> None:
    d = doc()
    env = Env(tmp_path, d)
    assert env.ctl.reconcile().exit_status == 0
    n1, n3 = _announced(env, "sv-n1"), _announced(env, "sv-n3")
    assert n1["198.51.100.2/32"] == "default/web"  # Local, endpoint sv-n1-p0
    assert "198.51.100.2/32" not in n3  # Local, no endpoint on sv-n3
    assert n3["198.51.100.1/32"] == "default/api"  # Cluster: every node
    # the document is the direct rendering, byte for byte
    ctl_plan = env.ctl.plan
    assert ctl_plan is not None
    st = from_json((env.dir / "nodes" / "sv-n1.json").read_text())
    assert (env.dir / "nodes" / "sv-n1.json").read_text() == to_json(
        from_plan(ctl_plan, ctl_plan.node("sv-n1"), st.services))
    held = service_ledger.load(env.dir / "services.json")
    assert {k: [str(a) for a in v.addresses] for k, v in held.items()}["default/web"] == [
        "198.51.100.2", "2001:db8:51::2"]
    # a restarted controller, with `api` gone: web keeps its addresses, api's are freed
    d["spec"]["services"]["static"] = [s for s in d["spec"]["services"]["static"]
                                       if s["name"] != "api"]
    d["spec"]["services"]["static"].append({"name": "new", "pool": "public",
                                            "endpoints": ["sv-n3-p0"]})
    env.edit(d)
    env.ctl = env.new()
    assert env.ctl.reconcile().exit_status == 0
    again = service_ledger.load(env.dir / "services.json")
    assert again["default/web"] == held["default/web"]
    assert again["default/new"].addresses == held["default/api"].addresses
    status = json.loads((env.dir / "services-status.json").read_text())
    assert {p["name"]: p["used"] for p in status["pools"]} == {"public": 4, "reserved": 1}
    assert status["announcers"]["default/web 198.51.100.2/32"] == ["sv-n1", "sv-n2"]
    assert env.log.named("service_addresses_released")[0]["service"] == "default/api"
    from controller.status import gather, render
    text = render(gather(env.dir))
    assert any(line.split()[:1] == ["default/web"] and line.endswith("sv-n1, sv-n2")
               for line in text.splitlines()), text
    assert any(line.startswith("public ") for line in text.splitlines())


def test_exhaustion_is_reported_and_the_rest_published(tmp_path: Path) -> None:
    d: dict[str, Any] = doc()
    d["spec"]["services"]["pools"][0]["ipv4"] = ["198.51.100.0/31"]
    d["spec"]["services"]["static"] += [
        {"name": f"x{i}", "pool": "public", "families": ["ipv4"], "endpoints": ["sv-n1-p0"]}
        for i in range(3)]
    env = Env(tmp_path, d)
    result = env.ctl.reconcile()
    assert result.exit_status == 1
    assert any("no free IPv4 address" in p.message for p in result.problems)
    status = json.loads((env.dir / "services-status.json").read_text())
    assert {p["reason"] for p in status["problems"]} == {"PoolExhausted"}
    assert env.log.named("service_allocation_failed")
    assert (env.dir / "nodes" / "sv-n1.json").exists()
