"""Controller at scale: plan and publish 5,000 nodes in 50 sites, restart, add one node.

Runs the real reconciler (planner, state builder, file publisher, ledger, record) on a
temporary state directory, with an in-memory inventory (fabric parsing is timed apart: it is
the loader's cost, paid once per fabric edit). For each step it reports the wall time, the
node states written / removed / rendered, and the process's peak RSS so far.

    python bench/controller_scale.py [--sites 50] [--nodes-per-site 100] [--scope site]
        [--node-scope-sites 10 --node-scope-nodes-per-site 50]   # also a node-scope run

Goals (issue 4): full plan+publish < 2 s; adding one node rewrites only that node's state
(plus the nodes whose routes really change: none with scope site, every node of every other
site with scope node).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fabricgen import generate

from controller.inventory import Snapshot
from controller.publisher import FilePublisher
from controller.reconciler import CycleResult, Reconciler
from flatroute.fabric import Fabric, parse_fabric


class MemoryInventory:
    """An Inventory whose snapshot the benchmark sets directly."""

    def __init__(self, fabric: Fabric) -> None:
        self.snap = Snapshot(fabric, "<bench>", "0")

    def describe(self) -> str:
        return "<bench>"

    def snapshot(self) -> Snapshot:
        return self.snap

    def changed(self) -> bool:
        return False

    def set(self, fabric: Fabric, digest: str) -> None:
        self.snap = Snapshot(fabric, "<bench>", digest)


class Quiet:
    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: None


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(label: str, ctl: Reconciler) -> tuple[CycleResult, float]:
    """One reconcile cycle; its wall time covers everything the cycle does (plan, ledger,
    render, publish, record), not only the plan and publish phases it reports apart."""
    gc.collect()
    t0 = time.perf_counter()
    r = ctl.reconcile()
    dt = time.perf_counter() - t0
    assert r.ok and not r.problems, (r.error, r.problems[:3])
    print(f"  {label:<34} {dt:7.3f} s  (plan {r.plan_seconds:.3f} s, publish "
          f"{r.publish_seconds:.3f} s)  written {len(r.publish.written):>5}  removed "
          f"{len(r.publish.removed)}  rendered {r.rendered:>5}  peak RSS {peak_mib():.0f} MiB")
    return r, dt


def fs_floor(where: Path, sizes: list[int]) -> float:
    """The filesystem's own floor for the same output: as many files of the same sizes,
    each written to a new file and renamed into place, then one sync; no planning, no
    rendering. The controller publishes the same way (plus its bookkeeping), so the ratio
    says how much the controller adds to what any atomic file publisher pays on this disk.
    (On this sandbox's ext4, which has no journal, creating inodes right after many deletes
    is slow: ext4's recently_deleted() check. The floor shows it.)"""
    where.mkdir()
    blobs = {n: b"x" * n for n in set(sizes)}
    gc.collect()
    t0 = time.perf_counter()
    for i, size in enumerate(sizes):
        tmp = where / f".tmp-{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, blobs[size])
        finally:
            os.close(fd)
        os.replace(tmp, where / f"{i}.json")
    os.sync()
    return time.perf_counter() - t0


def load(doc: dict[str, Any]) -> tuple[Fabric, float]:
    text = json.dumps(doc)  # JSON is YAML: parsed by the real loader
    t0 = time.perf_counter()
    fabric = parse_fabric(text, "<bench>")
    return fabric, time.perf_counter() - t0


def run(sites: int, per_site: int, scope: str) -> dict[str, Any]:
    print(f"{sites} sites x {per_site} nodes = {sites * per_site} nodes, SRv6 scope {scope}")
    doc = generate(sites, per_site, scope=scope)
    fabric, load_s = load(doc)
    print(f"  {'load + validate fabric (YAML)':<34} {load_s:7.3f} s")
    out: dict[str, Any] = {"nodes": sites * per_site, "sites": sites, "scope": scope,
                           "load_s": round(load_s, 3)}
    with tempfile.TemporaryDirectory(prefix="flatroute-bench-") as tmp:
        inv = MemoryInventory(fabric)
        ctl = Reconciler(inv, FilePublisher(tmp), tmp, log=Quiet())
        full, full_wall = step("full plan + publish", ctl)
        sizes = [p.stat().st_size for p in (Path(tmp) / "nodes").iterdir()]
        print(f"  {'':<34} {sum(sizes) / 2**20:.1f} MiB of node states")
        floor = fs_floor(Path(tmp) / "floor", sizes)
        print(f"  {'filesystem floor (same files)':<34} {floor:7.3f} s  -> the full cycle "
              f"is {full_wall / floor:.1f}x the bare file writes")
        again, _ = step("steady state (no change)", ctl)
        restarted = Reconciler(inv, FilePublisher(tmp), tmp, log=Quiet())
        restart, restart_wall = step("restart (fresh process state)", restarted)

        grown = copy.deepcopy(doc)
        grown["spec"]["nodes"].append({"name": "s1-extra", "rack": "s1-r0"})
        fabric2, _ = load(grown)
        inv.set(fabric2, "1")
        add, add_wall = step("add one worker node", restarted)
        expected = ["s1-extra"] if scope == "site" else None
        if expected is not None:
            assert list(add.publish.written) == expected, add.publish.written[:5]

        inv.set(fabric, "2")
        remove, _ = step("remove it again", restarted)
        out.update(
            full_s=round(full_wall, 3),
            full_plan_s=round(full.plan_seconds, 3),
            full_publish_s=round(full.publish_seconds, 3),
            fs_floor_s=round(floor, 3),
            full_over_floor=round(full_wall / floor, 2),
            steady_written=len(again.publish.written),
            restart_written=len(restart.publish.written),
            restart_s=round(restart_wall, 3),
            add_written=len(add.publish.written),
            add_s=round(add_wall, 3),
            remove_removed=len(remove.publish.removed),
            remove_written=len(remove.publish.written),
            state_mib=round(sum(sizes) / 2**20, 1),
            peak_rss_mib=round(peak_mib()),
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--nodes-per-site", type=int, default=100)
    ap.add_argument("--scope", choices=("site", "node"), default="site")
    ap.add_argument("--node-scope-sites", type=int, default=10,
                    help="also run scope node at this smaller size (0: skip)")
    ap.add_argument("--node-scope-nodes-per-site", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = ap.parse_args()
    results = [run(args.sites, args.nodes_per_site, args.scope)]
    if args.node_scope_sites:
        print()
        results.append(run(args.node_scope_sites, args.node_scope_nodes_per_site, "node"))
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
