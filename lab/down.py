"""`flatroute lab down`: remove everything the lab made, and only that. Idempotent; also
cleans up after a crashed `lab up` (everything is recorded before it is made)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from lab import host
from lab.state import DEFAULT_ROOT, lab_dir, load


def down(prefix: str, *, say: Callable[[str], None], root: Path = DEFAULT_ROOT) -> int:
    """Return how many namespaces were removed."""
    state = load(prefix, root)
    directory = lab_dir(prefix, root)
    namespaces = list(state.namespaces) if state else []
    # Namespaces named by this prefix that a crash left unrecorded are ours too: the lab
    # is the only thing that names namespaces `<prefix>-<fabric name>` under its lab dir.
    if state is not None or directory.exists():
        namespaces += [n for n in host.netns_list()
                       if n.startswith(f"{prefix}-") and n not in namespaces]
    existing = host.netns_list()
    namespaces = [n for n in namespaces if n in existing]
    pids: list[int] = []
    if state is not None:
        pids += [p.pid for p in state.processes if p.ns is None]
    for ns in namespaces:
        pids += host.ns_pids(ns)
    if state is not None:
        pids += [p.pid for p in state.processes if host.alive(p.pid)]
    if pids:
        say(f"stopping {len(set(pids))} processes")
        host.kill(sorted(set(pids)))
    if namespaces:
        say(f"removing {len(namespaces)} namespaces")
        host.netns_del(reversed(namespaces))
    if state is not None and state.bpffs:
        # every pin of the lab's eBPF datapaths; the filters went with the namespaces
        host.umount(Path(state.bpffs))
    if directory.exists():
        host.umount(directory / "bpf")
        shutil.rmtree(directory, ignore_errors=True)
    return len(namespaces)
