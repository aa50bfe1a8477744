"""The lab's one adapter to the host: namespaces, links, sysctls and processes via iproute2.

Everything the lab does to the machine goes through here, as `ip` commands (batched per
namespace) and `ip netns exec` for processes, so it is easy to read and to undo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from flatroute.errors import AdapterError


class HostError(AdapterError):
    """A host command failed."""


def run(cmd: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise HostError(f"{cmd[0]}: not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{' '.join(cmd)}: timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise HostError(f"{' '.join(cmd[:6])}: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc


def netns_list() -> set[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_add(names: Iterable[str]) -> None:
    lines = "".join(f"netns add {n}\n" for n in names)
    if lines:
        run(["ip", "-batch", "-"], input=lines)


def ip_batch(ns: str | None, lines: Iterable[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    cmd = ["ip", "-batch", "-"] if ns is None else ["ip", "-n", ns, "-batch", "-"]
    run(cmd, input=text)


def in_ns(ns: str, cmd: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def sysctl(ns: str, values: dict[str, str]) -> None:
    args = [f"{k}={v}" for k, v in values.items()]
    run(in_ns(ns, ["sysctl", "-q", "-w", *args]))


def spawn(ns: str | None, cmd: Sequence[str], log: Path,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a long-running process (in a namespace), detached, output to `log`."""
    full = in_ns(ns, cmd) if ns else list(cmd)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                env={**os.environ, **(env or {})})
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pids: Iterable[int], *, grace: float = 2.0) -> None:
    """SIGTERM, wait up to `grace`, then SIGKILL what is left."""
    pids = [p for p in pids if p > 1]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children, if any are ours
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def ns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def netns_del(names: Iterable[str]) -> None:
    for name in names:
        run(["ip", "netns", "del", name], check=False)


def umount(path: Path) -> None:
    if os.path.ismount(path):
        run(["umount", "-l", str(path)], check=False)
