"""The status document's sessions, and their metrics, from the session table."""

from __future__ import annotations

from collections.abc import Iterable

from flatroute.speaker_status import SessionStatus
from speaker.announce import Announcement
from speaker.metrics import Metrics
from speaker.sessions import Session


def session_statuses(snapshot: Iterable[Session], applied: Iterable[Announcement], now: float,
                     metrics: Metrics, node: str) -> list[SessionStatus]:
    sent: dict[str, int] = {}
    for a in applied:
        sent[a.peer] = sent.get(a.peer, 0) + 1
    sessions = []
    for s in sorted(snapshot, key=lambda x: x.peer):
        up = s.state == "established" and s.established_at is not None
        n_sent = sent.get(s.peer, 0) if s.state == "established" else 0
        sessions.append(SessionStatus(
            s.peer, s.name, s.state, round(now - s.established_at, 1)
            if up and s.established_at else None, s.last_error, n_sent, len(s.received),
            s.bfd, s.flaps))
        labels = (node, s.peer, s.name)
        metrics.session_up.labels(*labels).set(1 if s.state == "established" else 0)
        metrics.prefixes_sent.labels(*labels).set(n_sent)
        metrics.prefixes_received.labels(*labels).set(len(s.received))
        metrics.session_flaps.labels(*labels).set(s.flaps)
        if s.bfd is not None:
            metrics.bfd_up.labels(*labels).set(1 if s.bfd == "up" else 0)
    return sessions
