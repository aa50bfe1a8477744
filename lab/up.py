"""`flatroute lab up`: build the fabric in namespaces and start every real component.

Order: validate -> controller (static mode) plans and publishes -> namespaces, links,
addresses -> FRR routers with their rendered configs -> speakers -> pods via the CNI plugin.
Everything is recorded in the lab state before it is made; a failure rolls back what was made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from flatroute.fabric import load_fabric
from flatroute.fabric.hosts import ROUTER_SYSCTLS
from flatroute.fabric.model import Fabric
from flatroute.fabric.wiring import Role
from flatroute.plan import load_ledger, plan
from flatroute.plan.model import Plan
from flatroute.speaker_status import StatusError
from flatroute.speaker_status import read as read_status
from lab import frr, host, pods, srv6
from lab.state import DEFAULT_ROOT, LabError, LabState, Proc, lab_dir, load
from lab.topology import Topology, build

Say = Callable[[str], None]

#: the speakers' Prometheus endpoint, on each node namespace's loopback
METRICS_PORT = 9474


def flatroute_cmd() -> list[str]:
    exe = shutil.which("flatroute")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth links, FRR)")
    missing = frr.missing_tools()
    for tool in ("ip", "flatroute-cni", "tcpdump"):
        if shutil.which(tool) is None:
            missing.append(tool)
    try:
        import exabgp  # noqa: F401
    except ImportError:
        missing.append("exabgp (python package)")
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (run scripts/install-deps)")


def lab_fabric(fabric_path: Path, directory: Path) -> tuple[Fabric, Path]:
    """Copy the fabric into the lab; point an MD5 secretRef at a secret the lab makes."""
    fabric = load_fabric(fabric_path)
    doc = yaml.safe_load(fabric_path.read_text())
    copy = directory / "fabric.yaml"
    md5 = (doc.get("spec", {}).get("bgp") or {}).get("md5")
    if md5 is not None:
        secret = directory / "bgp-md5.secret"
        secret.write_text(secrets.token_hex(12) + "\n")
        secret.chmod(0o600)
        doc["spec"]["bgp"]["md5"] = {"secretRef": {"file": str(secret)}}
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return (load_fabric(copy) if md5 is not None else fabric), copy


def up(fabric_path: Path, *, prefix: str, pods_per_node: int, say: Say,
       root: Path = DEFAULT_ROOT, kubernetes: bool = False) -> LabState:
    started = time.monotonic()
    load_fabric(fabric_path)  # refuse bad input before anything is built
    preflight()
    existing = load(prefix, root)
    clash = sorted(n for n in host.netns_list() if n.startswith(f"{prefix}-"))
    if existing is not None or clash:
        raise LabError(f"a lab with prefix {prefix!r} exists already "
                       f"({len(clash)} namespaces): run `flatroute lab down --prefix {prefix}`")
    directory = lab_dir(prefix, root)
    directory.mkdir(parents=True, exist_ok=True)
    state = LabState(prefix, str(directory), str(fabric_path.resolve()))
    state.kubernetes = kubernetes
    state.pods_per_node = pods_per_node
    state.save()
    try:
        _build(state, fabric_path, pods_per_node, say)
    except BaseException as exc:
        say(f"lab up failed: {exc}; rolling back")
        from lab.down import down

        down(prefix, say=lambda _m: None, root=root)
        raise
    state.phase = "up"
    state.up_seconds = round(time.monotonic() - started, 2)
    state.save()
    return state


def _build(state: LabState, fabric_path: Path, pods_per_node: int, say: Say) -> None:
    fabric, copy = lab_fabric(fabric_path, state.dir)
    state.fabric_copy = str(copy)
    url, the_plan = _controller(state, fabric, copy, say)
    topo = build(fabric, the_plan, state.prefix, pods_per_node)
    router_datapath = srv6.router_datapath(state, fabric, say)
    say(f"[2/6] network: {len(topo.routers)} routers, {len(topo.nodes)} nodes, "
        f"{len(topo.links)} links")
    _network(state, topo)
    say("[3/6] routers: FRR with the configs `flatroute render --platform frr` produces")
    _routers(state, topo, fabric, the_plan, router_datapath)
    _fault_point("routers")
    say("[4/6] speakers: one per node, real ExaBGP toward its ToRs")
    _speakers(state, topo, url)
    _wait_sessions(topo, state.dir)
    say(f"[5/6] pods: {len(topo.pods)} through the real flatroute-cni (ADD, as a runtime does)")
    _pods(state, topo)
    say("[6/6] converging: waiting for every node's routes on its ToRs, and its sessions "
        "usable")
    _wait_routes(topo, the_plan, state.dir)
    _wait_speakers(the_plan, state.dir / "state")
    if fabric.srv6.enabled:
        srv6.wait_paths(topo, the_plan, state.dir)
    if url is not None:
        _wait_nodestates(url, [n.name for n in the_plan.nodes])
    if fabric.services.static and url is None:
        from lab import services

        say(f"services: {len(fabric.services.static)} static services, kube-proxy's part "
            "played by nftables rules on each node, an external client behind the spine")
        services.start(state, topo, fabric)


def _controller(state: LabState, fabric: Fabric, copy: Path, say: Say) -> tuple[str | None, Plan]:
    """Step 1: the controller (static mode, or Kubernetes mode against the fake API server);
    returns the API URL (None in static mode) and the plan it publishes."""
    state_dir = state.dir / "state"
    if state.kubernetes:
        from lab import kube

        say(f"[1/6] controller: {fabric.name} ({len(fabric.nodes)} nodes) in Kubernetes mode, "
            "against the FAKE API server (fakekube), seeded with the fabric")
        url = kube.start(state, copy)
        state.api_url = url
        state.save()
        _start(state, "controller", None, [*flatroute_cmd(), "controller", "run",
                                           "--kubernetes", "--server", url, "--state-dir",
                                           str(state_dir), "--retry-period", "0.5"])
        return url, plan(fabric)
    say(f"[1/6] controller: planning {fabric.name} ({len(fabric.nodes)} nodes) in static "
        "mode")
    once = host.run([*flatroute_cmd(), "controller", "run", "--fabric", str(copy),
                     "--state-dir", str(state_dir), "--once"], check=False, timeout=120)
    if once.returncode != 0:
        raise LabError(f"controller failed: {(once.stderr or once.stdout).strip()}")
    _start(state, "controller", None, [*flatroute_cmd(), "controller", "run", "--fabric",
                                       str(copy), "--state-dir", str(state_dir),
                                       "--interval", "2"])
    return None, plan(fabric, load_ledger(state_dir / "ledger.json"))


def _speakers(state: LabState, topo: Topology, url: str | None) -> None:
    """Step 4: one speaker per node namespace, its eBPF pins in the lab's bpffs."""
    mode: list[str] = []
    if url is not None:
        from lab import kube

        kube.forward(state, [n.ns for n in topo.nodes], url)
        mode = ["--kubernetes", "--server", url]
    for node in topo.nodes:
        ndir = state.dir / "nodes" / node.name
        _start(state, f"{node.name}/speaker", node.ns, [
            *flatroute_cmd(), "speaker", "run", *mode, "--node", node.name,
            "--state-dir", str(state.dir / "state"), "--run-dir", str(ndir / "run"),
            "--node-file", str(ndir / "node.json"),
            "--bpf-dir", str(Path(state.bpffs) / node.name),
            # each node is its own namespace: the same port on every node's loopback
            "--metrics-port", str(METRICS_PORT), "--metrics-listen", "127.0.0.1"])


def _pods(state: LabState, topo: Topology) -> None:
    """Step 5: the CNI service on every node, then every pod through the real plugin."""
    directory = state.dir
    pods.install_plugin(directory)
    for node in topo.nodes:  # the fast path: the C client hands each request to its node's
        ndir = directory / "nodes" / node.name  # service, inside the node namespace
        _start(state, f"{node.name}/cni", node.ns, [
            *flatroute_cmd(), "cni", "serve", "--socket", str(pods.socket_path(ndir)),
            "--delete-queue", str(pods.delete_queue(ndir))])
    for node in topo.nodes:
        _wait_file(directory / "nodes" / node.name / "node.json", 30,
                   f"speaker of {node.name} wrote no node file")
        _wait_file(pods.socket_path(directory / "nodes" / node.name), 30,
                   f"flatroute cni serve of {node.name} did not start")
    for pod in topo.pods:
        state.namespaces.append(pod.ns)
        state.save()
        record = pods.add(pod, topo, directory)
        state.pods.append(record)
        state.save()


def _wait_nodestates(url: str, nodes: list[str], timeout: float = 30) -> None:
    """Kubernetes mode: every NodeState's status says its spec is applied and its sessions
    are up, as `kubectl get nodestates` would show it (the speakers report there on change)."""
    from kube.api import KubeError, connect
    from kube.objects import NODESTATES

    api = connect(None, url)
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while time.monotonic() < deadline:
        try:
            items, _rv = api.list(NODESTATES)
        except KubeError:
            items = []
        done = set()
        for obj in items:
            st = obj.get("status") or {}
            up, total = st.get("sessionsEstablished", 0), st.get("sessionsTotal", 0)
            if st.get("observedGeneration") == obj["metadata"].get("generation") \
                    and total and up == total:
                done.add(str(obj["metadata"]["name"]))
        pending = [n for n in nodes if n not in done]
        if not pending:
            return
        time.sleep(0.25)
    raise LabError("NodeStates not reported applied: " + ", ".join(pending))


def _wait_speakers(the_plan: Plan, state_dir: Path, timeout: float = 30) -> None:
    """Every speaker reports each of its sessions established and, with BFD, BFD up: only
    then does it install the paths learned on them (the ToRs having our routes is half of it).
    """
    deadline = time.monotonic() + timeout
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = []
        for n in the_plan.nodes:
            try:
                sessions = read_status(str(state_dir / "status" / f"{n.name}.json")).sessions
            except StatusError:
                pending.append(f"{n.name}: no status yet")
                continue
            bfd = {pp.tor: pp.bfd for pp in n.peers}  # the ToR's choice
            usable = [x for x in sessions if x.state == "established"
                      and (x.bfd == "up" or not bfd.get(x.name, False))]
            if len(usable) < len(n.peers):
                pending.append(f"{n.name}: {len(usable)}/{len(n.peers)} sessions usable")
        if not pending:
            return
        time.sleep(0.2)
    raise LabError("speakers did not converge: " + "; ".join(pending[:8]))


def _fault_point(step: str) -> None:
    """Test hook: FLATROUTE_LAB_FAIL_AT=<step> makes `up` fail there, to prove the rollback."""
    if os.environ.get("FLATROUTE_LAB_FAIL_AT") == step:
        raise LabError(f"injected failure at step {step!r} (FLATROUTE_LAB_FAIL_AT)")


def _start(state: LabState, name: str, ns: str | None, cmd: list[str]) -> None:
    log = state.dir / "logs" / f"{name.replace('/', '.')}.log"
    pid = host.spawn(ns, cmd, log)
    state.processes.append(Proc(name, pid, ns, str(log)))
    state.save()


def _network(state: LabState, topo: Topology) -> None:
    names = [r.ns for r in topo.routers] + [n.ns for n in topo.nodes]
    state.namespaces.extend(names)
    state.save()
    host.netns_add(names)
    for ns in names:
        host.sysctl(ns, ROUTER_SYSCTLS)
    host.ip_batch(None, [
        f"link add {link.a_if} netns {link.a_ns} mtu {topo.mtu} type veth peer name "
        f"{link.b_if} netns {link.b_ns} mtu {topo.mtu}" for link in topo.links])
    per_ns: dict[str, list[str]] = {ns: ["link set lo up"] for ns in names}
    for ns, bridge in topo.bridges:
        per_ns[ns] += [f"link add {bridge} type bridge", f"link set {bridge} up"]
    for link in topo.links:
        per_ns[link.a_ns].append(f"link set {link.a_if} up")
        if link.bridge_b:
            per_ns[link.b_ns].append(f"link set {link.b_if} master {link.bridge_b}")
        per_ns[link.b_ns].append(f"link set {link.b_if} up")
    for addr in topo.addresses:
        extra = " nodad" if ":" in addr.cidr else ""
        per_ns[addr.ns].append(f"addr add {addr.cidr} dev {addr.ifname}{extra}")
    for ns, lines in per_ns.items():
        host.ip_batch(ns, lines)


def _routers(state: LabState, topo: Topology, fabric: Fabric, the_plan: Plan,
             datapath: str | None = None) -> None:
    from render import render

    files = render(fabric, the_plan, platform="frr", with_secrets=fabric.bgp.md5 is not None)
    by_router: dict[str, dict[str, str]] = {}
    for f in files:
        by_router.setdefault(f.router, {})[f.name] = f.text
    for r in topo.routers:
        texts = by_router.get(r.name, {})
        conf = next((t for n, t in texts.items() if n.endswith(".conf")), None)
        if conf is None:
            raise LabError(f"render produced no FRR config for {r.name}")
        rdir = state.dir / "routers" / r.name
        for proc in frr.start(r.ns, r.name, conf, rdir):
            state.processes.append(proc)
        state.save()
        script = next((t for n, t in texts.items() if n.endswith(".sh")), None)
        if script is not None:
            srv6.router_sid(state, r, fabric, the_plan, script, datapath)


def _wait_file(path: Path, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(message)
        time.sleep(0.1)


def _wait_sessions(topo: Topology, directory: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    routers = list(topo.routers)
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = []
        for r in routers:
            peers = frr.bgp_summary(directory / "routers" / r.name)
            if not peers:
                pending.append(f"{r.name}: no BGP yet")
            pending += [f"{r.name} -> {p}: {i['state']}" for p, i in peers.items()
                        if i["state"] != "Established"]
        if not pending:
            return
        time.sleep(0.3)
    raise LabError("BGP sessions did not come up in time: " + "; ".join(pending[:8]))


def _wait_routes(topo: Topology, the_plan: Plan, directory: Path, timeout: float = 30) -> None:
    """Every ToR has each of its nodes' pod blocks in its RIB."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    tors = {r.name: r for r in topo.routers if r.role is Role.TOR}
    while time.monotonic() < deadline:
        missing = []
        for n in the_plan.nodes:
            for up in n.uplinks:
                if up.tor not in tors:
                    continue
                out = host.run(["vtysh", "--vty_socket", str(directory / "routers" / up.tor),
                                "-c", "show bgp ipv4 unicast json"], check=False).stdout
                try:
                    routes = json.loads(out or "{}").get("routes", {})
                except ValueError:
                    routes = {}
                missing += [f"{b} on {up.tor}" for b in n.ipv4_blocks if str(b) not in routes]
        if not missing:
            return
        time.sleep(0.3)
    raise LabError("routes did not converge: missing " + ", ".join(missing[:8]))


