"""BFD beside ExaBGP (which has none): FRR's bfdd in the node's namespace, for the peers that
run BFD (the fabric chooses per ToR; the others are judged by BGP alone).

bfdd runs with its own config, vty socket directory, control socket and pid file inside the
speaker's run directory (nothing global). Peers are configured in its config file. State
changes arrive as events on bfdd's control socket (`speaker.bfd_events`), within
milliseconds of bfdd's own detection, and wake the agent; `vtysh --vty_socket DIR -c 'show
bfd peers json'` gives the baseline after every (re)connection and whenever no event
subscription is live.

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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flatroute.errors import AdapterError
from flatroute.files import write_atomic
from flatroute.nodestate import NodeState
from speaker.bfd_events import Watcher
from speaker.sessions import BFD_OFF, Sessions

BFDD = "/usr/lib/frr/bfdd"
ZEBRA = "/usr/lib/frr/zebra"
ZEBRA_START_WAIT = 3.0


def needs_zebra(state: NodeState) -> bool:
    return any(p.interface for p in state.peers if p.address is not None and p.bfd)


def render(state: NodeState) -> str:
    """bfdd's configuration: a session per peer that runs BFD (and has an address yet)."""
    b = state.bgp
    out = ["bfd"]
    for p in state.peers:
        if p.address is None or not p.bfd:
            continue
        # A link-local peer is only known on its link, and bfdd tells sessions apart by
        # (peer, local address, interface): name all three.
        own = p.local_address or (p.ipv6_next_hop if p.interface else None)
        local = f" local-address {own}" if own else ""
        if p.interface:
            local += f" interface {p.interface}"
        out += [f" peer {p.address}{local}",
                f"  receive-interval {b.bfd.min_rx_ms}",
                f"  transmit-interval {b.bfd.min_tx_ms}",
                f"  detect-multiplier {b.bfd.multiplier}",
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
    def subscribe(self, on_change: Callable[[str, str], None]) -> None: ...
    def start(self, state: NodeState) -> None: ...
    def poll(self, peers: Iterable[str]) -> dict[str, str | None]: ...
    def stop(self) -> None: ...


class Bfdd:
    def __init__(self, run_dir: str, log: Any = None) -> None:
        self.dir = os.path.join(run_dir, "bfdd")
        self.conf = os.path.join(self.dir, "bfdd.conf")
        self.pid_file = os.path.join(self.dir, "bfdd.pid")
        self.zserv = os.path.join(self.dir, "zserv.api")
        self.zebra_pid_file = os.path.join(self.dir, "zebra.pid")
        self.ctl = os.path.join(self.dir, "bfdctl.sock")
        self.pid: int | None = None
        self.log = log
        self.error: str | None = None
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}  # from events, over the last baseline
        self._baseline = False  # a poll since the subscription: events alone are enough
        self._seq: dict[str, int] = {}  # events per peer: a baseline never overwrites newer
        self._on_change: Callable[[str, str], None] | None = None
        self._watcher = Watcher(self.ctl, self._event, self._connected, log)

    def available(self) -> bool:
        return os.path.exists(BFDD) and shutil.which("vtysh") is not None

    def subscribe(self, on_change: Callable[[str, str], None]) -> None:
        """`on_change(peer, up|down)` from the watcher thread, for every state change."""
        self._on_change = on_change

    def _event(self, peer: str, state: str) -> None:
        with self._lock:
            self._seq[peer] = self._seq.get(peer, 0) + 1
            changed = self._states.get(peer) != state
            self._states[peer] = state
        if changed and self.log is not None:
            self.log.info("bfd_event", peer=peer, state=state)
        if changed and self._on_change is not None:
            self._on_change(peer, state)

    def _connected(self) -> None:
        with self._lock:
            self._baseline = False

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
        self._watcher.start()
        if running and not changed and os.path.exists(self.ctl):
            self.pid = running
            return
        if running:
            with contextlib.suppress(OSError):
                os.kill(running, signal.SIGKILL)  # bfdd reads its config once: restart it
        for stale in (self.pid_file, self.ctl):
            with contextlib.suppress(OSError):
                os.unlink(stale)
        self.pid = self._spawn(BFDD, self.conf, self.pid_file, "--bfdctl", self.ctl)

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

    def _spawn(self, daemon: str, config: str, pid_file: str, *extra: str) -> int:
        """An FRR daemon of ours: vty socket in our directory, our private zserv socket, no
        TCP vty, its own session (it outlives the speaker)."""
        return subprocess.Popen(
            [daemon, "-f", config, "--vty_socket", self.dir, "-z", self.zserv, "-P", "0",
             "-i", pid_file, *extra],
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
        """Peer -> up/down (None: unknown yet): from the events while subscribed and a
        baseline was taken since, else from `vtysh`."""
        wanted = list(peers)
        with self._lock:
            if self._watcher.connected and self._baseline:
                return {p: self._states.get(p) for p in wanted}
            self._baseline = self._watcher.connected
            seq = dict(self._seq)
        states = self._vtysh(wanted)
        if states is None:
            return dict.fromkeys(wanted)
        with self._lock:
            for p, st in states.items():
                if self._seq.get(p, 0) == seq.get(p, 0):  # no event since we asked
                    self._states[p] = st
            return {p: self._states.get(p) for p in wanted}

    def _vtysh(self, wanted: list[str]) -> dict[str, str] | None:
        try:
            out = subprocess.run(["vtysh", "--vty_socket", self.dir, "-c",
                                  "show bfd peers json"], capture_output=True, text=True,
                                 timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"bfdd not answering: {exc}"
            return None
        if out.returncode != 0:
            self.error = "bfdd not answering"
            return None
        self.error = None
        states = parse_peers(out.stdout)
        return {p: s for p in wanted if (s := states.get(p)) is not None}

    def stop(self) -> None:
        """Stop bfdd (only when BFD is no longer configured)."""
        pid = self._running_pid() or self.pid
        self._watcher.stop()
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pid = None
        with self._lock:
            self._states.clear()
        self._stop_zebra()


def sync(bfdd: BfdAdapter, sessions: Sessions, st: NodeState, log: Any) -> list[str]:
    """One pass: bfdd for the peers that run BFD, their states into the session table; the
    others are judged by BGP alone (`off`). Returns errors in plain words."""
    wanted = [str(p.address) for p in st.peers if p.bfd and p.address is not None]
    for p in st.peers:
        if not p.bfd:
            sessions.set_bfd(str(p.address), BFD_OFF)
    if not wanted:
        if bfdd.pid is not None:
            bfdd.stop()
        return []
    if not bfdd.available():
        return ["BFD is configured but FRR bfdd/vtysh are not installed"]
    try:
        bfdd.start(st)
    except AdapterError as exc:
        return [str(exc)]
    for peer, state in bfdd.poll(wanted).items():
        if sessions.set_bfd(peer, state):
            log.info("bfd_state", peer=peer, state=state)
    return [bfdd.error] if bfdd.error else []
