"""Service routes against a real FRR ToR running its rendered config (root).

The services example: the ToR `sv-tor` runs exactly what `flatroute render --platform frr`
writes; the static controller publishes NodeStates; real speakers (real ExaBGP) run in node
namespaces on the ToR's server bridge.
- a node announcing a /32 outside the service pools (and a non-host prefix inside one) is
  refused by FRR, while a host route inside a pool is accepted;
- a Local service with endpoints on two nodes gets ECMP at the ToR, in its kernel FIB, over
  IPv4 and IPv6 (per-node ASNs: multipath-relax); its endpoint on one node gone, that node's
  path leaves the FIB and the other stays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flatroute.fabric import load_fabric
from flatroute.fabric.naming import ifname
from flatroute.plan import plan
from render import render
from render.frrcheck import FRR_DIR
from tests.conftest import EXAMPLES
from tests.netns_util import Netns, need_root, need_tool, sh

pytestmark = pytest.mark.root

FABRIC = EXAMPLES / "services.yaml"
WEB_V4, WEB_V6 = "198.51.100.2/32", "2001:db8:51::2/128"


def _wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except (subprocess.SubprocessError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Fabric:
    """The ToR in one namespace, each node in its own, bridged on the ToR's `servers`."""

    def __init__(self, netns: Netns, workdir: Path) -> None:
        self.netns = netns
        self.dir = workdir
        self.fabric = load_fabric(FABRIC)
        self.plan = plan(self.fabric)
        self.tor = netns.add("tor")
        self.nodes: dict[str, str] = {}
        self.frr = workdir / "frr"
        self.state = workdir / "state"
        self.fabric_file = workdir / "fabric.yaml"
        shutil.copy(FABRIC, self.fabric_file)

    def vtysh(self, cmd: str) -> str:
        return sh("vtysh", "--vty_socket", str(self.frr), "-c", cmd, ns=self.tor).stdout

    def build(self, nodes: list[str]) -> None:
        sh("ip", "link", "add", "servers", "type", "bridge", ns=self.tor)
        sh("ip", "link", "set", "servers", "up", ns=self.tor)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
           "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", ns=self.tor)
        for i, name in enumerate(nodes):
            ns = self.netns.add("node")
            self.nodes[name] = ns
            sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0", ns=ns)
            self.netns.veth(ns, ifname("sv-tor"), self.tor, f"p{i}")
            sh("ip", "link", "set", f"p{i}", "master", "servers", ns=self.tor)
            up = self.plan.node(name).uplinks[0]
            sh("ip", "addr", "add", str(up.ipv4), "dev", ifname("sv-tor"), ns=ns)
            sh("ip", "addr", "add", str(up.ipv6), "dev", ifname("sv-tor"), "nodad", ns=ns)
        self.frr.mkdir()
        shutil.chown(self.frr, "frr", "frr")
        conf = next(f.text for f in render(self.fabric, platform="frr") if f.router == "sv-tor")
        (self.frr / "frr.conf").write_text(conf)
        for daemon in ("zebra", "bgpd"):
            sh(str(FRR_DIR / daemon), "-d", "-f", str(self.frr / "frr.conf"), "--vty_socket",
               str(self.frr), "-z", str(self.frr / "zserv.api"), "-P", "0", "-i",
               str(self.frr / f"{daemon}.pid"), ns=self.tor)
            if daemon == "zebra":
                _wait((self.frr / "zserv.api").exists, 10, "zebra socket")

    def controller_once(self) -> None:
        sh(sys.executable, "-m", "cli.main", "controller", "run", "--fabric",
           str(self.fabric_file), "--state-dir", str(self.state), "--once", timeout=60)

    def speaker(self, name: str) -> None:
        run = self.dir / f"run-{name}"
        log = (self.dir / f"speaker-{name}.log").open("w")
        subprocess.Popen(["ip", "netns", "exec", self.nodes[name], sys.executable, "-m",
                          "cli.main", "speaker", "run", "--node", name, "--state-dir",
                          str(self.state), "--run-dir", str(run), "--interval", "1",
                          "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT,
                         env=dict(os.environ))

    def fib(self, prefix: str) -> set[str]:
        """Next hops of `prefix` in the ToR's kernel FIB (what zebra installed)."""
        fam = "-6" if ":" in prefix else "-4"
        out = sh("ip", "-j", fam, "route", "show", prefix, ns=self.tor).stdout
        routes = json.loads(out or "[]")
        hops: set[str] = set()
        for r in routes:
            if "nexthops" in r:
                hops |= {h["gateway"] for h in r["nexthops"]}
            elif "gateway" in r:
                hops.add(r["gateway"])
        return hops

    def rib(self, family: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.vtysh(f"show bgp {family} unicast json"))
        return doc.get("routes", {})


@pytest.fixture
def lab(netns: Netns) -> Iterator[Fabric]:
    need_root()
    need_tool(str(FRR_DIR / "bgpd"), str(FRR_DIR / "zebra"), "exabgp", "vtysh")
    work = Path(tempfile.mkdtemp(prefix="ft-svc-"))
    os.chmod(work, 0o755)
    try:
        yield Fabric(netns, work)
    finally:
        netns.close()  # the speakers, their ExaBGPs and FRR die with their namespaces
        shutil.rmtree(work, ignore_errors=True)


def _exabgp(f: Fabric, node: str, routes: list[str]) -> None:
    """A bare ExaBGP posing as `node`: it announces whatever it is given."""
    np = f.plan.node(node)
    up = np.uplinks[0]
    peer = next(p for p in np.peers if p.families[0].value == "ipv4")
    root = f.dir / f"exabgp-{node}"
    root.mkdir()
    lines = [f"neighbor {peer.address} {{", f"    router-id {up.ipv4.ip if up.ipv4 else ''};",
             f"    local-address {up.ipv4.ip if up.ipv4 else ''};", f"    local-as {np.asn};",
             f"    peer-as {peer.asn};", "    hold-time 9;", "    family { ipv4 unicast; }",
             "    announce {"]
    lines += [f"        ipv4 {{ unicast {r} next-hop self; }}" for r in routes]
    lines += ["    }", "}"]
    (root / "exabgp.conf").write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.update({"exabgp_daemon_user": "root", "exabgp_daemon_drop": "false",
                "exabgp_daemon_daemonize": "false", "exabgp_daemon_pid": str(root / "pid"),
                "exabgp_api_cli": "false", "exabgp_api_pipename": f"fts-{node}",
                "exabgp_log_destination": str(root / "log"), "exabgp_tcp_bind": ""})
    subprocess.Popen(["ip", "netns", "exec", f.nodes[node], "exabgp", "server",
                      str(root / "exabgp.conf")], env=env, cwd=root,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_hijack_outside_the_pools_is_refused(lab: Fabric) -> None:
    lab.build(["sv-n3"])
    block = str(lab.plan.node("sv-n3").ipv4_blocks[0])
    _exabgp(lab, "sv-n3", [block, "198.51.100.9/32", "192.0.2.1/32", "198.51.100.0/28",
                           "10.96.0.0/16", "10.96.1.0/24"])
    _wait(lambda: {block, "198.51.100.9/32", "10.96.0.0/16"} <= set(lab.rib("ipv4")), 40,
          "the allowed routes at the ToR")
    time.sleep(1)  # every UPDATE has long arrived; nothing more may show up
    assert set(lab.rib("ipv4")) == {block, "198.51.100.9/32", "10.96.0.0/16"}
    peer = str(lab.plan.node("sv-n3").uplinks[0].ipv4.ip)  # type: ignore[union-attr]
    nbr = json.loads(lab.vtysh(f"show bgp neighbors {peer} json"))[peer]
    af = nbr["addressFamilyInfo"]["ipv4Unicast"]
    assert af["incomingUpdatePrefixFilterList"] == "FR-NODE-SV-N3-V4"
    assert af["acceptedPrefixCounter"] == 3
    assert lab.fib("192.0.2.1/32") == set()


def test_local_service_gets_ecmp_and_loses_a_path_with_its_endpoint(lab: Fabric) -> None:
    lab.build(["sv-n1", "sv-n2", "sv-n3"])
    lab.controller_once()
    for node in ("sv-n1", "sv-n2", "sv-n3"):
        lab.speaker(node)
    hops4 = {str(lab.plan.node(n).uplinks[0].ipv4.ip) for n in ("sv-n1", "sv-n2")}  # type: ignore[union-attr]
    hops6 = {str(lab.plan.node(n).uplinks[0].ipv6.ip) for n in ("sv-n1", "sv-n2")}  # type: ignore[union-attr]
    _wait(lambda: lab.fib(WEB_V4) == hops4 and lab.fib(WEB_V6) == hops6, 60,
          "ECMP for the Local service over sv-n1 and sv-n2")
    # the Cluster service: all three nodes; its community reached the ToR
    _wait(lambda: len(lab.fib("198.51.100.1/32")) == 3, 20, "Cluster service on every node")
    route = json.loads(lab.vtysh(f"show bgp ipv4 unicast {WEB_V4} json"))
    comms = {p.get("community", {}).get("string") for p in route["paths"]}
    assert comms == {"65200:1 65200:100 65200:101"}
    # the endpoint on sv-n2 goes: sv-n2 withdraws, sv-n1 keeps the service
    doc = yaml.safe_load(lab.fabric_file.read_text())
    doc["spec"]["services"]["static"][0]["endpoints"] = ["sv-n1-p0"]
    lab.fabric_file.write_text(yaml.safe_dump(doc))
    lab.controller_once()
    only = {str(lab.plan.node("sv-n1").uplinks[0].ipv4.ip)}  # type: ignore[union-attr]
    _wait(lambda: lab.fib(WEB_V4) == only, 30, "sv-n2's path to leave the FIB")
    assert len(lab.fib("198.51.100.1/32")) == 3  # nothing else moved
    status = json.loads((lab.state / "status" / "sv-n1.json").read_text())
    web = next(s for s in status["services"] if s["prefix"] == WEB_V4)
    assert web["reason"].startswith("Local: 1 ready endpoint") and web["announcedTo"]
