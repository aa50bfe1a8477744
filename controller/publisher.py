"""Publishers: make the published node states equal the desired set. One adapter per medium.

A publisher is a whole-state adapter: it is handed every node's rendered state, writes the
ones whose content changed, removes the ones of nodes that left, and says what it did. The
static publisher writes `<state-dir>/nodes/<node>.json`; the Kubernetes publisher (a later
issue) applies NodeState resources with the same contract.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from controller.states import Rendered
from flatroute.errors import AdapterError

#: Above this many changed documents, one sync of the filesystem beats one fsync per file.
BATCH_SYNC_THRESHOLD = 8


@dataclass(frozen=True, slots=True)
class Published:
    generation: str
    published_at: str  # ISO 8601, UTC: when this generation was written


@dataclass(frozen=True, slots=True)
class PublishResult:
    written: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    #: what is published now, per node
    published: dict[str, Published] = field(default_factory=dict)


class Publisher(Protocol):
    def describe(self) -> str:
        """Where documents go, for logs and status."""
        ...

    def publish(self, desired: Mapping[str, Rendered],
                keep: Collection[str] = ()) -> PublishResult:
        """Publish exactly `desired`; nodes in `keep` keep whatever they have (held back)."""
        ...


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class FilePublisher:
    """`<state-dir>/nodes/<node>.json`, each written atomically and only when it changed.

    It remembers what it wrote (generation, file size and mtime) so a steady state costs one
    stat per node; anything it does not remember (after a restart) is compared by content,
    so restarting rewrites nothing.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir) / "nodes"
        self._known: dict[str, tuple[str, int, int]] = {}  # node -> (generation, size, mtime)
        self._published: dict[str, Published] = {}

    def describe(self) -> str:
        return str(self.dir)

    def path(self, node: str) -> Path:
        return self.dir / f"{node}.json"

    def publish(self, desired: Mapping[str, Rendered],
                keep: Collection[str] = ()) -> PublishResult:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            return self._publish(desired, keep)
        except OSError as exc:
            raise AdapterError(f"{self.dir}: cannot publish node states: {exc}") from exc

    def _publish(self, desired: Mapping[str, Rendered], keep: Collection[str]) -> PublishResult:
        on_disk = self._scan()
        changed: list[Rendered] = []
        unchanged = 0
        for name, doc in desired.items():
            if self._is_current(name, doc, on_disk.get(name)):
                unchanged += 1
            else:
                changed.append(doc)
        self._write(changed)
        removed = []
        for name in sorted(set(on_disk) - set(desired) - set(keep)):
            self.path(name).unlink(missing_ok=True)
            self._known.pop(name, None)
            self._published.pop(name, None)
            removed.append(name)
        if removed:
            _fsync_dir(self.dir)
        published = {n: p for n, p in self._published.items()
                     if n in desired or (n in keep and n in on_disk)}
        self._published = published
        return PublishResult(tuple(d.node for d in changed), tuple(removed), unchanged,
                             dict(published))

    def _scan(self) -> dict[str, os.stat_result]:
        out: dict[str, os.stat_result] = {}
        with os.scandir(self.dir) as it:
            for entry in it:
                if entry.name.startswith(".tmp-"):
                    # Left over by a crash between write and rename: never a published doc.
                    Path(entry.path).unlink(missing_ok=True)
                elif entry.name.endswith(".json") and entry.is_file():
                    out[entry.name[:-5]] = entry.stat()
        return out

    def _is_current(self, name: str, doc: Rendered, st: os.stat_result | None) -> bool:
        if st is None:
            return False
        known = self._known.get(name)
        if known is not None and known == (doc.generation, st.st_size, st.st_mtime_ns):
            return True
        # Not written by us in this process (or touched since): compare the bytes.
        if st.st_size != len(doc.text.encode()):
            return False
        try:
            current = self.path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        if current != doc.text:
            return False
        self._remember(doc, st)
        return True

    def _remember(self, doc: Rendered, st: os.stat_result) -> None:
        self._known[doc.node] = (doc.generation, st.st_size, st.st_mtime_ns)
        self._published[doc.node] = Published(doc.generation, _iso(st.st_mtime))

    def _write(self, docs: list[Rendered]) -> None:
        """Stage every document, make the data durable, then rename them all into place."""
        if not docs:
            return
        staged: list[tuple[Rendered, str]] = []
        batch = len(docs) > BATCH_SYNC_THRESHOLD
        try:
            for doc in docs:
                fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
                staged.append((doc, tmp))
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(doc.text)
                    if not batch:
                        fh.flush()
                        os.fsync(fh.fileno())
            if batch:
                os.sync()
            for doc, tmp in staged:
                os.chmod(tmp, 0o644)
                target = self.path(doc.node)
                os.replace(tmp, target)
                self._remember(doc, target.stat())
            staged = []
        finally:
            for _, tmp in staged:
                Path(tmp).unlink(missing_ok=True)
        _fsync_dir(self.dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
