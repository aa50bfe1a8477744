"""Run real FRR daemons for one lab router inside its namespace, with its own paths."""

from __future__ import annotations

import json
import pwd
import shutil
from pathlib import Path
from typing import Any

from lab import host
from lab.state import Proc
from render.frr import daemons_for

FRR_DIR = Path("/usr/lib/frr")


def missing_tools() -> list[str]:
    return [str(FRR_DIR / d) for d in ("zebra", "bgpd") if not (FRR_DIR / d).exists()] + (
        [] if shutil.which("vtysh") else ["vtysh"])


def start(ns: str, router: str, config: str, directory: Path) -> list[Proc]:
    """Write the config and start zebra, bgpd (and bfdd when the config uses BFD)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "frr.conf"
    conf.write_text(config)
    try:
        frr = pwd.getpwnam("frr")
        for p in (directory, conf):
            import os

            os.chown(p, frr.pw_uid, frr.pw_gid)
    except KeyError:
        pass
    procs = []
    for daemon in daemons_for(config):
        cmd = [str(FRR_DIR / daemon), "-f", str(conf), "--vty_socket", str(directory),
               "-z", str(directory / "zserv.api"), "-P", "0",
               "-i", str(directory / f"{daemon}.pid"), "--log", "stdout"]
        log = directory / f"{daemon}.log"
        pid = host.spawn(ns, cmd, log)
        procs.append(Proc(f"{router}/{daemon}", pid, ns, str(log)))
        if daemon == "zebra":
            _wait_for(directory / "zserv.api")
    return procs


def _wait_for(path: Path, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def vtysh(directory: Path, command: str, timeout: float = 10) -> str:
    return host.run(["vtysh", "--vty_socket", str(directory), "-c", command],
                    timeout=timeout).stdout


def bgp_summary(directory: Path) -> dict[str, dict[str, Any]]:
    """peer -> {state, afi, pfxRcd, ...} over every address family, from FRR's JSON."""
    try:
        doc = json.loads(vtysh(directory, "show bgp summary json") or "{}")
    except (host.HostError, ValueError):
        return {}
    peers: dict[str, dict[str, Any]] = {}
    for afi, body in doc.items():
        for peer, info in (body.get("peers") or {}).items():
            entry = peers.setdefault(peer, {"state": info.get("state"), "families": {}})
            entry["families"][afi] = info.get("pfxRcd", 0)
            if info.get("state") != "Established":
                entry["state"] = info.get("state")
            entry["hostname"] = info.get("hostname") or entry.get("hostname")
    return peers
