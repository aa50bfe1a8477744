"""FilePublisher: staging, crash leftovers, failures mid-batch, restarts, removals, names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from controller.publisher import BATCH_SYNC_THRESHOLD, FilePublisher
from controller.states import Rendered
from flatroute.errors import AdapterError

BIG = BATCH_SYNC_THRESHOLD + 4  # a batch: one sync, not an fsync per file


def doc(node: str, version: int = 1, extra: str = "") -> Rendered:
    text = f'{{"kind": "NodeState", "node": "{node}", "v": {version}{extra}}}\n'
    return Rendered(node=node, site="s1", rack="r1", text=text, generation=f"{node}-{version}")


def docs(n: int, version: int = 1) -> dict[str, Rendered]:
    return {f"n{i}": doc(f"n{i}", version) for i in range(n)}


def staging(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "nodes").iterdir() if p.name.startswith("."))


def on_disk(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8")
            for p in sorted((state / "nodes").glob("*.json"))}


def stamps(state: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (state / "nodes").glob("*.json")}


@pytest.fixture(autouse=True)
def no_global_sync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`os.sync` flushes the whole machine: count the calls instead."""
    calls: list[int] = []
    monkeypatch.setattr(os, "sync", lambda: calls.append(1))
    return calls


@pytest.mark.parametrize("n", [1, BIG])
def test_publishes_exact_bytes_world_readable(tmp_path: Path, n: int,
                                              no_global_sync: list[int]) -> None:
    want = docs(n)
    want["n0"] = doc("n0", extra=', "name": "nœud-ü"')  # non-ASCII: bytes, not characters
    old = os.umask(0o077)
    try:
        res = FilePublisher(tmp_path).publish(want)
    finally:
        os.umask(old)
    assert sorted(res.written) == sorted(want)
    assert on_disk(tmp_path) == {name: d.text for name, d in want.items()}
    for p in (tmp_path / "nodes").iterdir():
        assert p.stat().st_mode & 0o777 == 0o644
    assert staging(tmp_path) == []
    assert len(no_global_sync) == (1 if n > BATCH_SYNC_THRESHOLD else 0)
    assert set(res.published) == set(want)
    assert res.published["n0"].generation == "n0-1"


def test_small_batch_fsyncs_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      no_global_sync: list[int]) -> None:
    fsynced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(fd), real(fd))[1])
    FilePublisher(tmp_path).publish(docs(3))
    assert no_global_sync == []
    assert len(fsynced) == 3 + 1  # each document, then the directory


def test_crash_leftovers_are_removed_and_do_not_block(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    # What a crash between staging and renaming leaves: ours, and the older random names.
    (nodes / ".tmp-n1.json").write_text("half a docu")
    (nodes / ".tmp-k2j3h4.json").write_text("{}")
    res = FilePublisher(tmp_path).publish(docs(BIG))
    assert len(res.written) == BIG
    assert staging(tmp_path) == []
    assert on_disk(tmp_path)["n1"] == doc("n1").text


def test_leftover_appearing_after_the_scan_is_replaced(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a staging file the scan did not see (O_EXCL fails) is removed and retried."""
    pub = FilePublisher(tmp_path)
    scan = pub._scan

    def scan_then_crash_leftover() -> dict[str, os.stat_result]:
        out = scan()
        (tmp_path / "nodes" / ".tmp-n2.json").write_text("stale, and longer than the document")
        return out

    monkeypatch.setattr(pub, "_scan", scan_then_crash_leftover)
    res = pub.publish(docs(3))
    assert sorted(res.written) == ["n0", "n1", "n2"]
    assert on_disk(tmp_path)["n2"] == doc("n2").text
    assert staging(tmp_path) == []


@pytest.mark.parametrize("n", [4, BIG])
def test_rename_failure_mid_batch_leaves_no_staging_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    pub = FilePublisher(tmp_path)
    real = os.replace
    calls: list[Any] = []

    def third_fails(src: Any, dst: Any) -> None:
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", third_fails)
    with pytest.raises(AdapterError, match="No space left"):
        pub.publish(docs(n))
    assert staging(tmp_path) == []
    assert len(on_disk(tmp_path)) == 2  # renamed before the failure: whole documents
    monkeypatch.setattr(os, "replace", real)
    res = pub.publish(docs(n))  # the next cycle finishes the job
    assert len(res.written) == n - 2 and res.unchanged == 2
    assert on_disk(tmp_path) == {name: d.text for name, d in docs(n).items()}


@pytest.mark.parametrize("n", [4, BIG])
def test_staging_failure_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           n: int) -> None:
    pub = FilePublisher(tmp_path)
    pub.publish(docs(n, version=1))
    before = on_disk(tmp_path)
    real = os.write
    calls: list[int] = []

    def third_fails(fd: int, data: Any) -> int:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        return real(fd, data)

    monkeypatch.setattr(os, "write", third_fails)
    with pytest.raises(AdapterError, match="Input/output error"):
        pub.publish(docs(n, version=2))
    assert staging(tmp_path) == []
    assert on_disk(tmp_path) == before  # all or nothing: no document of version 2


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data)[:7]))
    FilePublisher(tmp_path).publish(docs(2))
    assert on_disk(tmp_path) == {name: d.text for name, d in docs(2).items()}


def test_restart_rewrites_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = docs(BIG)
    want["n0"] = doc("n0", extra=', "name": "nœud"')
    first = FilePublisher(tmp_path).publish(want)
    before = stamps(tmp_path)

    def no_writes(*_: Any) -> None:
        raise AssertionError("a restart must not write")

    monkeypatch.setattr(os, "replace", no_writes)
    again = FilePublisher(tmp_path).publish(want)  # a new process: compares by content
    assert again.written == () and again.removed == () and again.unchanged == len(want)
    assert again.published == first.published
    assert stamps(tmp_path) == before


def test_steady_state_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pub = FilePublisher(tmp_path)
    pub.publish(docs(3))

    def no_reads(*_: Any) -> None:
        raise AssertionError("what this publisher wrote needs no content comparison")

    monkeypatch.setattr(os, "read", no_reads)
    res = pub.publish(docs(3))
    assert res.written == () and res.unchanged == 3


def test_changed_on_disk_is_rewritten(tmp_path: Path) -> None:
    pub = FilePublisher(tmp_path)
    pub.publish(docs(3))
    path = pub.path("n1")
    text = path.read_text()
    path.write_text(text.replace("1", "9"))  # same size, other bytes, another mtime
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    res = pub.publish(docs(3))
    assert res.written == ("n1",)
    assert path.read_text() == text


def test_removed_node_file_is_deleted_and_kept_node_is_not(tmp_path: Path) -> None:
    pub = FilePublisher(tmp_path)
    pub.publish(docs(4))
    res = pub.publish({n: d for n, d in docs(4).items() if n not in ("n1", "n2")}, keep={"n2"})
    assert res.removed == ("n1",)
    assert sorted(on_disk(tmp_path)) == ["n0", "n2", "n3"]
    assert set(res.published) == {"n0", "n2", "n3"}
    res = FilePublisher(tmp_path).publish({"n0": doc("n0")})  # and after a restart
    assert sorted(res.removed) == ["n2", "n3"]
    assert sorted(on_disk(tmp_path)) == ["n0"]


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", ".hidden", ".tmp-n1", "", "n\0"])
def test_names_that_could_escape_are_refused(tmp_path: Path, name: str) -> None:
    pub = FilePublisher(tmp_path / "state")
    with pytest.raises(AdapterError, match="node name"):
        pub.publish({"n0": doc("n0"), name: doc(name)})
    with pytest.raises(AdapterError, match="node name"):
        pub.publish({"n0": doc(name)})  # the document's own name counts too
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []



def test_changed_document_is_written_without_reading_the_old(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pub = FilePublisher(tmp_path)
    pub.publish(docs(BIG, version=1))

    def no_reads(*_: Any) -> None:
        raise AssertionError("a file this publisher wrote is known by its generation")

    monkeypatch.setattr(os, "read", no_reads)
    res = pub.publish(docs(BIG, version=2))  # same sizes: only the generation tells
    assert len(res.written) == BIG
    assert on_disk(tmp_path) == {name: d.text for name, d in docs(BIG, version=2).items()}
