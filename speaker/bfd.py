"""BFD beside ExaBGP (which has none): FRR's bfdd in the node's namespace, polled for peer state.

bfdd runs with its own config, vty socket directory and pid file inside the speaker's run
directory (nothing global). Peers are configured in its config file; state is read with
`vtysh --vty_socket DIR -c 'show bfd peers json'`.

Sessions to link-local peers (unnumbered uplinks) need bfdd to know the interfaces, which it
learns from zebra only: without it such a session never leaves Init (seen in the lab). So when
any peer is link-local, a zebra with an empty configuration runs beside bfdd, on bfdd's private
zserv socket. It installs nothing (no daemon gives it routes) and its vty is a unix socket in
the same directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import Protocol

from flatroute.errors import AdapterError
from flatroute.files import write_atomic
from flatroute.nodestate import NodeState

BFDD = "/usr/lib/frr/bfdd"
ZEBRA = "/usr/lib/frr/zebra"
ZEBRA_START_WAIT = 3.0


def needs_zebra(state: NodeState) -> bool:
    return any(p.interface for p in state.peers if p.address is not None)


def render(state: NodeState) -> str:
    b = state.bgp
    out = ["bfd"]
    for p in state.peers:
        if p.address is None:
            continue
        # A link-local peer is only known on its link, and bfdd tells sessions apart by
        # (peer, local address, interface): name all three.
        own = p.local_address or (p.ipv6_next_hop if p.interface else None)
        local = f" local-address {own}" if own else ""
        if p.interface:
            local += f" interface {p.interface}"
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


class BfdAdapter(Protocol):
    """`Bfdd` as the agent uses it (an in-memory fake in unit tests)."""

    pid: int | None
    error: str | None

    def available(self) -> bool: ...
    def start(self, state: NodeState) -> None: ...
    def poll(self, peers: Iterable[str]) -> dict[str, str | None]: ...
    def stop(self) -> None: ...


class Bfdd:
    def __init__(self, run_dir: str, log: object = None) -> None:
        self.dir = os.path.join(run_dir, "bfdd")
        self.conf = os.path.join(self.dir, "bfdd.conf")
        self.pid_file = os.path.join(self.dir, "bfdd.pid")
        self.zserv = os.path.join(self.dir, "zserv.api")
        self.zebra_pid_file = os.path.join(self.dir, "zebra.pid")
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
        if needs_zebra(state):
            self._start_zebra()
        else:
            self._stop_zebra()
        running = self._running_pid()
        if running and not changed:
            self.pid = running
            return
        if running:
            with contextlib.suppress(OSError):
                os.kill(running, signal.SIGKILL)  # bfdd reads its config once: restart it
        with contextlib.suppress(OSError):
            os.unlink(self.pid_file)
        self.pid = self._spawn(BFDD, self.conf, self.pid_file)

    def _start_zebra(self) -> None:
        """zebra for bfdd's interface knowledge; adopted across speaker restarts like bfdd."""
        if self._running_pid(self.zebra_pid_file, self.zserv):
            return
        if not os.path.exists(ZEBRA):
            raise AdapterError(f"BFD to link-local peers needs FRR's zebra ({ZEBRA}) beside "
                               "bfdd, and it is not installed")
        with contextlib.suppress(OSError):
            os.unlink(self.zebra_pid_file)
        with contextlib.suppress(OSError):
            os.unlink(self.zserv)
        self._spawn(ZEBRA, "/dev/null", self.zebra_pid_file)
        # bfdd started before zebra listens retries its connection only after ~10 s: wait for
        # the socket (zebra makes it within a fraction of a second) rather than lose that.
        deadline = time.monotonic() + ZEBRA_START_WAIT
        while not os.path.exists(self.zserv) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _spawn(self, daemon: str, config: str, pid_file: str) -> int:
        """An FRR daemon of ours: vty socket in our directory, our private zserv socket, no
        TCP vty, its own session (it outlives the speaker)."""
        return subprocess.Popen(
            [daemon, "-f", config, "--vty_socket", self.dir, "-z", self.zserv, "-P", "0",
             "-i", pid_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True).pid

    def _stop_zebra(self) -> None:
        pid = self._running_pid(self.zebra_pid_file, self.zserv)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def _running_pid(self, pid_file: str | None = None, marker: str | None = None
                     ) -> int | None:
        """The pid in `pid_file` (bfdd's by default) if that process runs with `marker` (our
        config or zserv path) on its command line: never someone else's daemon."""
        try:
            with open(pid_file or self.pid_file, encoding="ascii") as fh:
                pid = int(fh.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if (marker or self.conf).encode() in fh.read():
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
        self._stop_zebra()
