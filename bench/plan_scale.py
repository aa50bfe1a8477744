"""Plan a generated 5,000-node, 50-site fabric; then re-plan after adding one node.

Reports wall time and peak Python memory (tracemalloc) of the full plan, the time to re-plan
after one node is added (with the previous plan, as the controller does), and for comparison
a re-plan without the previous plan. Goals (issue 2): full plan < 1 s; re-plan proportional
to the change.

    python bench/plan_scale.py [--sites 50] [--nodes-per-site 100]
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fabricgen import generate

from flatroute import gcpause
from flatroute.fabric import parse_fabric
from flatroute.plan import plan


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def planned(*args, **kwargs):  # type: ignore[no-untyped-def]
    """plan() with the cyclic collector paused, as the controller and `flatroute plan` run
    it (the planner itself leaves the collector alone)."""
    with gcpause.paused():
        return plan(*args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--nodes-per-site", type=int, default=100)
    ap.add_argument("--scope", choices=("site", "node"), default="site")
    args = ap.parse_args()
    doc = generate(args.sites, args.nodes_per_site, scope=args.scope)
    text = yaml.safe_dump(doc)
    fabric, t_parse = timed(parse_fabric, text)
    first, t_plan = timed(planned, fabric)
    assert not first.problems, first.problems[:3]
    tracemalloc.start()
    planned(fabric)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = copy.deepcopy(doc)
    grown["spec"]["nodes"].append({"name": "s0-new", "rack": "s0-r0"})
    fabric2 = parse_fabric(yaml.safe_dump(grown))
    second, t_inc = timed(planned, fabric2, first.ledger, previous=first)
    _, t_full2 = timed(planned, fabric2, first.ledger)
    changed = [n.name for n in second.nodes
               if n.name not in first.memo or first.memo[n.name][1] is not n]
    segs = sum(len(s.segments) for s in first.sites)
    print(f"fabric: {len(fabric.nodes)} nodes, {len(fabric.sites)} sites, scope {args.scope}, "
          f"{segs} site segments")
    print(f"parse+validate:            {t_parse * 1000:8.1f} ms")
    print(f"full plan:                 {t_plan * 1000:8.1f} ms   (goal < 1000 ms)")
    print(f"peak memory (tracemalloc): {peak / 2**20:8.1f} MiB")
    print(f"re-plan +1 node, previous: {t_inc * 1000:8.1f} ms   node plans rebuilt: "
          f"{len(changed)} {changed[:5]}")
    print(f"re-plan +1 node, no prev:  {t_full2 * 1000:8.1f} ms   "
          f"(incremental is {t_full2 / t_inc:.1f}x faster)")


if __name__ == "__main__":
    main()
