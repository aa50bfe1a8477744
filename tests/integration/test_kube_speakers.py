"""Kubernetes mode with the real speakers: two sites of FRR ToRs in namespaces, the
controller and every node's speaker in --kubernetes mode against the fake API server (the
one stand-in), and each NodeState's status checked against the node's kernel and its ToRs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flatroute.fabric import parse_fabric
from flatroute.plan import plan
from kube.objects import NODESTATES
from lab import frr, host
from lab import srv6 as lab_srv6
from lab import up as labup
from lab.forward import Forwarder
from lab.state import LabState
from lab.topology import Topology, build
from speaker.bpf.datapath import BpfDatapath
from tests.conftest import EXAMPLES
from tests.integration.test_lab import DATAPATH
from tests.kube_util import api_for, eventually, example_objects, fake_with_crds
from tests.netns_util import need_root, need_tool, unique

pytestmark = [pytest.mark.root, pytest.mark.slow]


def flatroute_cmd() -> list[str]:
    return [sys.executable, "-m", "cli.main"]


class KubeLab:
    def __init__(self) -> None:
        # FRR drops to user frr: its directories must be reachable by it (pytest's tmp is not)
        prefix = unique("lk")
        self.dir = Path("/run/flatroute/lab") / prefix
        self.state = LabState(prefix, str(self.dir))
        self.forwarders: list[Forwarder] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.fake = fake_with_crds()
        try:
            self._setup()
        except BaseException:
            self.close()  # whatever was made before the failure goes, then the error goes on
            raise

    def _setup(self) -> None:
        self.url = self.fake.start()
        self.port = int(self.url.rsplit(":", 1)[1])
        config, racks, nodes = example_objects("two-site")
        config["spec"]["srv6"]["datapath"] = DATAPATH  # eBPF: on every kernel CI runs on
        for obj in (config, *racks, *nodes):
            self.fake.create_object(obj)
        self.api = api_for(self.fake)
        doc = yaml.safe_load((EXAMPLES / "two-site.yaml").read_text())
        doc["spec"]["srv6"]["datapath"] = DATAPATH
        fabric = parse_fabric(yaml.safe_dump(doc), "two-site.yaml")
        self.plan = plan(fabric)
        tmp = self.dir
        tmp.mkdir(parents=True)
        self.topo: Topology = build(fabric, self.plan, self.state.prefix, 0)
        labup._network(self.state, self.topo)
        datapath = lab_srv6.router_datapath(self.state, fabric, lambda _m: None)
        labup._routers(self.state, self.topo, fabric, self.plan, datapath)
        logs = tmp / "logs"
        logs.mkdir()
        self.procs.append(subprocess.Popen(
            [*flatroute_cmd(), "controller", "run", "--kubernetes", "--server", self.url,
             "--state-dir", str(tmp / "ctl"), "--retry-period", "0.5"],
            stdout=(logs / "controller.log").open("wb"), stderr=subprocess.STDOUT))
        for node in self.topo.nodes:
            self.forwarders.append(Forwarder(node.ns, self.port))
            run = tmp / "nodes" / node.name
            host.spawn(node.ns, [*flatroute_cmd(), "speaker", "run", "--kubernetes",
                                 "--server", self.url, "--node", node.name,
                                 "--state-dir", str(run / "state"), "--run-dir", str(run),
                                 "--node-file", str(run / "node.json"), "--interval", "1",
                                 "--bpf-dir", str(Path(self.state.bpffs) / node.name)],
                       logs / f"{node.name}.log")

    def node_state(self, name: str) -> dict[str, Any]:
        obj = self.api.get(NODESTATES, name)
        return dict(obj) if obj is not None else {}

    def kernel(self, node: str) -> tuple[int, int]:
        """(encapsulations, SIDs) in force on the node: its eBPF maps, read through the pins."""
        dp = BpfDatapath(str(Path(self.state.bpffs) / node))
        return len(dp.list_encap()), len(dp.list_sids())

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for f in self.forwarders:
            f.close()
        existing = set(host.netns_list())
        namespaces = [ns for ns in self.state.namespaces if ns in existing]
        pids = [pid for ns in namespaces for pid in host.ns_pids(ns)]
        host.kill(pids + [p.pid for p in self.procs])
        host.netns_del(namespaces)
        with contextlib.suppress(Exception):
            self.fake.stop()
        if self.state.bpffs:
            host.umount(Path(self.state.bpffs))
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def kube_lab() -> Iterator[KubeLab]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "vtysh")
    lab = KubeLab()
    try:
        yield lab
    finally:
        lab.close()


def test_speaker_status_on_its_nodestate_matches_kernel_and_sessions(kube_lab: KubeLab) -> None:
    lab = kube_lab
    nodes = [n.name for n in lab.topo.nodes]

    def all_applied() -> bool:
        for name in nodes:
            try:
                st = lab.node_state(name).get("status") or {}
            except Exception:
                return False
            if st.get("sessionsUp") != "4/4" or "observedGeneration" not in st:
                return False
        return True

    eventually(all_applied, timeout=90, interval=0.5, what="every NodeState applied, 4/4 up")
    by_name = {n.name: n for n in lab.plan.nodes}
    for name in nodes:
        obj = lab.node_state(name)
        status = obj["status"]
        # BGP: what the status says is what the ToRs' FRR says about this node's sessions
        up_on_tors = 0
        for uplink in by_name[name].uplinks:
            peers = frr.bgp_summary(Path(lab.state.directory) / "routers" / uplink.tor)
            own = {str(uplink.ipv4.ip) if uplink.ipv4 else "",
                   str(uplink.ipv6.ip) if uplink.ipv6 else ""}
            up_on_tors += sum(1 for p, i in peers.items()
                              if p in own and i["state"] == "Established")
        assert status["sessionsEstablished"] == up_on_tors == 4
        # announcements: exactly the node's blocks and locator
        spec = obj["spec"]
        want = sorted([*spec["podBlocks"]["ipv4"], *spec["podBlocks"]["ipv6"],
                       spec["srv6"]["locator"]])
        assert status["announced"] == want
        # kernel: the encap routes and SIDs the status reports are the ones installed
        encap, sids = lab.kernel(name)
        assert status["installed"]["encap"] == encap == len(spec["srv6"]["routes"])
        assert len(status["installed"]["sids"]) == sids == len(spec["srv6"]["localSids"])
        assert status["observedGeneration"] == obj["metadata"]["generation"]
    # A ToR dies: the status of its nodes follows the sessions.
    tor_dir = Path(lab.state.directory) / "routers" / "tk-r1-a"
    bgpd = int((tor_dir / "bgpd.pid").read_text())
    os.kill(bgpd, signal.SIGKILL)

    def degraded() -> bool:
        st = lab.node_state("tk-n1").get("status") or {}
        return bool(st.get("sessionsUp") == "2/4")

    eventually(degraded, timeout=30, interval=0.5, what="tk-n1's status showing 2/4")
    st = lab.node_state("tk-n1")["status"]
    down = [s for s in st["sessions"] if s["peer"] == "tk-r1-a"]
    assert down
    assert all(s["state"] != "Established" for s in down)
    assert (lab.node_state("os-n1").get("status") or {}).get("sessionsUp") == "4/4"
