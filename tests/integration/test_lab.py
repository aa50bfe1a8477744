"""`flatroute lab` end to end, as a user runs it: up, test, status, exec, fail/heal, down."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.netns_util import need_kernel_srv6, need_root, need_tool, unique

pytestmark = [pytest.mark.root, pytest.mark.slow]

LAB_ROOT = Path("/run/flatroute/lab")


def flatroute(*args: str, timeout: float = 180,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("flatroute")
    cmd = [exe] if exe else [sys.executable, "-m", "cli.main"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"{prefix}-")]


#: the SRv6 datapath the lab tests run on: eBPF, which every kernel CI runs on has (the kernel
#: datapath runs where the capability probe finds it: `need_kernel_srv6`)
DATAPATH = "bpf"


class Lab:
    def __init__(self, fabric: str, pods: int = 2, datapath: str = DATAPATH) -> None:
        self.prefix = unique("lt")
        self.fabric = str(EXAMPLES / fabric)
        self.pods = pods
        self.datapath = datapath
        self.up_output = ""
        doc = yaml.safe_load((EXAMPLES / fabric).read_text())
        if "srv6" in doc["spec"]:
            self._write(doc)

    def _write(self, doc: dict[str, Any]) -> None:
        """The fabric as given, with spec.srv6.datapath set to this lab's datapath."""
        if "srv6" in doc["spec"]:
            doc["spec"]["srv6"]["datapath"] = self.datapath
        where = LAB_ROOT.parent / "lab-fabrics"
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{self.prefix}-{Path(self.fabric).name}"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.fabric = str(path)

    @classmethod
    def variant(cls, example: str, where: Path, change: Callable[[dict[str, Any]], None],
                pods: int = 1, datapath: str = DATAPATH) -> Lab:
        """A lab of an example fabric edited by `change`."""
        del where  # kept for the callers' sake: the fabric lives beside the lab's own
        doc = yaml.safe_load((EXAMPLES / example).read_text())
        change(doc)
        lab = cls(example, pods, datapath)
        lab._write(doc)
        return lab

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        # --prefix right after the action: `exec` passes everything after its name on.
        return flatroute("lab", args[0], "--prefix", self.prefix, *args[1:],
                         **kw)  # type: ignore[arg-type]

    def up(self) -> subprocess.CompletedProcess[str]:
        r = self.run("up", self.fabric, "--pods", str(self.pods))
        self.up_output = r.stdout
        return r

    def exec(self, name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.run("exec", name, "--", *cmd)

    def finish(self) -> None:
        """`lab down`, and the fabric file written for this lab goes too."""
        self.run("down")
        if Path(self.fabric).parent == LAB_ROOT.parent / "lab-fabrics":
            Path(self.fabric).unlink(missing_ok=True)


@contextmanager
def running(lab: Lab, *tools: str) -> Iterator[Lab]:
    """`lab` up (failing the test if it does not come up), and down again whatever happens."""
    need_root()
    need_tool("/usr/lib/frr/bgpd", "vtysh", *tools)
    try:
        r = lab.up()
        assert r.returncode == 0, r.stdout + r.stderr
        yield lab
    finally:
        lab.finish()


@pytest.fixture
def lab_factory() -> Iterator[list[Lab]]:
    need_root()
    need_tool("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh", "tcpdump", "flatroute-cni")
    labs: list[Lab] = []
    try:
        yield labs
    finally:
        for lab in labs:
            lab.finish()


def assert_gone(lab: Lab) -> None:
    assert namespaces(lab.prefix) == []
    assert not (LAB_ROOT / lab.prefix).exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                        check=False).stdout
    assert str(LAB_ROOT / lab.prefix) not in ps


@pytest.mark.parametrize(("fabric", "datapath"), [
    ("single-rack.yaml", "bpf"), ("two-site.yaml", "bpf"), ("two-site.yaml", "kernel"),
    ("unnumbered.yaml", "bpf")])
def test_up_test_down(lab_factory: list[Lab], fabric: str, datapath: str) -> None:
    if datapath == "kernel":
        need_kernel_srv6()
    lab = Lab(fabric, datapath=datapath)
    lab_factory.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[6/6]" in r.stdout
    assert re.search(r"lab up in \d+\.\d s", r.stdout)
    t = lab.run("test")
    print(t.stdout)
    assert t.returncode == 0, t.stdout + t.stderr
    last = t.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) passed, 0 failed", last)
    assert m, last
    if fabric == "two-site.yaml":
        assert "plain IPv4 packets on the WAN" in t.stdout
        assert "wan1: 0 IPv4 routes" in t.stdout
        # A full-size pod packet (pod MTU 1400, don't fragment) still fits the 1500-byte
        # underlay once encapsulated with the waypoint policy's two segments (+80 bytes).
        big = lab.exec("tk-n1-p0", "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1372",
                       "10.245.0.1")
        assert big.returncode == 0, big.stdout + big.stderr
        # every node and the WAN router run the datapath asked for, and say so
        st = lab.run("status").stdout
        assert f"SRv6 End on the {datapath} datapath" in st, st
        assert st.count(f"SRv6 datapath {datapath}") == 4, st
    status = lab.run("status")
    assert status.returncode == 0, status.stderr
    assert "sessions" in status.stdout
    assert "PODS" in status.stdout
    if fabric == "unnumbered.yaml":
        # No addresses on the node links: sessions over link-local addresses found by router
        # discovery, IPv4 routes through IPv6 next hops, ECMP across both ToRs.
        default = lab.exec("node1", "ip", "route", "show", "default").stdout
        assert sorted(re.findall(r"nexthop via inet6 fe80::\S+ dev (r1-[ab])", default)) == [
            "r1-a", "r1-b"], default
        nbr = lab.exec("r1-a", "vtysh", "-c", "show bgp neighbors node1").stdout
        assert "BGP state = Established" in nbr and "Peer Authentication Enabled" in nbr, nbr
        tor_routes = lab.exec("r1-a", "ip", "route").stdout
        assert re.search(r"^10\.244\.0\.0/26 .*via inet6 fe80::\S+ dev node1 proto bgp",
                         tor_routes, re.M), tor_routes
    tor = {"single-rack.yaml": "r1-tor", "two-site.yaml": "tk-r1-a"}.get(fabric, "r1-a")
    show = lab.exec(tor, "vtysh", "-c", "show bgp summary")
    assert show.returncode == 0
    assert "Established" in show.stdout or "Up/Down" in show.stdout
    down = lab.run("down")
    assert down.returncode == 0, down.stderr
    assert_gone(lab)
    assert not any(str(LAB_ROOT / lab.prefix) in ln for ln in
                   Path("/proc/mounts").read_text().splitlines())  # the lab's bpffs too
    again = lab.run("down")
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


def test_usid_two_site_lab_with_a_two_waypoint_policy(lab_factory: list[Lab]) -> None:
    """format: usid-f3216, tokyo -> osaka through wan1 then wan2 in one container. `auto`:
    each router's uN and each node's uDT46 on whichever datapath the probe allows there."""
    lab = Lab("two-site-usid.yaml", datapath="auto")
    lab_factory.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    t = lab.run("test")
    print(t.stdout)
    assert t.returncode == 0, t.stdout + t.stderr
    assert re.fullmatch(r"\d+ passed, 0 failed", t.stdout.strip().splitlines()[-1])
    # the waypoints saw the container shift: wan1 gets block:1:2:3::, wan2 block:2:3::,
    # neither with an SRH
    for line in ("wan1: ", "wan2: "):
        hit = [ln for ln in t.stdout.splitlines() if ln.strip().startswith(line)
               and "packets to fcbb:bb00:" in ln]
        assert hit and all(ln.endswith(", 0 with an SRH") for ln in hit), t.stdout
    assert re.search(r"wan1: [1-9]\d* packets to fcbb:bb00:1:2:3::, 0 with an SRH", t.stdout)
    assert re.search(r"wan2: [1-9]\d* packets to fcbb:bb00:2:3::, 0 with an SRH", t.stdout)
    # full-size DF packets at the pod MTU (1420) cross: 40 bytes of encapsulation
    big = lab.exec("tk-n1-p0", "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1392",
                   "10.245.0.1")
    assert big.returncode == 0, big.stdout + big.stderr
    st = lab.run("status").stdout
    assert "SRV6 PATHS" in st and "containers fcbb:bb00:1:2:3:: (no SRH)" in st, st
    assert re.search(r"hops wan1 uN fcbb:bb00:1:2:3::, wan2 uN fcbb:bb00:2:3::, "
                     r"os-n1 uDT46 fcbb:bb00:3::", st), st
    assert "SRv6 uN on the" in st, st


def test_kubernetes_mode(lab_factory: list[Lab]) -> None:
    """The same lab with the (fake) Kubernetes API as source of truth and distribution."""
    lab = Lab("two-site.yaml", pods=1)
    lab_factory.append(lab)
    r = lab.run("up", lab.fabric, "--pods", "1", "--kubernetes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Kubernetes mode" in r.stdout
    t = lab.run("test")
    assert t.returncode == 0, t.stdout + t.stderr
    status = lab.run("status").stdout
    assert re.search(r"^\s+tk-n1\s+4200000003\s+4/4\s+3\s+yes", status, re.M), status
    assert lab.run("down").returncode == 0
    assert_gone(lab)


def test_bad_fabric_refused_before_anything_is_built(lab_factory: list[Lab],
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "single-rack.yaml").read_text().replace("rack: r1}", "rack: r7}"))
    lab = Lab("single-rack.yaml")
    lab.fabric = str(bad)
    lab_factory.append(lab)
    r = lab.up()
    assert r.returncode == 2
    assert "spec.nodes[0].rack" in r.stderr
    assert namespaces(lab.prefix) == []
    assert not (LAB_ROOT / lab.prefix).exists()


def test_failed_up_rolls_back(lab_factory: list[Lab]) -> None:
    lab = Lab("single-rack.yaml", pods=1)
    lab_factory.append(lab)
    r = flatroute("lab", "up", lab.fabric, "--prefix", lab.prefix,
                  env={"FLATROUTE_LAB_FAIL_AT": "routers"})
    assert r.returncode == 1
    assert "injected failure" in r.stderr
    assert "rolling back" in r.stdout
    assert_gone(lab)


def ping_stream(lab: Lab, src: str, dst: str) -> subprocess.Popen[str]:
    """A ping every 20 ms; its summary says how many were lost."""
    exe = shutil.which("flatroute") or "flatroute"
    return subprocess.Popen([exe, "lab", "exec", "--prefix", lab.prefix, src, "--", "ping",
                             "-i", "0.02", "-W", "1", dst], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop_stream(proc: subprocess.Popen[str]) -> tuple[int, int]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m[1]), int(m[2])


def test_resilience_tor_failure_and_speaker_restart(lab_factory: list[Lab]) -> None:
    lab = Lab("two-site.yaml", pods=1)
    lab_factory.append(lab)
    r = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    status = lab.run("status").stdout
    pods = dict(re.findall(r"^\s+(\S+-p0)\s+on \S+\s+(\d+\.\d+\.\d+\.\d+)", status, re.M))
    assert {"tk-n1-p0", "tk-n2-p0"} <= set(pods)
    # One ToR of the dual-ToR rack fails: pods keep reaching each other through the other.
    stream = ping_stream(lab, "tk-n1-p0", pods["tk-n2-p0"])
    time.sleep(1.0)
    assert lab.run("fail", "tk-r1-a").returncode == 0
    time.sleep(2.0)
    sent, received = stop_stream(stream)
    assert sent > 50
    assert sent - received <= 2, f"lost {sent - received} of {sent} during a ToR failure"
    after = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-tk-n1-p0", "ping", "-c", "3",
                            "-i", "0.2", "-W", "1", pods["tk-n2-p0"]], capture_output=True,
                           text=True, check=False)
    assert after.returncode == 0, after.stdout
    assert lab.run("heal", "tk-r1-a").returncode == 0
    # The speaker of tk-n1 is restarted (SIGKILL, then started again as the lab does):
    # kernel routes stay, the ToRs keep ours as stale, no packet is lost.
    time.sleep(3.0)
    stream = ping_stream(lab, "tk-n1-p0", pods["os-n1-p0"])
    time.sleep(1.0)
    ps = subprocess.run(["ip", "netns", "pids", f"{lab.prefix}-tk-n1"], capture_output=True,
                        text=True, check=False).stdout.split()
    cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                for pid in ps if Path(f"/proc/{pid}/cmdline").exists()}
    speaker = [int(p) for p, c in cmdlines.items() if "speaker run" in c]
    exabgp = [int(p) for p, c in cmdlines.items() if "exabgp" in c and "speaker" not in c]
    assert speaker, cmdlines
    for pid in speaker + exabgp:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)
    restarted = subprocess.Popen(
        ["ip", "netns", "exec", f"{lab.prefix}-tk-n1", *(cmdlines[str(speaker[0])].split())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(4.0)
    sent, received = stop_stream(stream)
    assert restarted.poll() is None, "restarted speaker exited"
    assert sent > 100
    assert received == sent, f"lost {sent - received} of {sent} across a speaker restart"
    t = lab.run("test")
    assert t.returncode == 0, t.stdout
