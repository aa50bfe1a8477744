"""Bring up a generated lab (default: 50 nodes in 2 sites), run `lab test`, take it down.

Reports the time of `lab up`, `lab test` and `lab down`, and the test's closing line.
Needs root and the lab's tools (scripts/install-deps).

    python bench/lab_scale.py [--sites 2] [--nodes-per-site 25] [--pods 2] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fabricgen import generate


def flatroute(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    exe = shutil.which("flatroute") or "flatroute"
    t0 = time.perf_counter()
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False,
                          timeout=1800)
    return time.perf_counter() - t0, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=2)
    ap.add_argument("--nodes-per-site", type=int, default=25)
    ap.add_argument("--pods", type=int, default=2)
    ap.add_argument("--scope", choices=("node", "site"), default="node")
    ap.add_argument("--prefix", default="flbench")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    doc = generate(args.sites, args.nodes_per_site, scope=args.scope)
    with tempfile.TemporaryDirectory() as tmp:
        fabric = Path(tmp) / "generated.yaml"
        fabric.write_text(yaml.safe_dump(doc))
        nodes = args.sites * args.nodes_per_site
        print(f"fabric: {nodes} nodes, {args.sites} sites, {args.pods} pods per node")
        t_up, up = flatroute("lab", "up", str(fabric), "--pods", str(args.pods),
                             "--prefix", args.prefix)
        print(f"lab up:   {t_up:6.1f} s (exit {up.returncode})")
        if up.returncode != 0:
            print(up.stdout[-3000:], up.stderr[-3000:])
            flatroute("lab", "down", "--prefix", args.prefix)
            return 1
        t_test, test = flatroute("lab", "test", "--prefix", args.prefix)
        last = test.stdout.strip().splitlines()[-1] if test.stdout.strip() else test.stderr
        print(f"lab test: {t_test:6.1f} s (exit {test.returncode}): {last}")
        if test.returncode != 0:
            print("\n".join(test.stdout.splitlines()[-40:]))
        if not args.keep:
            t_down, _ = flatroute("lab", "down", "--prefix", args.prefix)
            print(f"lab down: {t_down:6.1f} s")
        return test.returncode


if __name__ == "__main__":
    sys.exit(main())
