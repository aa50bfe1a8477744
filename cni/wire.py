"""The framing between the exec'd C client (cni/client/flatroute-cni.c) and `flatroute cni serve`.

Every integer is a u32, big-endian:

    request  = "FRC1" count { len "NAME=value" } * count  len stdin-bytes
    response = "FRC1" exit-code len stdout-bytes

NAME is one of the CNI_* variables the plugin reads (`NAMES`); each at most once. The limits
(`MAX_ENTRIES`, `MAX_ENTRY`, `MAX_BODY`) bound what a peer can make the other side allocate.
The client connects, sends one request and reads one response; the connection then closes.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

MAGIC = b"FRC1"
NAMES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
MAX_ENTRIES = len(NAMES)
MAX_ENTRY = 1 << 20  # the kernel caps one environment string at 128 KiB anyway
MAX_BODY = 16 << 20  # stdin (network config, prevResult) and stdout


class FrameError(ValueError):
    """The peer sent something that is not a well-formed frame (or stopped mid-frame)."""


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def encode_request(env: Mapping[str, str], stdin: bytes) -> bytes:
    parts = [MAGIC, _u32(len(env))]
    for name, value in env.items():
        entry = os.fsencode(f"{name}={value}")
        parts += [_u32(len(entry)), entry]
    parts += [_u32(len(stdin)), stdin]
    return b"".join(parts)


def encode_response(code: int, stdout: bytes) -> bytes:
    return MAGIC + _u32(code) + _u32(len(stdout)) + stdout


def decode_request(read: Callable[[int], bytes]) -> tuple[dict[str, str], bytes]:
    """Parse one request from `read(n)`, which returns exactly n bytes or raises."""
    if read(4) != MAGIC:
        raise FrameError("bad magic: not a flatroute-cni request")
    count = int.from_bytes(read(4), "big")
    if count > MAX_ENTRIES:
        raise FrameError(f"{count} environment entries (at most {MAX_ENTRIES})")
    env: dict[str, str] = {}
    for _ in range(count):
        size = int.from_bytes(read(4), "big")
        if size > MAX_ENTRY:
            raise FrameError(f"environment entry of {size} bytes (at most {MAX_ENTRY})")
        name, sep, value = os.fsdecode(read(size)).partition("=")
        if not sep or name not in NAMES:
            raise FrameError(f"unexpected environment entry {name[:40]!r}")
        if name in env:
            raise FrameError(f"{name} sent twice")
        env[name] = value
    size = int.from_bytes(read(4), "big")
    if size > MAX_BODY:
        raise FrameError(f"stdin of {size} bytes (at most {MAX_BODY})")
    return env, read(size)


def decode_response(read: Callable[[int], bytes]) -> tuple[int, bytes]:
    if read(4) != MAGIC:
        raise FrameError("bad magic: not a flatroute-cni response")
    code = int.from_bytes(read(4), "big")
    size = int.from_bytes(read(4), "big")
    if code > 255 or size > MAX_BODY:
        raise FrameError(f"exit code {code} or stdout of {size} bytes out of range")
    return code, read(size)


def reader(sock: socket.socket, timeout: float) -> Callable[[int], bytes]:
    """`read(n)` on a socket: exactly n bytes within `timeout` seconds in all (a peer that
    trickles bytes cannot hold us longer), FrameError on EOF, TimeoutError when late."""
    deadline = time.monotonic() + timeout

    def read(n: int) -> bytes:
        chunks: list[bytes] = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request not complete within {timeout:g}s")
            sock.settimeout(left)
            chunk = sock.recv(min(n, 1 << 20))
            if not chunk:
                raise FrameError("connection closed mid-frame")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    return read
