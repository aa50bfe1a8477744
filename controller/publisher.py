"""Publishers: make the published node states equal the desired set. One adapter per medium.

A publisher is a whole-state adapter: it is handed every node's rendered state, writes the
ones whose content changed, removes the ones of nodes that left, and says what it did. The
static publisher writes `<state-dir>/nodes/<node>.json`; the Kubernetes publisher (a later
issue) applies NodeState resources with the same contract.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from controller.states import Rendered
from flatroute.errors import AdapterError

#: Above this many changed documents, one sync of the filesystem beats one fsync per file.
BATCH_SYNC_THRESHOLD = 8
#: Published documents are world-readable: speakers read them, maybe as another user.
FILE_MODE = 0o644
#: Prefix of a document being staged; never a node name (those do not start with a dot).
_STAGING = ".tmp-"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


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
    return _iso_second(math.floor(ts))


@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    # A batch's files mostly share a second: format each second once, not once per file.
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")


class FilePublisher:
    """`<state-dir>/nodes/<node>.json`, each written atomically and only when it changed.

    It remembers what it wrote (generation, file size and mtime) so a steady state costs one
    stat per node; anything it does not remember (after a restart) is compared by content,
    so restarting rewrites nothing.

    A batch is all or nothing up to the renames: every changed document is staged as
    `.tmp-<node>.json` next to its target, the data is made durable (one `sync` for a big
    batch, else an fsync per file), then all are renamed into place and the directory is
    fsynced. Any error removes what was staged. The staging names are fixed, so a crash
    leftover is found (and removed) by name; the size and mtime to remember are taken from
    the staged file's descriptor, which is the inode that is renamed into place.
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
        for name, doc in desired.items():
            _check_name(name)
            _check_name(doc.node)
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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(name))
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

    def _file(self, node: str) -> str:
        return f"{self.dir}/{node}.json"

    def _staging(self, node: str) -> str:
        return f"{self.dir}/{_STAGING}{node}.json"

    def _scan(self) -> dict[str, os.stat_result]:
        out: dict[str, os.stat_result] = {}
        with os.scandir(self.dir) as it:
            for entry in it:
                if entry.name.startswith(_STAGING):
                    # Left over by a crash between write and rename: never a published doc.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                elif entry.name.endswith(".json") and entry.is_file():
                    out[entry.name[:-5]] = entry.stat()
        return out

    def _is_current(self, name: str, doc: Rendered, st: os.stat_result | None) -> bool:
        if st is None:
            return False
        known = self._known.get(name)
        if known is not None and known[1:] == (st.st_size, st.st_mtime_ns):
            # The file is what we wrote: its generation says whether the text is the same
            # (a generation hashes the content), so a changed document is not read first.
            return known[0] == doc.generation
        # Not written by us in this process (or touched since): compare the bytes.
        data = doc.text.encode()
        if st.st_size != len(data):
            return False
        try:
            fd = os.open(self._file(name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                current = os.read(fd, len(data) + 1)  # one more: a file that grew differs
            finally:
                os.close(fd)
        except OSError:
            return False
        if current != data:
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
        batch = len(docs) > BATCH_SYNC_THRESHOLD
        staged: list[str] = []  # created staging files, in the order of docs
        stats: list[os.stat_result] = []
        renamed = 0
        try:
            for doc in docs:
                tmp = self._staging(doc.node)
                fd = _create(tmp)
                staged.append(tmp)
                try:
                    _write_all(fd, doc.text.encode())
                    st = os.fstat(fd)
                    if stat.S_IMODE(st.st_mode) != FILE_MODE:  # the umask took bits away
                        os.fchmod(fd, FILE_MODE)
                    if not batch:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                stats.append(st)
            if batch:
                os.sync()
            for doc, tmp, st in zip(docs, staged, stats, strict=True):
                os.replace(tmp, self._file(doc.node))
                renamed += 1
                self._remember(doc, st)
        finally:
            for tmp in staged[renamed:]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        _fsync_dir(self.dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(node: str) -> None:
    """A node's file must stay in the directory and never look like a staging file."""
    if not node or "/" in node or "\0" in node or node.startswith("."):
        raise AdapterError(f"refusing to publish a node state for node name {node!r}")


def _create(path: str) -> int:
    """Create a staging file; one left over by a crash is removed, never a reason to fail."""
    try:
        return os.open(path, _CREATE, FILE_MODE)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, _CREATE, FILE_MODE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
