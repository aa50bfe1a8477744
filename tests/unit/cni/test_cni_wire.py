"""The client <-> service framing (cni/wire.py) and the C client against a fake service; no root."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni import delqueue, install, wire
from cni.config import SUPPORTED_VERSIONS
from tests.netns_util import IN_CI


def reader_of(data: bytes) -> Callable[[int], bytes]:
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise wire.FrameError("connection closed mid-frame")
        pos += n
        return bytes(view[pos - n:pos])

    return read


envs = st.dictionaries(st.sampled_from(wire.NAMES),
                       st.text(st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\0"), max_size=30))


@given(envs, st.binary(max_size=200))
def test_request_round_trips(env: dict[str, str], stdin: bytes) -> None:
    frame = wire.encode_request(env, stdin)
    assert wire.decode_request(reader_of(frame)) == (env, stdin)
    for cut in range(len(frame)):  # every truncation is an error, never a wrong request
        with pytest.raises(wire.FrameError):
            wire.decode_request(reader_of(frame[:cut]))


@given(st.integers(0, 255), st.binary(max_size=200))
def test_response_round_trips(code: int, out: bytes) -> None:
    assert wire.decode_response(reader_of(wire.encode_response(code, out))) == (code, out)


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


@pytest.mark.parametrize("frame", [
    b"XXXX" + u32(0) + u32(0),
    wire.MAGIC + u32(wire.MAX_ENTRIES + 1),
    wire.MAGIC + u32(1) + u32(wire.MAX_ENTRY + 1),
    wire.MAGIC + u32(1) + u32(7) + b"PATH=/x" + u32(0),
    wire.MAGIC + u32(1) + u32(11) + b"CNI_COMMAND" + u32(0),  # no "="
    wire.MAGIC + u32(2) + (u32(15) + b"CNI_COMMAND=ADD") * 2 + u32(0),
    wire.MAGIC + u32(0) + u32(wire.MAX_BODY + 1),
], ids=["magic", "entries", "entry-size", "not-cni", "no-equals", "twice", "body-size"])
def test_bad_requests(frame: bytes) -> None:
    with pytest.raises(wire.FrameError):
        wire.decode_request(reader_of(frame + b"\0" * 64))


def test_reader_deadline_covers_the_whole_frame() -> None:
    a, b = socket.socketpair()
    with a, b:
        read = wire.reader(a, 0.3)
        b.sendall(b"FR")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            read(4)
        assert time.monotonic() - start < 2
        b.close()
        with pytest.raises((wire.FrameError, TimeoutError)):
            wire.reader(a, 1)(1)


# --- the C client against a fake service ---------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = install.c_compiler()
    if cc is None:
        if IN_CI:
            pytest.fail("no C compiler in CI")
        pytest.skip("needs cc")
    path = tmp_path_factory.mktemp("client") / "flatroute-cni"
    path.write_bytes(install.build_client(cc))
    path.chmod(0o755)
    return path


def fake_service(path: Path, answer: Callable[[socket.socket], None]) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def run_client(client: Path, sock: Path, stdin: bytes,
               **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(client)], input=stdin, capture_output=True, timeout=20,
                          check=False, env={"FLATROUTE_CNI_SOCKET": str(sock), "CNI_COMMAND": "ADD",
                               "CNI_IFNAME": "eth0", "UNRELATED": "x", **env})


def test_client_sends_the_request_and_relays_the_answer(client: Path, tmp_path: Path) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []
    stdin = b'{"cniVersion": "1.1.0"}' * 5000  # > one pipe buffer and one read chunk

    def answer(conn: socket.socket) -> None:
        seen.append(wire.decode_request(wire.reader(conn, 5)))
        conn.sendall(wire.encode_response(3, b'{"out": true}\n'))

    thread = fake_service(tmp_path / "s.sock", answer)
    proc = run_client(client, tmp_path / "s.sock", stdin, CNI_ARGS="a=b;c=d")
    thread.join(5)
    assert (proc.returncode, proc.stdout) == (3, b'{"out": true}\n')
    assert seen == [({"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_ARGS": "a=b;c=d"},
                     stdin)]


@pytest.mark.parametrize("reply", [b"", b"FRC1\0\0", b"NOPE" + b"\0" * 8,
                                   wire.MAGIC + u32(0) + u32(wire.MAX_BODY + 1),
                                   wire.MAGIC + u32(0) + u32(10) + b"short"],
                         ids=["eof", "short-header", "magic", "too-long", "truncated"])
def test_client_reports_a_broken_answer(client: Path, tmp_path: Path, reply: bytes) -> None:
    def answer(conn: socket.socket) -> None:
        wire.decode_request(wire.reader(conn, 5))
        conn.sendall(reply)

    thread = fake_service(tmp_path / "s.sock", answer)
    proc = run_client(client, tmp_path / "s.sock", b"{}")
    thread.join(5)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 11


def test_client_without_a_service_needs_no_python(client: Path, tmp_path: Path) -> None:
    """No service: nothing is exec'd; ADD, CHECK, GC 11; STATUS 50; VERSION answered; DEL
    written to the deletion queue as the exact frame the service would have got."""
    queue = tmp_path / "q" / "deep"  # created on demand, parents too
    for verb, code in (("ADD", 11), ("CHECK", 11), ("GC", 11), ("STATUS", 50), ("", 11)):
        proc = run_client(client, tmp_path / "absent.sock", b"{}", CNI_COMMAND=verb,
                          FLATROUTE_CNI_DELETE_QUEUE=str(queue), PATH="/nonexistent")
        err = json.loads(proc.stdout)
        assert (proc.returncode, err["code"]) == (1, code), (verb, err)
        assert str(tmp_path / "absent.sock") in err["msg"] and "not running" in err["msg"]
    proc = run_client(client, tmp_path / "absent.sock", b"", CNI_COMMAND="VERSION")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["supportedVersions"] == list(SUPPORTED_VERSIONS)
    assert not queue.exists()
    stdin = b'{"cniVersion": "1.1.0", "name": "n"}'
    proc = run_client(client, tmp_path / "absent.sock", stdin, CNI_COMMAND="DEL",
                      CNI_CONTAINERID="c1", FLATROUTE_CNI_DELETE_QUEUE=str(queue))
    assert (proc.returncode, proc.stdout) == (0, b"")
    (entry,) = delqueue.pending(str(queue))
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(queue).st_mode) == 0o700
    assert delqueue.load(entry) == ({"CNI_COMMAND": "DEL", "CNI_IFNAME": "eth0",
                                     "CNI_CONTAINERID": "c1"}, stdin)
    # A queue it cannot write: DEL fails with try again, so the runtime retries it.
    (tmp_path / "file").write_text("")
    proc = run_client(client, tmp_path / "absent.sock", stdin, CNI_COMMAND="DEL",
                      FLATROUTE_CNI_DELETE_QUEUE=str(tmp_path / "file" / "q"))
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 11


def test_client_error_messages_are_json_whatever_the_path(client: Path, tmp_path: Path) -> None:
    odd = tmp_path / 'a"b\\c\td'
    proc = run_client(client, odd, b"{}")
    assert str(odd) in json.loads(proc.stdout)["msg"]


def test_install_without_a_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "c_compiler", lambda: None)
    notes: list[str] = []
    paths = install.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), note=notes.append)
    launcher = (tmp_path / "bin" / "flatroute-cni-py").read_text()
    assert (tmp_path / "bin" / "flatroute-cni").read_text() == launcher
    assert len(paths) == 3 and len(notes) == 1 and "gcc" in notes[0]
    assert len(install.uninstall(str(tmp_path / "bin"), str(tmp_path / "net.d"))) == 3


@pytest.mark.usefixtures("client")  # skips (or fails in CI) without cc
def test_install_builds_the_client(tmp_path: Path) -> None:
    install.install(str(tmp_path / "bin"), str(tmp_path / "net.d"))
    built = (tmp_path / "bin" / "flatroute-cni").read_bytes()
    assert install.is_static_client(built)  # no interpreter, no shared library from the host
    assert not install.is_static_client((tmp_path / "bin" / "flatroute-cni-py").read_bytes())
    assert install.MARKER in (tmp_path / "bin" / "flatroute-cni-py").read_text()
    assert len(install.uninstall(str(tmp_path / "bin"), str(tmp_path / "net.d"))) == 3
    assert list((tmp_path / "bin").iterdir()) == []


@pytest.mark.usefixtures("client")
def test_install_a_prebuilt_client_without_the_python_plugin(tmp_path: Path) -> None:
    """The image's way: `cni build-client` once, then `install --client-binary` on each node,
    with no Python plugin on a host that has no Python."""
    built = tmp_path / "built"
    assert install.main(["build-client", "--output", str(built)]) == 0
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    assert install.main(["install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir),
                         "--client-binary", str(built), "--no-python-plugin"]) == 0
    assert sorted(p.name for p in bin_dir.iterdir()) == ["flatroute-cni"]
    assert (bin_dir / "flatroute-cni").read_bytes() == built.read_bytes()
    assert install.main(["install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir),
                         "--client-binary", "/bin/ls"]) == 1  # dynamic: refused
    assert len(install.uninstall(str(bin_dir), str(conf_dir))) == 2


def test_is_static_client_tells_a_dynamic_binary() -> None:
    assert not install.is_static_client(Path("/bin/ls").read_bytes())
    assert not install.is_static_client(b"#!/bin/sh\n")
