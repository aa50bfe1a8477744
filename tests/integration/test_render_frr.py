"""Rendered FRR configs, checked for real: the daemons parse them, and a ToR loaded with one
peers with a real ExaBGP speaker, accepts the node's own blocks and rejects what it doesn't own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flatroute.fabric import load_fabric, parse_fabric
from render import render
from render.frrcheck import FRR_DIR, check_file
from render.output import write_files
from tests.conftest import EXAMPLES
from tests.netns_util import Netns, capabilities, need_kernel_srv6, need_root, need_tool, sh
from tests.unit.render.fabrics import big_rack

pytestmark = pytest.mark.root

BGPD, ZEBRA = str(FRR_DIR / "bgpd"), str(FRR_DIR / "zebra")


def _frr_files(tmp: Path, fabric: Any, sonic: bool = True, **kw: Any) -> list[Path]:
    """The FRR configs: the frr platform's, and SONiC's split-mode frr.conf."""
    files = [*render(fabric, platform="frr", **kw),
             *(render(fabric, platform="sonic", **kw) if sonic else [])]
    write_files(files, tmp, by_platform=True)
    return [tmp / f.platform / f.name for f in files if f.name.endswith(".conf")]


@pytest.mark.parametrize("example", ["single-rack", "leaf-spine", "two-site", "two-site-usid",
                                     "services", "big-rack"])
def test_every_rendered_frr_config_passes_bgpd_zebra_and_bfdd(example: str,
                                                               tmp_path: Path) -> None:
    need_root()
    need_tool(BGPD, ZEBRA)
    if example == "big-rack":
        secret = tmp_path / "md5"
        secret.write_text("s3cr3t-Md5\n")
        fabric = big_rack(str(secret))
        paths = _frr_files(tmp_path, fabric, with_secrets=True)
    else:
        # SONiC refuses two-site's full-SID WAN router (its static SRv6 is uSID only)
        sonic = example != "two-site"
        paths = _frr_files(tmp_path, load_fabric(EXAMPLES / f"{example}.yaml"), sonic)
    assert {p.parent.name for p in paths} == ({"frr", "sonic"} if example != "two-site"
                                              else {"frr"})
    for path in paths:
        assert check_file(path) == [], f"{path.parent.name}/{path.name}"


# -- a ToR in a namespace, a node running ExaBGP ---------------------------------------------

class Frr:
    def __init__(self, ns: str, workdir: Path) -> None:
        self.ns = ns
        self.dir = workdir
        shutil.chown(workdir, "frr", "frr")
        os.chmod(workdir, 0o777)

    def start(self, conf: str) -> None:
        (self.dir / "frr.conf").write_text(conf)
        daemons = ("zebra", "bgpd", "bfdd") if "\nbfd\n" in conf else ("zebra", "bgpd")
        for daemon in daemons:
            sh(str(FRR_DIR / daemon), "-d", "-f", str(self.dir / "frr.conf"),
               "--vty_socket", str(self.dir), "-z", str(self.dir / "zserv.api"), "-P", "0",
               "-i", str(self.dir / f"{daemon}.pid"), ns=self.ns)
            if daemon == "zebra":
                _wait((self.dir / "zserv.api").exists, 10, "zebra socket")

    def vtysh(self, command: str) -> str:
        return sh("vtysh", "--vty_socket", str(self.dir), "-c", command, ns=self.ns).stdout

    def json(self, command: str) -> Any:
        return json.loads(self.vtysh(command))


def _wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except (subprocess.SubprocessError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def exabgp_env(tmp_path: Path) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(ns: str, conf: str) -> subprocess.Popen[str]:
        root = tmp_path / f"exabgp-{ns}"
        root.mkdir()
        (root / "exabgp.conf").write_text(conf)
        env = dict(os.environ)
        env.update({
            "exabgp_daemon_user": "root", "exabgp_daemon_drop": "false",
            "exabgp_daemon_daemonize": "false", "exabgp_daemon_pid": str(root / "pid"),
            "exabgp_api_cli": "false", "exabgp_api_pipename": f"ft-{ns}",
            "exabgp_log_destination": str(root / "log"), "exabgp_tcp_bind": "",
        })
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "exabgp", "server",
                                 str(root / "exabgp.conf")], env=env, cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def _exabgp_conf(peer: str, local: str, asn: int, tor_asn: int, family: str,
                 routes: list[str], *, md5: str | None = None, nexthop6: str | None = None) -> str:
    fam = "ipv4 unicast; ipv6 unicast;" if nexthop6 else f"{family} unicast;"
    lines = [f"neighbor {peer} {{", "    router-id 10.0.1.2;", f"    local-address {local};",
             f"    local-as {asn};", f"    peer-as {tor_asn};", "    hold-time 9;",
             f"    family {{ {fam} }}"]
    if md5:
        lines.append(f"    md5-password {md5};")
    if nexthop6:
        lines += ["    capability { nexthop enable; }", "    nexthop { ipv4 unicast ipv6; }"]
    lines.append("    announce {")
    for route in routes:
        fam_r = "ipv6" if ":" in route else "ipv4"
        nh = nexthop6 if (nexthop6 and fam_r == "ipv4") else "self"
        lines.append(f"        {fam_r} {{ unicast {route} next-hop {nh}; }}")
    lines += ["    }", "}"]
    return "\n".join(lines) + "\n"


def _received(frr: Frr, family: str) -> set[str]:
    doc = frr.json(f"show bgp {family} unicast json")
    return set(doc.get("routes", {}))


_cleanup: list[Path] = []
_mounts: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_frr_dirs() -> Iterator[None]:
    yield
    while _mounts:
        subprocess.run(["umount", "-l", str(_mounts.pop())], check=False)
    while _cleanup:
        shutil.rmtree(_cleanup.pop(), ignore_errors=True)


def _tor_and_node(netns: Netns, conf: str) -> tuple[Frr, str]:
    tor, node = netns.add("tor"), netns.add("node")
    netns.veth(tor, "servers", node, "eth0")
    for ns in (tor, node):
        sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=ns)
    # FRR drops to user frr: its directory must be reachable (pytest's tmp_path is not).
    frr_dir = Path(tempfile.mkdtemp(prefix="ft-frr-"))
    os.chmod(frr_dir, 0o755)
    _cleanup.append(frr_dir)
    frr = Frr(tor, frr_dir)
    frr.start(conf)
    return frr, node


def test_tor_peers_with_exabgp_and_filters_what_the_node_does_not_own(
        netns: Netns, exabgp_env: Callable[[str, str], Any]) -> None:
    """single-rack: IPv4 and IPv6 sessions, cluster ASN; node1 owns 10.244.0.0/26 and
    fd00:10:244::/122 and also announces node2's block and an outside prefix by hand."""
    need_tool(BGPD, ZEBRA, "exabgp", "vtysh")
    fabric = load_fabric(EXAMPLES / "single-rack.yaml")
    conf = next(f.text for f in render(fabric, platform="frr") if f.router == "r1-tor")
    frr, node = _tor_and_node(netns, conf)
    # The ToR's SVI addresses come from its rendered config (zebra applies them).
    _wait(lambda: "10.0.1.1/24" in sh("ip", "-4", "addr", "show", "servers", ns=frr.ns).stdout,
          10, "zebra to configure the servers SVI")
    sh("ip", "addr", "add", "10.0.1.2/24", "dev", "eth0", ns=node)
    sh("ip", "addr", "add", "fd00:0:1::2/64", "dev", "eth0", "nodad", ns=node)
    v4 = _exabgp_conf("10.0.1.1", "10.0.1.2", 64512, 65001, "ipv4",
                      ["10.244.0.0/26", "10.244.0.64/26", "192.0.2.0/24"])
    v6 = _exabgp_conf("fd00:0:1::1", "fd00:0:1::2", 64512, 65001, "ipv6",
                      ["fd00:10:244::/122", "fd00:10:244::40/122", "2001:db8::/48"])
    exabgp_env(node, v4 + v6)

    def established() -> bool:
        doc = frr.json("show bgp summary json")
        return (doc["ipv4Unicast"]["peers"]["10.0.1.2"]["state"] == "Established"
                and doc["ipv6Unicast"]["peers"]["fd00:0:1::2"]["state"] == "Established")

    _wait(established, 40, "both sessions Established")
    _wait(lambda: "10.244.0.0/26" in _received(frr, "ipv4")
          and "fd00:10:244::/122" in _received(frr, "ipv6"), 15, "the node's blocks")
    time.sleep(1)  # every UPDATE from ExaBGP has long arrived; nothing more may show up
    assert _received(frr, "ipv4") == {"10.244.0.0/26"}
    assert _received(frr, "ipv6") == {"fd00:10:244::/122"}
    # The ToR saw the rest and refused it: the prefix-list, not a missing announcement.
    nbr = frr.json("show bgp neighbors 10.0.1.2 json")["10.0.1.2"]
    af = nbr["addressFamilyInfo"]["ipv4Unicast"]
    assert af["acceptedPrefixCounter"] == 1
    assert af["incomingUpdatePrefixFilterList"] == "FR-NODE-NODE1-V4"
    # ...and the node gets only the default route from the ToR.
    adv = frr.json("show bgp ipv4 unicast neighbors 10.0.1.2 advertised-routes json")
    assert set(adv.get("advertisedRoutes", {})) <= {"0.0.0.0/0"}


def test_ipv4_over_ipv6_session_with_md5_accepts_only_the_nodes_blocks(
        netns: Netns, tmp_path: Path, exabgp_env: Callable[[str, str], Any]) -> None:
    """leaf-spine: one IPv6 session carrying both families (RFC 8950) with MD5 from the
    secret file (--with-secrets); the ToR passes the node's blocks, with the fabric's
    community, to a spine over an unnumbered link (IPv4 over IPv6 link-local), with BFD up."""
    need_tool(BGPD, ZEBRA, "exabgp", "vtysh")
    secret = tmp_path / "md5"
    secret.write_text("Fl4tr0ute-md5\n")
    text = (EXAMPLES / "leaf-spine.yaml").read_text().replace(
        "/etc/flatroute/secrets/bgp-md5", str(secret))
    fabric = parse_fabric(text, "leaf-spine.yaml")
    files = {f.router: f.text for f in render(fabric, platform="frr", with_secrets=True,
                                               routers=("r2-leaf1", "spine1"))}
    conf = files["r2-leaf1"]
    assert "Fl4tr0ute-md5" in conf
    frr, node = _tor_and_node(netns, conf)
    spine_ns = netns.add("spine")
    netns.veth(frr.ns, "spine1", spine_ns, "r2-leaf1")
    sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=spine_ns)
    spine_dir = Path(tempfile.mkdtemp(prefix="ft-frr-"))
    os.chmod(spine_dir, 0o755)
    _cleanup.append(spine_dir)
    spine = Frr(spine_ns, spine_dir)
    spine.start(files["spine1"])
    # r2-n1: uplink fd00:20:1::2, blocks 10.100.1.0/26 and fd00:100::100/122, AS 4210000004
    sh("ip", "addr", "add", "fd00:20:1::2/64", "dev", "eth0", "nodad", ns=node)
    exa = _exabgp_conf("fd00:20:1::1", "fd00:20:1::2", 4210000004, 65121, "ipv6",
                       ["10.100.1.0/26", "10.100.1.64/26", "fd00:100::100/122",
                        "fd00:100::140/122"], md5="Fl4tr0ute-md5", nexthop6="fd00:20:1::2")
    exabgp_env(node, exa)
    _wait(lambda: "10.100.1.0/26" in _received(frr, "ipv4")
          and "fd00:100::100/122" in _received(frr, "ipv6"), 40, "the node's blocks")
    time.sleep(1)
    assert _received(frr, "ipv4") == {"10.100.1.0/26"}
    assert _received(frr, "ipv6") == {"fd00:100::100/122"}
    routes = frr.json("show bgp ipv4 unicast 10.100.1.0/26 json")
    hops = [nh["ip"] for p in routes["paths"] for nh in p["nexthops"]]
    assert "fd00:20:1::2" in hops  # an IPv6 next hop for an IPv4 route: RFC 8950
    # on to the spine, over the unnumbered link, tagged with the fabric's community
    _wait(lambda: "10.100.1.0/26" in _received(spine, "ipv4")
          and "fd00:100::100/122" in _received(spine, "ipv6"), 30, "the blocks on the spine")
    assert _received(spine, "ipv4") == {"10.100.1.0/26"}
    at_spine = spine.json("show bgp ipv4 unicast 10.100.1.0/26 json")
    assert "65100:10" in json.dumps(at_spine)
    _wait(lambda: any(p.get("status") == "up" for p in spine.json("show bfd peers json")),
          20, "BFD between ToR and spine")


def test_wan_gets_only_locators_over_unnumbered_links_and_announces_its_end_sid(
        netns: Netns, exabgp_env: Callable[[str, str], Any]) -> None:
    """two-site: node tk-n1 -> ToR tk-r1-a -> (unnumbered, IPv6 link-local) -> WAN wan1.
    The WAN learns tokyo's locator block and node locator, never a pod route; the ToR learns
    the WAN's own locator; the WAN's companion script installs its End SID."""
    need_tool(BGPD, ZEBRA, "exabgp", "vtysh")
    fabric = load_fabric(EXAMPLES / "two-site.yaml")
    files = {f.name: f.text for f in render(fabric, platform="frr",
                                             routers=("tk-r1-a", "wan1"))}
    tor_ns, node, wan_ns = netns.add("tor"), netns.add("node"), netns.add("wan")
    netns.veth(tor_ns, "servers", node, "eth0")
    netns.veth(tor_ns, "wan1", wan_ns, "tk-r1-a")  # naming rule: the link is named after the peer
    dirs = []
    for ns in (tor_ns, node, wan_ns):
        sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=ns)
        d = Path(tempfile.mkdtemp(prefix="ft-frr-"))
        os.chmod(d, 0o755)
        _cleanup.append(d)
        dirs.append(d)
    tor, wan = Frr(tor_ns, dirs[0]), Frr(wan_ns, dirs[2])
    tor.start(files["tk-r1-a.conf"])
    wan.start(files["wan1.conf"])
    script = dirs[2] / "srv6.sh"
    script.write_text(files["wan1.srv6.sh"])
    # The companion script, both ways: the kernel's seg6local where the probe finds it, and
    # the eBPF End it falls back to (forced here, so it runs on every kernel).
    bpffs = dirs[2] / "bpf"
    bpffs.mkdir()
    sh("mount", "-t", "bpf", "bpf", str(bpffs))
    _mounts.append(bpffs)
    forced = sh("env", "FLATROUTE_SRV6_DATAPATH=bpf", f"FLATROUTE_BPF_DIR={bpffs}/wan1",
                "sh", str(script), ns=wan_ns)
    assert "eBPF datapath" in forced.stderr
    assert "End SID fcbb:bb00:ff::1 on the eBPF datapath" in forced.stdout
    assert "flr_sid" in sh("tc", "filter", "show", "dev", "tk-r1-a", "ingress",
                           ns=wan_ns).stdout
    assert (bpffs / "wan1" / "maps").is_dir()
    sh("ip", "addr", "add", "10.1.1.11/24", "dev", "eth0", ns=node)
    sh("ip", "addr", "add", "fd00:1:1::11/64", "dev", "eth0", "nodad", ns=node)
    v4 = _exabgp_conf("10.1.1.1", "10.1.1.11", 4200000003, 65101, "ipv4", ["10.244.0.0/26"])
    v6 = _exabgp_conf("fd00:1:1::1", "fd00:1:1::11", 4200000003, 65101, "ipv6",
                      ["fd00:10:244::/122", "fcbb:bb00:1:1::/64"])
    exabgp_env(node, v4 + v6)
    _wait(lambda: "fcbb:bb00:1::/48" in _received(wan, "ipv6"), 45,
          "tokyo's locator block (the ToR's aggregate) on the WAN")
    _wait(lambda: "fcbb:bb00:ff::/48" in _received(tor, "ipv6"), 15, "the WAN locator on the ToR")
    assert {"10.244.0.0/26"} == _received(tor, "ipv4")
    assert {"fd00:10:244::/122", "fcbb:bb00:1:1::/64"} <= _received(tor, "ipv6")
    time.sleep(1)
    # Only locators on the WAN: tokyo's aggregate, the node locators inside it and the WAN's
    # own; never an IPv4 route and never a pod block.
    wan_v6 = _received(wan, "ipv6")
    assert {"fcbb:bb00:1::/48", "fcbb:bb00:ff::/48"} <= wan_v6
    assert all(p.startswith(("fcbb:bb00:1:", "fcbb:bb00:ff:")) for p in wan_v6), wan_v6
    assert _received(wan, "ipv4") == set()  # the WAN never sees an IPv4 pod route
    node_loc = tor.json("show bgp ipv6 unicast fcbb:bb00:1:1::/64 json")
    assert "64600:100" in json.dumps(node_loc)
    # and the session to the WAN is the unnumbered one, on the interface named after the peer
    summary = wan.json("show bgp ipv6 unicast summary json")
    assert summary["peers"]["tk-r1-a"]["state"] == "Established"
    # the same script on the kernel's seg6local, where the probe finds it
    if capabilities().kernel_srv6:
        sh("flatroute", "speaker", "end-sid", "--remove", "--sid", "fcbb:bb00:ff::1",
           "--locator", "fcbb:bb00:ff::/48", "--bpf-dir", f"{bpffs}/wan1", ns=wan_ns)
        assert "flr_sid" not in sh("tc", "filter", "show", "dev", "tk-r1-a", "ingress",
                                   ns=wan_ns).stdout
        sh("sh", str(script), ns=wan_ns)
        routes = sh("ip", "-6", "route", "show", "fcbb:bb00:ff::1/128", ns=wan_ns).stdout
        assert "seg6local action End" in routes
    else:
        need_kernel_srv6("test_render_frr.py::wan1.srv6.sh on kernel seg6local")
