"""Speaker benchmark (root): (a) node-state change -> prefix in the ToR kernel, p50/p95 over 20;
(b) install then remove 10,000 routes through the kernel adapter vs `ip -batch`, as a ratio.

    python bench/speaker.py [--changes 20] [--routes 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.integration import speaker_lab as L
from tests.netns_util import Netns, sh


def bench_announce(changes: int) -> list[float]:
    lab = L.build(Netns(), n_tors=1)
    try:
        tor = lab.tors[0]
        L.start_frr(tor, L.frr_config(tor))
        L.publish(lab, L.node_spec(lab))
        L.start_speaker(lab)
        L.wait_for(lambda: "10.244.0.0/26" in L.routes(tor.ns), 60)
        out = []
        for i in range(changes):
            prefix = f"10.244.{1 + i}.0/26"
            t0 = time.perf_counter()
            L.publish(lab, L.node_spec(lab, v4_blocks=("10.244.0.0/26", prefix)))
            os.kill(L.speaker_pid(lab), 1)  # SIGHUP: reconcile now
            mon = subprocess.Popen(["ip", "netns", "exec", tor.ns, "ip", "monitor", "route"],
                                   stdout=subprocess.PIPE, text=True)
            try:
                if prefix not in L.routes(tor.ns):
                    assert mon.stdout is not None
                    for line in mon.stdout:
                        if line.startswith(prefix):
                            break
            finally:
                mon.kill()
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        L.cleanup(lab)


def bench_routes(n: int) -> tuple[float, float]:
    ns = Netns()
    try:
        node = ns.add("bnch")
        peer = ns.add("bnch")
        ns.veth(node, "up0", peer, "down0")
        sh("ip", "addr", "add", "10.0.0.1/24", "dev", "up0", ns=node)
        code = (
            "import time,sys\n"
            "from speaker.netlink import Kernel\n"
            "from speaker.rtnl import Op, bulk_routes\n"
            f"k=Kernel(); rs=bulk_routes({n}, gateway='10.0.0.2', ifname='up0')\n"
            "t=time.perf_counter(); a=k.apply([Op('add',r) for r in rs]);"
            " d=k.apply([Op('delete',r) for r in rs]); dt=time.perf_counter()-t\n"
            "assert not a.failures and not d.failures, (a.failures[:2], d.failures[:2])\n"
            "print(dt)\n")
        adapter = float(sh(sys.executable, "-c", code, ns=node, timeout=300).stdout)
        with tempfile.TemporaryDirectory() as tmp:
            add, dele = os.path.join(tmp, "add"), os.path.join(tmp, "del")
            with open(add, "w") as fa, open(dele, "w") as fd:
                for i in range(n):
                    a = 0x0A800000 + i
                    dst = f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}/32"
                    fa.write(f"route add {dst} via 10.0.0.2 dev up0 proto 70\n")
                    fd.write(f"route del {dst} via 10.0.0.2 dev up0 proto 70\n")
            t = time.perf_counter()
            sh("ip", "-batch", add, ns=node, timeout=300)
            sh("ip", "-batch", dele, ns=node, timeout=300)
            ipb = time.perf_counter() - t
        return adapter, ipb
    finally:
        ns.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--routes", type=int, default=10000)
    args = ap.parse_args()
    lat = bench_announce(args.changes)
    q = statistics.quantiles(lat, n=20)
    print(f"(a) node-state change -> prefix in ToR kernel over {len(lat)} changes: "
          f"p50 {statistics.median(lat):.1f} ms, p95 {q[18]:.1f} ms (goal p50 < 100 ms)")
    adapter, ipb = bench_routes(args.routes)
    print(f"(b) install+remove {args.routes} routes: adapter {adapter * 1000:.0f} ms "
          f"({2 * args.routes / adapter:,.0f} ops/s), ip -batch {ipb * 1000:.0f} ms "
          f"({2 * args.routes / ipb:,.0f} ops/s): ratio {ipb / adapter:.2f}x ip -batch "
          f"(goal >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
