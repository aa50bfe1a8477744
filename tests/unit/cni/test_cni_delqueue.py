"""The deletion queue's drain (cni/delqueue.py) without root: which entries run, stay or go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cni import delqueue, wire


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    info = warning = error = _add


def entry(queue: Path, name: str, command: str = "DEL", cid: str = "c1") -> Path:
    queue.mkdir(exist_ok=True)
    path = queue / name
    path.write_bytes(wire.encode_request({"CNI_COMMAND": command, "CNI_CONTAINERID": cid,
                                          "CNI_IFNAME": "eth0"}, b'{"name": "n"}'))
    return path


def test_drain_runs_oldest_first_and_sorts_out_the_results(tmp_path: Path) -> None:
    queue = tmp_path / "q"
    entry(queue, "000000000003.000000000-1.del", cid="busy")
    entry(queue, "000000000001.000000000-1.del", cid="ok")
    entry(queue, "000000000002.000000000-1.del", cid="bad")
    entry(queue, "000000000004.000000000-1.del", command="ADD")
    (queue / "000000000005.000000000-1.del").write_bytes(b"FRC1\0\0")  # cut short
    (queue / ".tmp-5-1").write_bytes(b"half")  # still being written: not an entry
    ran: list[str] = []
    answers = {"ok": (0, None), "bad": (1, 7), "busy": (1, 11)}

    def run(env: dict[str, str], stdin: bytes) -> tuple[int, int | None]:
        assert stdin == b'{"name": "n"}'
        ran.append(env["CNI_CONTAINERID"])
        return answers[env["CNI_CONTAINERID"]]

    log = Log()
    assert delqueue.drain(str(queue), run, log) == 1
    assert ran == ["ok", "bad", "busy"]
    assert sorted(p.name for p in queue.iterdir()) == [
        ".tmp-5-1", "000000000002.000000000-1.del.failed", "000000000003.000000000-1.del",
        "000000000004.000000000-1.del.failed", "000000000005.000000000-1.del.failed"]
    assert [e for e, _ in log.events] == [
        "cni_queued_delete", "cni_queued_delete_failed", "cni_queued_delete_retry",
        "cni_queued_delete_refused", "cni_queued_delete_refused"]
    answers["busy"] = (0, None)
    assert delqueue.drain(str(queue), run, log) == 0  # the retry, and nothing else again
    assert ran[-1] == "busy" and len(ran) == 4


def test_no_queue_directory_is_an_empty_queue(tmp_path: Path) -> None:
    assert delqueue.pending(str(tmp_path / "absent")) == []
    assert delqueue.drain(str(tmp_path / "absent"), lambda *_: (0, None), Log()) == 0
