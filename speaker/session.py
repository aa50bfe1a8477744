"""The BGP session adapter: hand it the whole desired set, it makes ExaBGP send exactly that.

`set(state, announcements, md5=...)` works as MetalLB's `Session.Set`: it remembers what ExaBGP
was given (its rendered configuration and the announcements the API acknowledged), and decides:
- nothing but announcements changed: the difference goes through the API, ACKs read;
- peers, ASNs, timers or MD5 changed and the API is connected: the surviving sessions are first
  brought to the desired set through the API, then the configuration is rewritten with the
  desired set as static routes and ExaBGP reloads it (SIGUSR1). ExaBGP resets only the
  neighbours whose own configuration changed, so the others stay established;
- the same without an API connection: SIGKILL (no NOTIFICATION: the ToRs keep our routes by
  graceful restart) and a restart;
- ExaBGP not running (first pass, or it died): (re)start with backoff. A fresh ExaBGP sends the
  desired set from its configuration before its End-of-RIB: that is the replay. `on_restart` is
  called at once, so that the caller forgets what the old process learned and holds its paths.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from flatroute.errors import AdapterError
from flatroute.nodestate import NodeState
from speaker import announce, exabgp_config
from speaker.announce import Announcement
from speaker.exabgp_config import Paths
from speaker.exabgp_process import ExaBGPProcess, bridge_command

#: seconds to wait for a fresh ExaBGP's API connection before the first API commands
CONNECT_WAIT = 5.0


class ExaBGPSession:
    # (its `set` method shadows the builtin in annotations here: `builtins.set` for the type)
    def __init__(self, process: ExaBGPProcess, paths: Paths, *, log: Any,
                 on_restart: Callable[[], None] = lambda: None) -> None:
        self.process = process
        self.paths = paths
        self.log = log
        self.on_restart = on_restart
        #: the rendered configuration minus routes, and the neighbours, of the running ExaBGP
        self.session_config: str | None = None
        self.running_peers: builtins.set[str] = set()
        #: the announcements ExaBGP sends (from its configuration or acknowledged by the API)
        self.applied: frozenset[Announcement] = frozenset()
        self._starts_seen = 0

    # -- what the agent reads ----------------------------------------------------------------
    @property
    def starts(self) -> int:
        return self.process.starts

    @property
    def last_exit(self) -> str | None:
        return self.process.last_exit

    def alive(self) -> bool:
        return self.process.alive()

    def connected(self) -> bool:
        return self.process.connected.is_set()

    def close(self) -> None:
        """Planned stop: SIGKILL, no NOTIFICATION; the ToRs keep our routes as stale."""
        self.process.close()

    def teardown(self, peers: list[str], subcode: int) -> None:
        """Send each peer a Cease NOTIFICATION with `subcode` (ExaBGP sends one only when the
        session did not negotiate graceful restart); raises AdapterError."""
        results = self.process.send([f"neighbor {p} teardown {subcode}" for p in peers])
        refused = [p for p, ok in zip(peers, results, strict=True) if not ok]
        self.log.info("bgp_teardown_sent", peers=peers, subcode=subcode, refused=refused)
        if refused:
            raise AdapterError("ExaBGP refused the teardown of " + ", ".join(refused))

    def leave(self, state: NodeState, *, md5: str | None = None) -> None:
        """The node left the fabric: withdraw everything through the API (when connected),
        then restart ExaBGP with `state` (graceful restart off) and nothing to announce. A
        reload is not enough: ExaBGP 5 keeps a reset neighbour's old capabilities when its
        session loop consumes the reload first, and a session that negotiated graceful
        restart is always closed without a NOTIFICATION."""
        if self.process.alive() and self.connected():
            self._send(frozenset())
        if self.process.alive():
            self.process.kill()
        self.session_config = None
        self.set(state, frozenset(), md5=md5)

    def stop(self) -> None:
        """Stop ExaBGP for good (the node left the fabric) and forget what it was given: if
        the node comes back, ExaBGP starts afresh from its configuration."""
        if self.process.alive():
            self.process.kill()
        self.session_config, self.running_peers, self.applied = None, set(), frozenset()

    # -- the one verb --------------------------------------------------------------------------
    def set(self, state: NodeState, want: frozenset[Announcement], *,
            md5: str | None = None) -> None:
        """Make ExaBGP run `state`'s sessions and send `want`; raises AdapterError."""
        session_config = self._render(state, md5, frozenset())
        peers = {announce.peer_key(p) for p in state.peers}
        proc = self.process
        if self.session_config is not None and session_config != self.session_config \
                and proc.alive():
            if proc.connected.is_set():
                self._reload(state, md5, want, session_config, peers)
                return
            self.log.info("exabgp_restart_for_config_change")  # no API to reload through
            proc.kill()  # SIGKILL, no NOTIFICATION: graceful restart keeps the routes
        if proc.supervise(lambda: self._render(state, md5, want),
                          exabgp_config.render_env(self.paths)):
            self.session_config, self.running_peers = session_config, peers
        if proc.starts != self._starts_seen:
            # A fresh ExaBGP: it announces `want` from its config.
            self._starts_seen = proc.starts
            self.applied = want
            self.on_restart()
            proc.connected.wait(CONNECT_WAIT)
        if not proc.connected.is_set():
            return
        self._send(want)

    def _reload(self, state: NodeState, md5: str | None, want: frozenset[Announcement],
                session_config: str, peers: builtins.set[str]) -> None:
        # Peers, ASNs, timers or MD5 changed. A reload resets only the neighbours whose own
        # configuration changed: a ToR added, removed or re-addressed leaves the other sessions
        # up. First bring the sessions that stay to `want` through the API, so that the
        # reloaded static routes (= want) change nothing for them.
        self._send(want, only=self.running_peers & peers)
        self.process.reload(self._render(state, md5, want))
        self.log.info("exabgp_reloaded_for_config_change",
                      added=sorted(peers - self.running_peers),
                      removed=sorted(self.running_peers - peers))
        self.session_config, self.running_peers = session_config, peers
        self.applied = want

    def _render(self, state: NodeState, md5: str | None,
                static: frozenset[Announcement]) -> str:
        return exabgp_config.render_config(state, bridge_command(self.paths),
                                           md5_password=md5, static=static)

    def _send(self, want: frozenset[Announcement], only: builtins.set[str] | None = None
              ) -> None:
        """Announce and withdraw through the API until ExaBGP sends `want` (to `only` peers)."""
        withdraw, add = announce.diff(
            frozenset(a for a in want if only is None or a.peer in only),
            frozenset(a for a in self.applied if only is None or a.peer in only))
        cmds = ([exabgp_config.withdraw_command(a) for a in withdraw]
                + [exabgp_config.announce_command(a) for a in add])
        if not cmds:
            return
        results = self.process.send(cmds)
        applied = set(self.applied)
        failed = []
        for a, ok in zip([*withdraw, *add], results[:len(withdraw)] + results[len(withdraw):],
                         strict=True):
            is_withdraw = a in withdraw
            if not ok:
                failed.append(f"{'withdraw' if is_withdraw else 'announce'} {a.prefix} "
                              f"to {a.peer}")
                continue
            if is_withdraw:
                applied.discard(a)
            else:
                applied = {x for x in applied if (x.peer, x.prefix) != (a.peer, a.prefix)}
                applied.add(a)
        self.applied = frozenset(applied)
        self.log.info("announcements_changed", withdrawn=len(withdraw), announced=len(add),
                      failed=len(failed))
        if failed:
            raise AdapterError("ExaBGP refused: " + ", ".join(failed))
