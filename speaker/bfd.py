"""BFD beside ExaBGP (which has none): FRR's bfdd in the node's namespace, polled for peer state.

bfdd runs with its own config, vty socket directory and pid file inside the speaker's run
directory (nothing global). Peers are configured in its config file; state is read with
`vtysh --vty_socket DIR -c 'show bfd peers json'`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable

from flatroute.files import write_atomic
from flatroute.nodestate import NodeState

BFDD = "/usr/lib/frr/bfdd"


def render(state: NodeState) -> str:
    b = state.bgp
    out = ["bfd"]
    for p in state.peers:
        if p.address is None:
            continue
        local = f" local-address {p.local_address}" if p.local_address else ""
        out += [f" peer {p.address}{local}",
                f"  receive-interval {b.bfd_min_rx_ms}",
                f"  transmit-interval {b.bfd_min_tx_ms}",
                f"  detect-multiplier {b.bfd_multiplier}",
                " !"]
    out += ["!", ""]
    return "\n".join(out)


def parse_peers(text: str) -> dict[str, str]:
    """`show bfd peers json` -> {peer address: up|down}. Anything not 'up' counts as down."""
    try:
        doc = json.loads(text or "[]")
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for p in doc if isinstance(doc, list) else ():
        if isinstance(p, dict) and "peer" in p:
            out[str(p["peer"])] = "up" if p.get("status") == "up" else "down"
    return out


class Bfdd:
    def __init__(self, run_dir: str, log: object = None) -> None:
        self.dir = os.path.join(run_dir, "bfdd")
        self.conf = os.path.join(self.dir, "bfdd.conf")
        self.pid_file = os.path.join(self.dir, "bfdd.pid")
        self.pid: int | None = None
        self.log = log
        self.error: str | None = None

    def available(self) -> bool:
        return os.path.exists(BFDD) and shutil.which("vtysh") is not None

    def start(self, state: NodeState) -> None:
        """Start bfdd, or adopt the one a previous speaker left running with the same config.

        bfdd outlives the speaker on purpose: a speaker restart must not take BFD down, or the
        ToR would drop the BGP session and graceful restart would not help.
        """
        os.makedirs(self.dir, exist_ok=True)
        with contextlib.suppress(Exception):
            shutil.chown(self.dir, "frr", "frr")
        changed = write_atomic(self.conf, render(state))
        with contextlib.suppress(Exception):
            shutil.chown(self.conf, "frr", "frr")
        running = self._running_pid()
        if running and not changed:
            self.pid = running
            return
        if running:
            with contextlib.suppress(OSError):
                os.kill(running, signal.SIGKILL)  # bfdd reads its config once: restart it
        with contextlib.suppress(OSError):
            os.unlink(self.pid_file)
        proc = subprocess.Popen(
            [BFDD, "-f", self.conf, "--vty_socket", self.dir, "-z",
             os.path.join(self.dir, "zserv.api"), "-P", "0", "-i", self.pid_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.pid = proc.pid

    def _running_pid(self) -> int | None:
        try:
            with open(self.pid_file, encoding="ascii") as fh:
                pid = int(fh.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if self.conf.encode() in fh.read():
                    return pid
        except (OSError, ValueError):
            pass
        return None

    def poll(self, peers: Iterable[str]) -> dict[str, str | None]:
        """Peer -> up/down (None: unknown yet)."""
        wanted = list(peers)
        try:
            out = subprocess.run(["vtysh", "--vty_socket", self.dir, "-c",
                                  "show bfd peers json"], capture_output=True, text=True,
                                 timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"bfdd not answering: {exc}"
            return dict.fromkeys(wanted)
        if out.returncode != 0:
            self.error = "bfdd not answering"
            return dict.fromkeys(wanted)
        self.error = None
        states = parse_peers(out.stdout)
        return {p: states.get(p) for p in wanted}

    def stop(self) -> None:
        """Stop bfdd (only when BFD is no longer configured)."""
        pid = self._running_pid() or self.pid
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pid = None
