"""The speaker's side of leaving the fabric: carry out `farewell.decide`'s steps on the ExaBGP
session, the session table and bfdd (see speaker/farewell.py for the steps and why)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flatroute.errors import FlatrouteError
from speaker import farewell
from speaker.bfd import BfdAdapter
from speaker.clock import Clock
from speaker.desired import Desired
from speaker.session import ExaBGPSession
from speaker.sessions import Sessions


class Leaver:
    def __init__(self, session: ExaBGPSession, sessions: Sessions, bfdd: BfdAdapter,
                 clock: Clock, log: Any) -> None:
        self.session = session
        self.sessions = sessions
        self.bfdd = bfdd
        self.clock = clock
        self.log = log
        self.progress = farewell.Progress()

    def step(self, applied: Desired | None) -> tuple[list[str], bool]:
        """One step; returns (errors, True when the sessions were ended just now)."""
        p = self.progress
        act = farewell.decide(p, applied.state if applied is not None else None,
                              self.sessions.snapshot(), now=self.clock.monotonic())
        try:
            if isinstance(act, farewell.Withdraw):
                p.started_wall = self.clock.time()
                p.deadline = self.clock.monotonic() + farewell.wait_for(act.state)
                self.log.info("withdrawing_everything", peers=len(act.state.peers))
                self.session.leave(act.state, md5=applied.md5 if applied else None)
            elif isinstance(act, farewell.Notify):
                for peer in act.peers:
                    p.notified[peer] = self.clock.time()
                self.session.teardown(list(act.peers), farewell.CEASE_DECONFIGURED)
            elif isinstance(act, farewell.Finish):
                self._finish(act.why)
                return [], True
        except FlatrouteError as exc:
            return [str(exc)], False
        return [], False

    def finish(self, reconcile: Callable[[], None], wake: threading.Event) -> None:
        """SIGTERM on a leaving node: run passes (woken by events, else every 0.1 s) until it
        has left; the farewell's own deadline ends it, `STOP_PASSES` bounds it."""
        for _ in range(farewell.STOP_PASSES):
            if self.progress.done:
                return
            reconcile()
            wake.wait(0.1)
            wake.clear()

    def _finish(self, why: str) -> None:
        self.session.stop()
        self.bfdd.stop()
        self.sessions.configure({}, 0)
        self.progress.done, self.progress.finished_why = True, why
        self.log.warning("node_left_fabric", why=why, notified=sorted(self.progress.notified))
