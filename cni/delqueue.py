"""The deletion queue: DELs the C client recorded while `flatroute cni serve` was down.

A runtime's DEL must succeed even when the service is not running (a node being drained, the
speaker pod restarting), or the runtime retries it for ever and the pod never goes away. The
client (cni/client/flatroute-cni.c) then writes its request frame (cni/wire.py, exactly what it
would have sent) to `<dir>/<seconds>.<nanoseconds>-<pid>.del`, under a temporary name first,
synced, and exits 0. The runtime removes the pod's network namespace, which takes the veth pair
and its routes with it; what is left is IPAM state (reservations, the attachment record) and,
should the namespace outlive the DEL, the veth. The service runs every entry, oldest first,
through the same verb code as a live request, before it answers its first request and again
once a second while it runs, so an entry written while it started is not missed:
- exit 0: done, the entry is removed;
- error 11 (try again, e.g. the IPAM lock is busy): kept for the next pass;
- anything else, or an entry that is not a well-formed DEL frame owned by root: renamed to
  `.failed` and logged, kept for a human (GC removes what the DEL would have).
"""

from __future__ import annotations

import contextlib
import os
import stat

from cni import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DEFAULT_DIR = "/var/lib/cni/flatroute-delete-queue"  # compiled into the client by install
SUFFIX = ".del"
FAILED = ".failed"
TRY_AGAIN = 11
MAX_ENTRY = wire.MAX_BODY + 8 * wire.MAX_ENTRY  # the largest frame a client can build


class EntryError(ValueError):
    """A queue entry the service will not run: not ours, not a DEL, or not a frame."""


def pending(directory: str) -> list[str]:
    """The entries' paths, oldest first (the names sort by time); none if there is no queue."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names)
            if n.endswith(SUFFIX) and not n.startswith(".")]


def load(path: str) -> tuple[dict[str, str], bytes]:
    """The entry's environment and stdin; EntryError unless it is root's own DEL frame."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
            raise EntryError("not a regular file owned by root")
        if st.st_size > MAX_ENTRY:
            raise EntryError(f"{st.st_size} bytes: larger than any request")
        data = b""
        while chunk := os.read(fd, 1 << 20):
            data += chunk
    finally:
        os.close(fd)
    offset = 0

    def read(n: int) -> bytes:
        nonlocal offset
        if offset + n > len(data):
            raise wire.FrameError("entry ends mid-frame")
        offset += n
        return data[offset - n:offset]

    try:
        env, stdin = wire.decode_request(read)
    except wire.FrameError as exc:
        raise EntryError(str(exc)) from None
    if env.get("CNI_COMMAND") != "DEL":
        raise EntryError(f"CNI_COMMAND is {env.get('CNI_COMMAND')!r}, not DEL")
    return env, stdin


def drain(directory: str, run: Callable[[dict[str, str], bytes], tuple[int, int | None]],
          log: Any) -> int:
    """Run every pending entry with `run(env, stdin) -> (exit, cni_code)`; return how many
    are still pending (kept to try again)."""
    kept = 0
    for path in pending(directory):
        entry = os.path.basename(path)
        try:
            env, stdin = load(path)
        except FileNotFoundError:
            continue  # another pass (a second service on another socket) took it
        except (EntryError, OSError) as exc:
            log.error("cni_queued_delete_refused", entry=entry, error=str(exc))
            _set_aside(path)
            continue
        code, cni_code = run(env, stdin)
        fields = {"entry": entry, "container_id": env.get("CNI_CONTAINERID", ""),
                  "ifname": env.get("CNI_IFNAME", ""), "exit": code}
        if code == 0:
            os.unlink(path)
            log.info("cni_queued_delete", **fields)
        elif cni_code == TRY_AGAIN:
            kept += 1
            log.warning("cni_queued_delete_retry", code=cni_code, **fields)
        else:
            _set_aside(path)
            log.error("cni_queued_delete_failed", code=cni_code, **fields)
    return kept


def _set_aside(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, path + FAILED)
