"""ADD/DEL latency: flatroute-cni against the reference ptp + host-local, side by side.

    sudo python3 bench/cni_latency.py [--pods 100] [--dual]

Creates a node namespace (with an uplink and a default route, like a real node) and one pod
namespace per pod and plugin, runs the plugins inside the node namespace (`ip netns exec`),
100 pods sequentially and then 2 at a time, alternating the plugins, and prints p50/p95 and
the ratios flatroute/reference for each flatroute mode: the production path, the statically
linked C client (as `flatroute cni install` builds it) handing requests to `flatroute cni
serve` running in the node namespace (as the speaker DaemonSet's cni-service container does;
without a C compiler that mode is left out), and the Python plugin exec'd per pod
(`flatroute-cni-py`, the developer and lab tool). Everything it creates is removed at the end,
even on failure. Compare ratios, not absolute times: the machine is shared and noisy. The goal
(issue 14): the production path's ADD and DEL p50 at most 0.8x the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

REF = "/usr/lib/cni"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


# --- inside the node namespace ------------------------------------------------------------

def spawn(binary: str, command: str, cid: str, netns: str, cni_path: str,
          extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
           "CNI_NETNS": netns, "CNI_PATH": cni_path, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           **extra}
    start = time.perf_counter()
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    return proc, start


def finish(proc: subprocess.Popen[bytes], start: float, conf: bytes) -> float:
    out, err = proc.communicate(conf)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"plugin failed: {out.decode()} {err.decode()}")
    return elapsed


def inner(spec: dict[str, object]) -> None:
    plugins: dict[str, dict[str, object]] = spec["plugins"]  # type: ignore[assignment]
    pods: dict[str, list[str]] = spec["pods"]  # type: ignore[assignment]
    cni_path = str(spec["cni_path"])
    n = int(spec["n"])  # type: ignore[call-overload]
    names = list(plugins)
    times: dict[tuple[str, str, str], list[float]] = {}
    service = None
    if spec.get("socket"):
        service = subprocess.Popen([sys.executable, "-m", "cli.main", "cni", "serve",
                                    "--socket", str(spec["socket"]), "--delete-queue",
                                    str(spec["queue"])], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not os.path.exists(str(spec["socket"])):
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("flatroute cni serve did not start")
            time.sleep(0.02)

    def run(mode: str, command: str, width: int) -> None:
        for i in range(0, n, width):
            # Alternate which plugin goes first, round by round.
            order = names if (i // width) % 2 == 0 else names[::-1]
            for name in order:
                p = plugins[name]
                conf = json.dumps(p["conf"]).encode()
                batch = [spawn(str(p["binary"]), command, f"c{names.index(name)}x{j}",
                               f"/run/netns/{pods[name][j]}", cni_path,
                               p.get("env", {}))  # type: ignore[arg-type]
                         for j in range(i, min(i + width, n))]
                for proc, start in batch:
                    times.setdefault((mode, command, name), []).append(
                        finish(proc, start, conf))

    try:
        for mode, width in (("sequential", 1), ("2 at a time", 2)):
            run(mode, "ADD", width)
            run(mode, "DEL", width)
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=10)
    print(json.dumps({"|".join(k): v for k, v in times.items()}))


# --- outside -------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--dual", action="store_true", help="dual-stack for both plugins")
    ap.add_argument("--python", default=None,
                    help="interpreter for flatroute-cni (default: as `flatroute cni install`)")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        with open(args.inner, encoding="utf-8") as fh:
            inner(json.load(fh))
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    sys.path.insert(0, ROOT)
    from cni.install import c_compiler, install, is_static_client

    tag = uuid.uuid4().hex[:6]
    made: list[str] = []
    tmp = tempfile.mkdtemp(prefix="ftbench-")
    try:
        node, tor = f"ftbn{tag}", f"ftbt{tag}"
        for ns in (node, tor):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", f"ftb{tag}a", "type", "veth", "peer", "name", f"ftb{tag}b")
        sh("ip", "link", "set", f"ftb{tag}a", "netns", node, "name", "up0")
        sh("ip", "link", "set", f"ftb{tag}b", "netns", tor, "name", "up0")
        for ns, address in ((node, "192.0.2.1/24"), (tor, "192.0.2.2/24")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "up0", "up")
            sh("ip", "-n", ns, "addr", "add", address, "dev", "up0")
        sh("ip", "-n", node, "route", "add", "default", "via", "192.0.2.2")
        bindir = os.path.join(tmp, "bin")
        install(bindir, os.path.join(tmp, "net.d"), args.python)
        for plugin in ("ptp", "host-local"):
            os.symlink(f"{REF}/{plugin}", os.path.join(bindir, plugin))
        for i in (4, 5):  # one pod block per flatroute mode: their routes share the node
            v6 = [f"fd00:10:24{i}::/120"] if args.dual else []
            with open(os.path.join(tmp, f"node{i}.json"), "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "node": "bench",
                           "podBlocks": {"ipv4": [f"10.24{i}.0.0/24"], "ipv6": v6},
                           "mtu": 1400, "routeProtocol": 70}, fh)
        ref_ranges = [[{"subnet": "10.250.0.0/24"}]]
        if args.dual:
            ref_ranges.append([{"subnet": "fd00:250::/120"}])
        sock = os.path.join(tmp, "cni.sock")
        plugins: dict[str, dict[str, object]] = {
            "flatroute-py": {"binary": os.path.join(bindir, "flatroute-cni-py"),
                             "conf": {"cniVersion": "1.1.0", "name": "frbench",
                                      "type": "flatroute-cni",
                                      "nodeFile": os.path.join(tmp, "node4.json"),
                                      "dataDir": os.path.join(tmp, "fr-data")}},
            "ptp+host-local": {"binary": os.path.join(bindir, "ptp"),
                               "conf": {"cniVersion": "1.0.0", "name": "ptpbench", "type": "ptp",
                                        "ipMasq": False, "mtu": 1400,
                                        "ipam": {"type": "host-local", "ranges": ref_ranges,
                                                 "dataDir": os.path.join(tmp, "hl-data")}}},
        }
        client = os.path.join(bindir, "flatroute-cni")
        with open(client, "rb") as fh:
            if c_compiler() and not is_static_client(fh.read()):
                raise SystemExit(f"{client} is not the statically linked client")
        if c_compiler():
            plugins["flatroute-svc"] = {
                "binary": os.path.join(bindir, "flatroute-cni"),
                "env": {"FLATROUTE_CNI_SOCKET": sock,  # the service, or a CNI error
                        "FLATROUTE_CNI_DELETE_QUEUE": os.path.join(tmp, "queue")},
                "conf": {"cniVersion": "1.1.0", "name": "frbench2", "type": "flatroute-cni",
                         "nodeFile": os.path.join(tmp, "node5.json"),
                         "dataDir": os.path.join(tmp, "fr-data")}}
        pods: dict[str, list[str]] = {}
        for k, name in enumerate(plugins):
            pods[name] = []
            for i in range(args.pods):
                ns = f"ftbp{tag}{k}x{i}"
                sh("ip", "netns", "add", ns)
                made.append(ns)
                pods[name].append(ns)
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as fh:
            json.dump({"plugins": plugins, "pods": pods, "cni_path": bindir, "n": args.pods,
                       "socket": sock if "flatroute-svc" in plugins else "",
                       "queue": os.path.join(tmp, "queue")}, fh)
        proc = subprocess.run(["ip", "netns", "exec", node, sys.executable, os.path.abspath(
            __file__), "--inner", spec_path], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        times = {tuple(k.split("|")): v for k, v in json.loads(proc.stdout).items()}
        report(times, args)
        return 0
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


LABELS = {"flatroute-svc": "static client+svc", "flatroute-py": "python plugin"}
GOAL = 0.8  # the production path's p50, as a fraction of the reference's


def report(times: dict[tuple[str, ...], list[float]], args: argparse.Namespace) -> None:
    print(f"flatroute-cni vs ptp+host-local, {args.pods} pods, "
          f"{'dual-stack' if args.dual else 'IPv4'}, plugins alternating (ms; ratio = "
          "flatroute / reference)")
    print(f"{'mode':<12} {'verb':<4} {'flatroute':<17} {'p50':>6} {'p95':>6} {'ref p50':>8} "
          f"{'p95':>6} {'ratio p50':>9} {'ratio p95':>9}")
    for mode in ("sequential", "2 at a time"):
        for verb in ("ADD", "DEL"):
            r = times[(mode, verb, "ptp+host-local")]
            for name, label in LABELS.items():
                f = times.get((mode, verb, name))
                if not f:
                    continue
                ratio = pct(f, 50) / pct(r, 50)
                goal = ("  goal met" if ratio <= GOAL else "  goal MISSED") \
                    if name == "flatroute-svc" else ""
                print(f"{mode:<12} {verb:<4} {label:<17} {pct(f, 50):>6.1f} {pct(f, 95):>6.1f} "
                      f"{pct(r, 50):>8.1f} {pct(r, 95):>6.1f} {ratio:>9.2f} "
                      f"{pct(f, 95) / pct(r, 95):>9.2f}{goal}")


if __name__ == "__main__":
    sys.exit(main())
