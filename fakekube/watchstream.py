"""Watch streaming: a watch request answered as a chunked HTTP stream of events, with
bookmarks, ended by its timeout, an error (410 Gone), a restart of the fake or the client
going away."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from fakekube.errors import ApiError
from fakekube.objects import Obj
from fakekube.resources import ResourceType
from fakekube.watches import WatchClosed, Watcher

if TYPE_CHECKING:
    from fakekube.routes import FakeHTTPServer, RequestRecord

POLL = 0.1  # how often an idle watch checks for a vanished client or a stopping server


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class WatchStreamHandler(BaseHTTPRequestHandler):
    """The watch half of the fake's request handler (routes.Handler is the rest)."""

    server: FakeHTTPServer

    def _chunk(self, payload: Obj | None) -> None:
        if payload is None:
            self.wfile.write(b"0\r\n\r\n")
        else:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
    def _watch(self, rt: ResourceType, namespace: str | None, query: dict[str, str],
               labels: Any, fields: Any, record: RequestRecord) -> None:
        """Answer a watch request: a chunked stream of events, ended by a timeout, an error,
        a restart of the fake or the client going away."""
        fake = self.server.fake
        bookmarks = truthy(query.get("allowWatchBookmarks"))
        initial = truthy(query.get("sendInitialEvents"))
        if initial and (not bookmarks or query.get("resourceVersionMatch") != "NotOlderThan"):
            raise ApiError(422, "sendInitialEvents requires allowWatchBookmarks=true and "
                                "resourceVersionMatch=NotOlderThan", reason="Invalid")
        watcher = fake.store.watch(rt, namespace, labels, fields, query.get("resourceVersion"),
                                   initial)
        timeout = fake.watch_timeout
        if query.get("timeoutSeconds", "").isdigit():
            timeout = float(query["timeoutSeconds"])
        record.status = 200
        fake._log(record)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        fake._watch_count(+1)
        try:
            if self._pump(watcher, rt, timeout, initial, bookmarks):
                self._chunk(None)
        except OSError:
            self.close_connection = True
        finally:
            fake._watch_count(-1)

    def _pump(self, watcher: Watcher, rt: ResourceType, timeout: float, initial: bool,
              bookmarks: bool) -> bool:
        """Stream events and bookmarks; True when the stream should end with its last chunk
        (timeout, error, clean restart), False when the connection is cut or the client left."""
        fake = self.server.fake
        start = last_bookmark = time.monotonic()
        while True:
            remaining = start + timeout - time.monotonic()
            if remaining <= 0:
                return True
            try:
                events = watcher.next(min(remaining, POLL))
            except ApiError as exc:
                self._chunk({"type": "ERROR", "object": exc.status()})
                return True
            except WatchClosed:
                self.close_connection = True
                if fake._abrupt:
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return False
                return True
            for kind, obj in events:
                self._chunk({"type": kind, "object": obj})
            if initial:
                initial = False
                self._chunk({"type": "BOOKMARK", "object": self._bookmark(
                    rt, watcher.cursor, {"k8s.io/initial-events-end": "true"})})
                last_bookmark = time.monotonic()
            if bookmarks and time.monotonic() - last_bookmark >= fake.bookmark_interval:
                self._chunk({"type": "BOOKMARK", "object": self._bookmark(rt, watcher.cursor)})
                last_bookmark = time.monotonic()
            if not events and self._client_gone():
                self.close_connection = True
                return False

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, annotations: dict[str, str] | None = None) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

