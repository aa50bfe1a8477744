"""What a TCP connect to a peer's BGP port finds, for a session that never got a connection.

ExaBGP logs its failed connects at debug level only, so a ToR whose BGP is not running looked
like an MD5 mismatch. The speaker asks the kernel itself, from the session's own source
address: all connects at once, non-blocking, at most `timeout` seconds for the lot; each
connection that succeeds is closed at once (the session is down anyway). Answers: refused
(RST: nothing listens), unreachable (no route, ICMP unreachable), timeout (no answer: a
filter, a dead peer, or MD5 on one side only), open.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
from collections.abc import Sequence
from ipaddress import ip_address
from typing import Protocol

BGP_PORT = 179
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


class TcpProbe(Protocol):
    def __call__(self, targets: Sequence[tuple[str, str | None]]) -> dict[str, str]:
        """(peer, local address) -> what a connect to the peer's BGP port found."""
        ...


def _result(code: int) -> str:
    if code == 0:
        return "open"
    if code == errno.ECONNREFUSED:
        return "refused"
    return "unreachable" if code in _UNREACHABLE else "timeout"


def probe(targets: Sequence[tuple[str, str | None]], *, port: int = BGP_PORT,
          timeout: float = 0.5) -> dict[str, str]:
    out: dict[str, str] = {}
    sel = selectors.DefaultSelector()
    try:
        for peer, local in targets:
            addr = ip_address(peer)
            if addr.is_link_local:
                continue  # needs the uplink as scope; the discovery names those peers
            s = socket.socket(socket.AF_INET6 if addr.version == 6 else socket.AF_INET,
                              socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                if local:
                    s.bind((local, 0))
                code = s.connect_ex((peer, port))
            except OSError as exc:
                code = exc.errno or errno.EINVAL
            if code in (errno.EINPROGRESS, errno.EAGAIN):
                sel.register(s, selectors.EVENT_WRITE, peer)
                continue
            out[peer] = _result(code)
            s.close()
        for key, _ in sel.select(timeout):
            s = key.fileobj  # type: ignore[assignment]
            out[key.data] = _result(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        for key in list(sel.get_map().values()):
            out.setdefault(key.data, "timeout")
    finally:
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
    return out


class Probes:
    """Probe each peer at most every `every` seconds; remembers the last answers."""

    def __init__(self, fn: TcpProbe = probe, every: float = 10.0) -> None:
        self.fn = fn
        self.every = every
        self._last: dict[str, tuple[float, str]] = {}

    def results(self, targets: Sequence[tuple[str, str | None]], now: float
                ) -> dict[str, str | None]:
        due = [t for t in targets if t[0] not in self._last
               or now - self._last[t[0]][0] >= self.every]
        if due:
            for peer, found in self.fn(due).items():
                self._last[peer] = (now, found)
        return {peer: (self._last.get(peer) or (0.0, None))[1] for peer, _ in targets}
