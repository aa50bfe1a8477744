"""BFD state changes as events: a client of FRR bfdd's control socket (`--bfdctl`), stdlib only.

bfdd pushes a notification for every peer state change to each control-socket client that
asked for them, the moment it decides (detection time expired, the peer said down, up again).
The speaker reads them in a thread and wakes its loop at once, as `linkwatch` does for links;
the loop stays level-triggered (a `vtysh` poll gives the baseline after every (re)connection).

The protocol (FRR `bfdd/bfdctl.h`, `bfdd/control.c`): every message is an 8-byte header
(length of the payload and id in network byte order, then type and version bytes) and a
payload. A subscription is a BMT_NOTIFY request whose payload is a 64-bit flag set in the
daemon's own byte order; bfdd answers it with a response (`{"status": "ok"}`), then sends
notifications with id 0 whose payload is JSON: `{"op": "status", "peer-address": ...,
"state": "up" | "down" | "init" | "adm-down", ...}`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

HEADER = struct.Struct("!IHBB")  # payload length, id, type, version
VERSION = 1
BMT_RESPONSE = 1
BMT_NOTIFY = 4
NOTIFY_PEER_STATE = 1  # BCM_NOTIFY_PEER_STATE
NOTIFY_ID = 0  # the id bfdd gives notifications
SUBSCRIBE_ID = 1
RETRY = 0.2  # seconds between connection attempts (bfdd (re)starting)


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    id: int
    payload: bytes


def subscribe_request() -> bytes:
    """BMT_NOTIFY for peer state changes (the flags are read as a native uint64)."""
    flags = struct.pack("=Q", NOTIFY_PEER_STATE)
    return HEADER.pack(len(flags), SUBSCRIBE_ID, BMT_NOTIFY, VERSION) + flags


class Decoder:
    """Bytes from the socket in, whole messages out (a message may span reads)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            length, mid, mtype, _ver = HEADER.unpack_from(self._buf)
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(Message(mtype, mid, self._buf[HEADER.size:end].rstrip(b"\0")))
            self._buf = self._buf[end:]
        return out


def peer_state(msg: Message) -> tuple[str, str] | None:
    """A state notification as (peer address, up|down); None for anything else. Every state
    but up (down, init, adm-down) counts as down, as the `vtysh` poll reads them."""
    if msg.type != BMT_NOTIFY or msg.id != NOTIFY_ID:
        return None
    try:
        doc = json.loads(msg.payload.decode("utf-8", "replace"))
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("op") != "status" or "peer-address" not in doc:
        return None
    return str(doc["peer-address"]), "up" if doc.get("state") == "up" else "down"


def subscribed(msg: Message) -> bool:
    """bfdd's answer to our subscription: ok."""
    if msg.type != BMT_RESPONSE or msg.id != SUBSCRIBE_ID:
        return False
    try:
        return bool(json.loads(msg.payload.decode("utf-8", "replace")).get("status") == "ok")
    except (ValueError, AttributeError):
        return False


class Watcher:
    """Connects to bfdd's control socket (again after bfdd restarts), subscribes, and calls
    `on_state(peer, state)` per notification; `on_connected()` after every subscription, so
    the owner takes a fresh baseline (what changed while nobody listened is not replayed)."""

    def __init__(self, path: str, on_state: Callable[[str, str], None],
                 on_connected: Callable[[], None], log: object = None) -> None:
        self.path = path
        self.on_state = on_state
        self.on_connected = on_connected
        self.log = log
        self.connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._stop.is_set():
            self._thread.join(2.0)  # a stopped watcher ends within its read timeout
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bfdwatch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._session()
            self.connected = False
            self._stop.wait(RETRY)

    def _session(self) -> None:
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
            sock.connect(self.path)
            sock.sendall(subscribe_request())
            sock.settimeout(1.0)
            decoder = Decoder()
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return  # bfdd went away: reconnect
                for msg in decoder.feed(data):
                    self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if subscribed(msg):
            self.connected = True
            self.on_connected()
            return
        got = peer_state(msg)
        if got is not None:
            self.on_state(*got)
