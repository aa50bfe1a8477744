"""A tiny lab for the speaker's tests and benchmark: one node netns, FRR ToRs in their own netns.

Hand-made FRR configs (the ToR renderer is separate). The node's uplink toward ToR T is named
`flatroute.fabric.naming.ifname(T)`; the ToR side is `servers`, as in `flatroute lab`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flatroute import nodestate
from flatroute.fabric.naming import ifname
from tests.netns_util import Netns, sh

NODE_ASN = 64512


@dataclass
class Tor:
    name: str
    ns: str
    asn: int
    v4: str  # ToR address on the peering subnet, e.g. 10.1.1.1
    v6: str
    node_v4: str
    node_v6: str
    dir: str = ""
    extra: str = ""  # more neighbor lines (MD5, RFC 8950...)

    def vtysh(self, *cmds: str) -> str:
        args = ["vtysh", "--vty_socket", self.dir]
        for c in cmds:
            args += ["-c", c]
        return subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout

    def json(self, cmd: str) -> Any:
        try:
            return json.loads(self.vtysh(cmd) or "{}")
        except ValueError:
            return {}


@dataclass
class Lab:
    netns: Netns
    node_ns: str = ""
    tors: list[Tor] = field(default_factory=list)
    tmp: str = ""
    speaker: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> str:
        return os.path.join(self.tmp, "state")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.tmp, "run")

    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, "nodes", "n1.json")

    @property
    def status_file(self) -> str:
        return os.path.join(self.state_dir, "status", "n1.json")

    @property
    def bpffs(self) -> str:
        """This lab's own bpffs: the speaker's eBPF datapath pins under it."""
        return os.path.join(self.tmp, "bpf")

    @property
    def bpf_dir(self) -> str:
        return os.path.join(self.bpffs, "n1")


def frr_config(tor: Tor, *, v6_session: bool = False, rfc8950: bool = False, md5: str | None = None,
               bfd: bool = False) -> str:
    lines = ["frr defaults datacenter", f"hostname {tor.name}", "!",
             f"router bgp {tor.asn}", f" bgp router-id 10.255.0.{len(tor.name)}",
             " no bgp ebgp-requires-policy", " bgp graceful-restart",
             f" neighbor {tor.node_v4} remote-as {NODE_ASN}"]
    if md5:
        lines.append(f" neighbor {tor.node_v4} password {md5}")
    if bfd:
        lines.append(f" neighbor {tor.node_v4} bfd")
    if v6_session:
        lines.append(f" neighbor {tor.node_v6} remote-as {NODE_ASN}")
        if rfc8950:
            lines.append(f" neighbor {tor.node_v6} capability extended-nexthop")
    lines += [" address-family ipv4 unicast", f"  neighbor {tor.node_v4} default-originate"]
    if rfc8950:
        lines += [f"  neighbor {tor.node_v6} activate",
                  f"  neighbor {tor.node_v6} default-originate"]
    elif v6_session:
        lines.append(f"  no neighbor {tor.node_v6} activate")
    lines.append(" exit-address-family")
    if v6_session:
        lines += [" address-family ipv6 unicast", f"  neighbor {tor.node_v6} activate",
                  f"  neighbor {tor.node_v6} default-originate", " exit-address-family"]
    lines += ["!", ""]
    return "\n".join(lines)


def build(netns: Netns, n_tors: int = 1) -> Lab:
    """The lab; on any failure, everything made so far is removed before the error goes on."""
    lab = Lab(netns, tmp=tempfile.mkdtemp(prefix="ftspk"))
    try:
        _build(lab, n_tors)
    except BaseException:
        cleanup(lab)
        raise
    return lab


def _build(lab: Lab, n_tors: int) -> None:
    netns = lab.netns
    os.chmod(lab.tmp, 0o755)
    os.makedirs(lab.bpffs)
    sh("mount", "-t", "bpf", "bpf", lab.bpffs)
    lab.node_ns = netns.add("node")
    for i in range(1, n_tors + 1):
        name = f"tor{i}"
        tor = Tor(name, netns.add("tor"), 65000 + i, f"10.1.{i}.1", f"fd00:1:{i}::1",
                  f"10.1.{i}.11", f"fd00:1:{i}::11")
        netns.veth(lab.node_ns, ifname(name), tor.ns, "servers")
        sh("ip", "addr", "add", f"{tor.v4}/24", "dev", "servers", ns=tor.ns)
        sh("ip", "addr", "add", f"{tor.v6}/64", "dev", "servers", "nodad", ns=tor.ns)
        sh("ip", "addr", "add", f"{tor.node_v4}/24", "dev", ifname(name), ns=lab.node_ns)
        sh("ip", "addr", "add", f"{tor.node_v6}/64", "dev", ifname(name), "nodad",
           ns=lab.node_ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
           ns=tor.ns)
        tor.dir = os.path.join(lab.tmp, name)
        os.makedirs(tor.dir)
        shutil.chown(tor.dir, "frr", "frr")
        lab.tors.append(tor)


def start_frr(tor: Tor, config: str, *, bfd: bool = False) -> None:
    path = os.path.join(tor.dir, "frr.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(config)
    shutil.chown(path, "frr", "frr")
    daemons = ["zebra", "bfdd", "bgpd"] if bfd else ["zebra", "bgpd"]
    for d in daemons:
        sh(f"/usr/lib/frr/{d}", "-d", "-f", path, "--vty_socket", tor.dir, "-z",
           os.path.join(tor.dir, "zserv.api"), "-P", "0", "-i",
           os.path.join(tor.dir, f"{d}.pid"), ns=tor.ns)
        if d == "zebra":
            wait_for(lambda: os.path.exists(os.path.join(tor.dir, "zserv.api")), 10)


def reload_frr(tor: Tor, config: str) -> None:
    """Restart bgpd only (zebra keeps its routes) with a new config."""
    stop_daemon(tor, "bgpd")
    path = os.path.join(tor.dir, "frr.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(config)
    sh("/usr/lib/frr/bgpd", "-d", "-f", path, "--vty_socket", tor.dir, "-z",
       os.path.join(tor.dir, "zserv.api"), "-P", "0", "-i", os.path.join(tor.dir, "bgpd.pid"),
       ns=tor.ns)


def stop_daemon(tor: Tor, daemon: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(tor.dir, f"{daemon}.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5)


def node_spec(lab: Lab, *, v4_blocks: tuple[str, ...] = ("10.244.0.0/26",),
              v6_blocks: tuple[str, ...] = (), v6_session: bool = False, rfc8950: bool = False,
              md5_file: str | None = None, srv6: dict[str, Any] | None = None,
              bfd: bool = False, hold: int = 9) -> dict[str, Any]:
    peers: list[dict[str, Any]] = []
    uplinks = []
    for t in lab.tors:
        uplinks.append({"tor": t.name, "ipv4": f"{t.node_v4}/24", "ipv6": f"{t.node_v6}/64"})
        if not rfc8950:
            peers.append({"name": t.name, "asn": t.asn, "address": t.v4,
                          "localAddress": t.node_v4, "families": ["ipv4"]})
        if v6_session or rfc8950:
            peers.append({"name": t.name, "asn": t.asn, "address": t.v6,
                          "localAddress": t.node_v6,
                          "families": ["ipv4", "ipv6"] if rfc8950 else ["ipv6"]})
    return {
        "node": "n1", "fabric": "test", "site": "s1", "rack": "r1", "role": "worker",
        "asn": NODE_ASN, "routerId": "10.1.1.11", "mtu": 1500,
        "bgp": {"holdTime": hold, "keepalive": max(1, hold // 3), "gracefulRestart": 120,
                "md5": {"file": md5_file} if md5_file else None, "communities": [],
                "bfd": {"minRx": 100, "minTx": 100, "multiplier": 3} if bfd else None},
        "uplinks": uplinks, "peers": peers,
        "podBlocks": {"ipv4": list(v4_blocks), "ipv6": list(v6_blocks)},
        "srv6": srv6 or {"enabled": False},
    }


def publish(lab: Lab, spec: dict[str, Any] | str) -> None:
    """Write the node state (a spec dict, or raw text for bad-input tests) atomically."""
    if isinstance(spec, str):
        text = spec
    else:
        st = nodestate.from_spec(spec)
        text = nodestate.to_json(st)
    os.makedirs(os.path.dirname(lab.state_file), exist_ok=True)
    tmp = lab.state_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, lab.state_file)


def start_speaker(lab: Lab, *extra: str) -> subprocess.Popen[bytes]:
    log = open(os.path.join(lab.tmp, "speaker.log"), "ab")  # noqa: SIM115
    lab.speaker = subprocess.Popen(
        ["ip", "netns", "exec", lab.node_ns, sys.executable, "-m", "cli.main", "speaker",
         "run", "--node", "n1", "--state-dir", lab.state_dir, "--run-dir", lab.run_dir,
         "--config-dir", lab.tmp, "--interval", "1", "--bpf-dir", lab.bpf_dir, *extra],
        stdout=log, stderr=log)
    log.close()
    return lab.speaker


def kill_speaker(lab: Lab, sig: int = signal.SIGTERM) -> None:
    if lab.speaker is not None and lab.speaker.poll() is None:
        lab.speaker.send_signal(sig)
        try:
            lab.speaker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            lab.speaker.kill()
            lab.speaker.wait()
    lab.speaker = None


def status(lab: Lab) -> dict[str, Any]:
    try:
        with open(lab.status_file, encoding="utf-8") as fh:
            doc: dict[str, Any] = json.load(fh)
            return doc
    except (OSError, ValueError):
        return {}


def session_states(lab: Lab) -> dict[str, str]:
    return {s["peer"]: s["state"] for s in status(lab).get("sessions", [])}


def wait_for(pred: Callable[[], Any], timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {pred}")
        time.sleep(interval)


def routes(ns: str, *args: str) -> str:
    return sh("ip", *args, "route", "show", ns=ns).stdout


def speaker_pid(lab: Lab) -> int:
    with open(os.path.join(lab.run_dir, "speaker.pid"), encoding="ascii") as fh:
        return int(fh.read().strip())


def cleanup(lab: Lab) -> None:
    kill_speaker(lab, signal.SIGKILL)
    lab.netns.close()  # kills everything still inside (FRR, ExaBGP, bfdd)
    if os.path.ismount(lab.bpffs):
        sh("umount", "-l", lab.bpffs, check=False)  # every pin of the test's eBPF datapath
    shutil.rmtree(lab.tmp, ignore_errors=True)
