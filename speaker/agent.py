"""The speaker loop: read the NodeState, make BGP and the kernel match it, say what is true.

Level-triggered: every pass reads the node state file, lists our kernel routes, diffs and applies;
passes run on a timer and whenever something changes (an ExaBGP event, SIGHUP from `drain`).

Graceful restart, both ways:
- Stopping (SIGTERM/SIGINT) kills ExaBGP with SIGKILL: no Cease NOTIFICATION, so the ToR keeps our
  routes as stale; kernel routes are left in place. SIGKILL of the speaker kills ExaBGP with it
  (parent-death signal) to the same effect.
- Starting, the kernel still holds the learned ECMP routes of the previous run: each peer's paths
  are held until that peer is established again and has sent its End-of-RIB (or a cap passes),
  and the announcements are in ExaBGP's config, sent before its End-of-RIB. Nothing flaps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Protocol

from flatroute import ROUTE_PROTOCOL, nodestate
from flatroute.errors import AdapterError, FlatrouteError, InvalidInput, field_error
from flatroute.fabric.naming import ifname, is_pod_veth
from flatroute.files import write_atomic
from flatroute.logging import get_logger
from flatroute.nodefile import NodeFile
from flatroute.nodestate import NodeState
from speaker import (
    announce,
    exabgp_config,
    linkwatch,
    ndisc,
    reconcile,
    srv6_bpf,
    unnumbered,
)
from speaker.announce import Announcement
from speaker.bfd import Bfdd
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry
from speaker.capabilities import DatapathUnavailable, choose_datapath
from speaker.exabgp_json import Event, Shutdown
from speaker.exabgp_process import ExaBGP, bridge_command
from speaker.metrics import Metrics
from speaker.netlink import Kernel, KernelAdapter
from speaker.routes import Route, sorted_nexthops
from speaker.sessions import Sessions
from speaker.status import SessionStatus, SpeakerStatus, now_iso

DEFAULT_CONFIG_DIR = "/etc/flatroute"
DEFAULT_RUN_DIR = "/run/flatroute"
DEFAULT_STATE_DIR = "/var/lib/flatroute"
#: where the eBPF SRv6 datapath pins its programs and maps (inside a bpffs)
DEFAULT_BPF_DIR = "/sys/fs/bpf/flatroute"


#: seconds a restarted session must have been up, with End-of-RIB seen, before the paths held
#: from before the restart may be dropped; and without End-of-RIB (a peer that sends none)
SETTLE_AFTER_EOR = 2.0
SETTLE_WITHOUT_EOR = 5.0
#: unnumbered uplinks: how long to wait for a router advertisement, and how often to look
#: again while the ToR's link-local address is unknown or its session stays down
DISCOVERY_WAIT = 1.0
DISCOVERY_RETRY = 10.0
#: how often we advertise ourselves on unnumbered uplinks (FRR's ToR side: every 10 s too)
ADVERTISE_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class Options:
    node: str
    state_dir: str = DEFAULT_STATE_DIR
    run_dir: str = DEFAULT_RUN_DIR
    config_dir: str = DEFAULT_CONFIG_DIR
    node_state_file: str | None = None
    node_file: str | None = None
    status_file: str | None = None
    metrics_port: int | None = None
    metrics_addr: str = ""
    interval: float = 5.0
    #: longest time learned paths of a (re)starting peer are held; default: 2x hold time
    restart_hold: float | None = None
    exabgp_command: tuple[str, ...] | None = None
    bpf_dir: str = DEFAULT_BPF_DIR

    @property
    def node_state_path(self) -> str:
        return self.node_state_file or os.path.join(self.state_dir, "nodes", f"{self.node}.json")

    @property
    def status_path(self) -> str:
        return self.status_file or os.path.join(self.state_dir, "status", f"{self.node}.json")

    @property
    def node_file_path(self) -> str:
        return self.node_file or os.path.join(self.run_dir, "node.json")

    @property
    def drain_flag(self) -> str:
        return os.path.join(self.run_dir, "drain")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.run_dir, "speaker.pid")


def read_md5(state: NodeState, config_dir: str, source: str) -> str | None:
    if state.bgp.md5_file is None:
        if state.bgp.md5_kubernetes is not None:
            raise InvalidInput([field_error(source, "spec.bgp.md5.kubernetesSecret",
                                            "Kubernetes secrets need Kubernetes mode; "
                                            "static mode takes bgp.md5.file")])
        return None
    path = os.path.join(config_dir, state.bgp.md5_file)  # absolute paths stay as they are
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise InvalidInput([field_error(source, "spec.bgp.md5.file",
                                        f"cannot read the MD5 password file: {exc.strerror}",
                                        path)]) from exc


@dataclass(slots=True)
class Desired:
    state: NodeState
    generation: str
    md5: str | None
    #: kernel | bpf, chosen from state.srv6_datapath and the capability probe (None: no SRv6)
    datapath: str | None = None


def load(opts: Options) -> Desired:
    """Read and validate the node state (and its MD5 secret): all or nothing."""
    path = opts.node_state_path
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise InvalidInput([field_error(path, "", "no node state (has the controller "
                                        "published it?)")]) from exc
    except OSError as exc:
        raise InvalidInput([field_error(path, "", f"cannot read: {exc.strerror}")]) from exc
    state = nodestate.from_json(text, path)
    if state.node != opts.node:
        raise InvalidInput([field_error(path, "spec.node", f"is for another node, not "
                                        f"{opts.node}", state.node)])
    announce.validate(state, path)
    try:
        gen = str(json.loads(text).get("generation") or "")
    except ValueError:
        gen = ""
    md5 = read_md5(state, opts.config_dir, path)
    return Desired(state, gen or nodestate.spec_hash(nodestate.spec_doc(state)), md5)


@dataclass(slots=True)
class _Report:
    last_error: str | None = None
    applied_at: str | None = None
    seen_generation: str | None = None
    reconcile_at: str | None = None
    reconcile_ms: float | None = None
    reconcile_ok: bool = True
    installed: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


class Agent:
    def __init__(self, opts: Options, *, kernel: KernelAdapter | None = None,
                 bpf: Callable[[str], BpfAdapter] | None = None) -> None:
        self.opts = opts
        self.log = get_logger(node=opts.node)
        self.kernel: KernelAdapter = kernel or Kernel(ROUTE_PROTOCOL)
        self._bpf_factory = bpf or _real_bpf
        self.bpf: BpfAdapter | None = None  # the eBPF datapath, once it was used
        self.bpf_report: dict[str, Any] | None = None
        self.datapath: str | None = None
        self.sessions = Sessions()
        self.trigger = threading.Event()
        self.stopping = threading.Event()
        self.metrics = Metrics(opts.node)
        self.desired: Desired | None = None
        #: `desired` with unnumbered peers resolved to link-local sessions: what is applied
        self.resolved: Desired | None = None
        self.links: dict[str, unnumbered.LinkAddresses] = {}
        self.discovered_at: dict[str, float] = {}
        self.advertised_at: dict[str, float] = {}
        self.report = _Report()
        pipename = "flatroute-" + hashlib.sha256(opts.run_dir.encode()).hexdigest()[:10]
        self.paths = exabgp_config.Paths(opts.run_dir, pipename)
        self.exabgp = ExaBGP(self.paths, self._on_event, command=opts.exabgp_command,
                             log=self.log)
        self.bfdd = Bfdd(opts.run_dir, self.log)
        self.session_config: str | None = None  # rendered config minus routes, of the running one
        self.running_peers: set[str] = set()  # the neighbours the running ExaBGP was given
        self.applied: frozenset[Announcement] = frozenset()
        self.exabgp_starts_seen = 0
        self.hold_since = time.monotonic()
        self.settled: set[str] = set()
        self.static_done = ""  # generation whose static parts (sysctls, files) were applied
        self.applied_generation: str | None = None

    # -- events from ExaBGP (reader thread) --------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, Shutdown):
            self.log.warning("exabgp_shutting_down")
        if self.sessions.handle(event):
            self.trigger.set()
        self.log.debug("exabgp_event", kind=type(event).__name__)

    def _on_link(self, name: str) -> None:
        """A pod's host veth appeared: on the eBPF datapath, attach to it now, not next pass."""
        if self.datapath == "bpf" and is_pod_veth(name):
            self.trigger.set()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        os.makedirs(self.opts.run_dir, exist_ok=True)
        write_atomic(self.opts.pid_file, f"{os.getpid()}\n")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda *_: self.trigger.set())
        if self.opts.metrics_port is not None:
            self.metrics.serve(self.opts.metrics_port, self.opts.metrics_addr)
        linkwatch.watch(self._on_link, self.stopping)
        self.log.info("speaker_started", node_state=self.opts.node_state_path,
                      run_dir=self.opts.run_dir)
        try:
            while not self.stopping.is_set():
                self.reconcile_once()
                wait = self.opts.interval if self._all_settled() else 0.25
                self.trigger.wait(wait)
                self.trigger.clear()
        finally:
            self.stop()
        return 0

    def _on_stop_signal(self, *_: object) -> None:
        self.stopping.set()
        self.trigger.set()

    def stop(self) -> None:
        """Planned stop: no NOTIFICATION, kernel routes stay, the ToR keeps ours as stale."""
        self.exabgp.close()
        self.log.info("speaker_stopped", kernel_routes="kept", bgp="graceful restart")
        with contextlib.suppress(Exception):
            self.write_status()

    def drained(self) -> bool:
        return os.path.exists(self.opts.drain_flag)

    def reconcile_once(self) -> None:
        t0 = time.perf_counter()
        errors: list[str] = []
        try:
            load_error = self._load()
            if load_error:
                errors.append(load_error)
            if self.desired is not None:  # bad input: the last good state stays in force
                errors += self._reconcile(self.desired)
        except FlatrouteError as exc:
            errors.append(str(exc))
        except Exception as exc:  # keep running, say what happened
            errors.append(f"internal error: {type(exc).__name__}: {exc}")
            self.log.exception("reconcile_crashed")
        if errors:
            self.metrics.reconcile_errors.labels(self.opts.node).inc()
            self.log.error("reconcile_failed", errors=errors)
        dt = time.perf_counter() - t0
        self.metrics.reconcile_seconds.labels(self.opts.node).observe(dt)
        self.report.last_error = "; ".join(errors) or None
        self.report.reconcile_at = now_iso()
        self.report.reconcile_ms = round(dt * 1000, 2)
        self.report.reconcile_ok = not errors
        self.write_status()

    def _load(self) -> str | None:
        """Load the node state; returns an error text (and keeps the old state) when bad."""
        try:
            new = load(self.opts)
        except InvalidInput as exc:
            self.report.seen_generation = None
            self.log.error("node_state_invalid", errors=[str(e) for e in exc.errors])
            return "invalid node state, nothing of it applied: " + "; ".join(
                str(e) for e in exc.errors)
        self.report.seen_generation = new.generation
        if new.state.srv6_enabled:
            feats = self.kernel.features()
            try:
                new.datapath = choose_datapath(new.state.srv6_datapath, feats.caps)
            except DatapathUnavailable as exc:
                self.report.seen_generation = None
                self.log.error("srv6_datapath_unavailable", wanted=new.state.srv6_datapath,
                               reason=str(exc))
                return (f"invalid node state, nothing of it applied: "
                        f"{self.opts.node_state_path}: spec.srv6.datapath: {exc}")
            if self.datapath != new.datapath:
                self.log.info("srv6_datapath_chosen", wanted=new.state.srv6_datapath,
                              datapath=new.datapath)
        if self.desired is None or new.generation != self.desired.generation \
                or new.md5 != self.desired.md5:
            self.log.info("node_state_loaded", generation=new.generation)
        self.desired = new
        return None

    def _reconcile(self, wanted: Desired) -> list[str]:
        d, errors = self._resolve(wanted)
        self.resolved = d
        st = d.state
        if self.static_done != d.generation:
            errors += self._apply_node_settings(st, d.datapath)
            self.static_done = d.generation if not errors else ""
        self.sessions.configure({str(p.address): (p.name, d.md5 is not None) for p in st.peers},
                                st.asn)
        try:
            self._exabgp(d)
        except FlatrouteError as exc:
            errors.append(str(exc))
        errors += self._bfd(st)
        self.sessions.never_connected(after=max(3.0, st.bgp.hold_time / 3))
        errors += self._kernel(st, d.datapath)
        if not errors:
            self.report.applied_at = now_iso()
            self.applied_generation = d.generation
        return errors

    # -- pieces --------------------------------------------------------------------------------
    def _resolve(self, d: Desired) -> tuple[Desired, list[str]]:
        """Address-less peers (unnumbered uplinks) as link-local sessions, where known."""
        devs = unnumbered.unnumbered_uplinks(d.state)
        if not devs:
            return d, []
        errors: list[str] = []
        now = time.monotonic()
        by_peer = {s.peer: s for s in self.sessions.snapshot()}
        for dev in devs:
            # The ToR resolves its interface peer from our advertisements: without them it
            # refuses our connections.
            if now - self.advertised_at.get(dev, -ADVERTISE_EVERY) >= ADVERTISE_EVERY:
                try:
                    if ndisc.advertise(dev):
                        self.advertised_at[dev] = now
                except AdapterError as exc:
                    errors.append(str(exc))
            known = self.links.get(dev)
            router = known.router if known is not None else None
            session = by_peer.get(str(router))
            lost = session is not None and session.state != "established" \
                and time.time() - session.since > max(d.state.bgp.hold_time, DISCOVERY_RETRY)
            if (router is None or lost) \
                    and now - self.discovered_at.get(dev, -DISCOVERY_RETRY) >= DISCOVERY_RETRY:
                self.discovered_at[dev] = now
                try:
                    found = ndisc.find_router(dev, DISCOVERY_WAIT)
                except AdapterError as exc:
                    errors.append(str(exc))
                    found = None
                if found is not None and found != router:
                    self.log.info("tor_link_local_found", uplink=dev, address=str(found),
                                  previous=str(router) if router else None)
                    router = found
            self.links[dev] = unnumbered.LinkAddresses(router, self.kernel.link_local(dev))
        resolved, problems = unnumbered.resolve(d.state, self.links)
        return Desired(resolved, d.generation, d.md5, d.datapath), errors + problems

    def _apply_node_settings(self, st: NodeState, datapath: str | None) -> list[str]:
        errors: list[str] = []
        k = self.kernel
        uplinks = [ifname(u.tor) for u in st.uplinks]
        settings = [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"),
                    ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"),
                    ("net.ipv4.conf.lo.rp_filter", "0")]
        kernel_srv6 = st.srv6_enabled and datapath == "kernel"
        if kernel_srv6:
            settings += [("net.ipv6.conf.all.seg6_enabled", "1"),
                         # the outer flow label from the flow hash, as the eBPF datapath sets
                         # it: ECMP in the underlay spreads flows, and both put the same bytes
                         ("net.ipv6.seg6_flowlabel", "1"),
                         ("net.ipv6.conf.default.seg6_enabled", "1"),
                         ("net.ipv6.conf.lo.seg6_enabled", "1")]
        for dev in uplinks:
            if not os.path.exists(f"/proc/sys/net/ipv4/conf/{dev}"):
                continue  # reported below as a missing uplink
            settings.append((f"net.ipv4.conf.{dev}.rp_filter", "0"))
            if kernel_srv6:
                settings.append((f"net.ipv6.conf.{dev}.seg6_enabled", "1"))
        for key, value in settings:
            err = k.set_sysctl(key, value)
            if err:
                errors.append(f"sysctl {err}")
        if kernel_srv6:
            try:
                k.ensure_sid_device(reconcile.SID_DEVICE)  # seg6local routes point at it
                src = st.source_address
                if src is not None and k.tunsrc() != src:
                    k.set_tunsrc(src)
            except AdapterError as exc:
                errors.append(str(exc))
        nf = NodeFile(st.node, tuple(str(b) for b in st.ipv4_blocks),
                      tuple(str(b) for b in st.ipv6_blocks), st.mtu,
                      route_protocol=ROUTE_PROTOCOL)
        try:
            write_atomic(self.opts.node_file_path, nf.to_json())
        except OSError as exc:
            errors.append(f"cannot write node file {self.opts.node_file_path}: {exc.strerror}")
        return errors

    def _render(self, d: Desired, static: frozenset[Announcement]) -> str:
        return exabgp_config.render_config(d.state, bridge_command(self.paths),
                                           md5_password=d.md5, static=static)

    def _exabgp(self, d: Desired) -> None:
        want = announce.desired(d.state, drained=self.drained())
        session_config = self._render(d, frozenset())
        env = exabgp_config.render_env(self.paths)
        peers = {announce.peer_key(p) for p in d.state.peers}
        if self.session_config is not None and session_config != self.session_config \
                and self.exabgp.alive():
            if self.exabgp.connected.is_set():
                # Peers, ASNs, timers or MD5 changed. A reload resets only the neighbours whose
                # own configuration changed: a ToR added, removed or re-addressed leaves the
                # other sessions up. First bring the sessions that stay to `want` through the
                # API, so that the reloaded static routes (= want) change nothing for them.
                self._send(want, only=self.running_peers & peers)
                self.exabgp.reload(self._render(d, want))
                self.log.info("exabgp_reloaded_for_config_change",
                              added=sorted(peers - self.running_peers),
                              removed=sorted(self.running_peers - peers))
                self.session_config, self.running_peers = session_config, peers
                self.applied = want
                return
            self.log.info("exabgp_restart_for_config_change")  # no API to reload through
            self.exabgp.kill()  # SIGKILL, no NOTIFICATION: graceful restart keeps the routes
        if self.exabgp.supervise(lambda: self._render(d, want), env):
            self.session_config, self.running_peers = session_config, peers
        if self.exabgp.starts != self.exabgp_starts_seen:
            # A fresh ExaBGP: it announces `want` from its config; hold learned paths again.
            self.exabgp_starts_seen = self.exabgp.starts
            self.applied = want
            self.sessions.exabgp_lost()
            self.settled.clear()
            self.hold_since = time.monotonic()
            self.exabgp.connected.wait(5)
        if not self.exabgp.connected.is_set():
            return
        self._send(want)

    def _send(self, want: frozenset[Announcement], only: set[str] | None = None) -> None:
        """Announce and withdraw through the API until ExaBGP sends `want` (to `only` peers)."""
        withdraw, add = announce.diff(
            frozenset(a for a in want if only is None or a.peer in only),
            frozenset(a for a in self.applied if only is None or a.peer in only))
        cmds = ([exabgp_config.withdraw_command(a) for a in withdraw]
                + [exabgp_config.announce_command(a) for a in add])
        if not cmds:
            return
        results = self.exabgp.send(cmds)
        applied = set(self.applied)
        failed = []
        for a, ok in zip([*withdraw, *add], results[:len(withdraw)] + results[len(withdraw):],
                         strict=True):
            is_withdraw = a in withdraw
            if not ok:
                failed.append(f"{'withdraw' if is_withdraw else 'announce'} {a.prefix} "
                              f"to {a.peer}")
                continue
            if is_withdraw:
                applied.discard(a)
            else:
                applied = {x for x in applied if (x.peer, x.prefix) != (a.peer, a.prefix)}
                applied.add(a)
        self.applied = frozenset(applied)
        self.log.info("announcements_changed", withdrawn=len(withdraw), announced=len(add),
                      failed=len(failed))
        if failed:
            raise AdapterError("ExaBGP refused: " + ", ".join(failed))

    def _bfd(self, st: NodeState) -> list[str]:
        if not st.bgp.bfd:
            if self.bfdd.pid is not None:
                self.bfdd.stop()
            for p in st.peers:
                self.sessions.set_bfd(str(p.address), None)
            return []
        if not self.bfdd.available():
            return ["BFD is configured but FRR bfdd/vtysh are not installed"]
        try:
            self.bfdd.start(st)
        except AdapterError as exc:
            return [str(exc)]
        for peer, state in self.bfdd.poll(str(p.address) for p in st.peers).items():
            if self.sessions.set_bfd(peer, state):
                self.log.info("bfd_state", peer=peer, state=state)
        return [self.bfdd.error] if self.bfdd.error else []

    def _all_settled(self) -> bool:
        d = self.resolved
        if d is None:
            return True
        return all(str(p.address) in self.settled for p in d.state.peers) or \
            time.monotonic() - self.hold_since > self._restart_hold(d.state)

    def _restart_hold(self, st: NodeState) -> float:
        return self.opts.restart_hold if self.opts.restart_hold is not None \
            else float(max(2 * st.bgp.hold_time, 6))

    def _held_devices(self, st: NodeState) -> set[str]:
        now = time.time()
        expired = time.monotonic() - self.hold_since > self._restart_hold(st)
        held = set()
        by_peer = {s.peer: s for s in self.sessions.snapshot()}
        for p in st.peers:
            key = str(p.address)
            s = by_peer.get(key)
            up_for = now - s.established_at if s is not None and s.established_at else 0.0
            # Settled: End-of-RIB seen and a little time since. FRR sends the default route it
            # originates (default-originate) after its End-of-RIB, so settling on EoR alone
            # deleted the held default and lost ~0.3 s of traffic on every restart.
            if key not in self.settled and s is not None and s.state == "established" and (
                    (s.eor and up_for > SETTLE_AFTER_EOR) or up_for > SETTLE_WITHOUT_EOR):
                self.settled.add(key)
            if key not in self.settled and not expired and (s is None or s.bfd != "down"):
                held.add(ifname(p.name))
        return held

    def _kernel(self, st: NodeState, datapath: str | None) -> list[str]:
        k = self.kernel
        feats = k.features()
        errors: list[str] = []
        encap_dev = next((ifname(u.tor) for u in st.uplinks if k.link_up(ifname(u.tor))), None)
        on_bpf = datapath == "bpf"
        # One route model for both datapaths; the eBPF programs look up in the main table
        # themselves, so End.DT4/DT46 need no VRF there, and encapsulation no uplink device.
        srv6, skipped = reconcile.srv6_routes(
            st, vrf=feats.vrf or on_bpf,
            encap_device=(encap_dev or reconcile.BPF_ENCAP_DEVICE) if on_bpf else encap_dev)
        if self.datapath != datapath:
            self.log.info("srv6_datapath_switched", previous=self.datapath, datapath=datapath)
            self.datapath = datapath
        if on_bpf and not self.drained():
            errors += self._bpf_reconcile(st, srv6)
            srv6 = []  # no seg6 route of ours stays in the kernel: the diff removes them
        else:
            errors += self._bpf_remove()
            if on_bpf:
                srv6 = []
        learned = reconcile.learned_routes(st, self.sessions.snapshot())
        actual = reconcile.speaker_owned(k.list_owned(), st)
        held = self._held_devices(st)
        if held:
            learned = reconcile.hold_learned(
                learned, [_only_devices(r, held) for r in actual if r.kind == "learned"])
            learned = [r for r in learned if r.nexthops]
        ops = reconcile.diff([*learned, *srv6], actual)
        if ops:
            res = k.apply(ops)
            self.log.info("kernel_changed", ops=len(ops), applied=res.applied,
                          failed=len(res.failures))
            errors += [f"route {r.dst}: {why}" for r, why in res.failures]
        if ops:
            now = reconcile.speaker_owned(k.list_owned(), st)
            counts = {"routes": sum(r.kind == "learned" for r in now),
                      "encap": sum(r.kind == "encap" for r in now),
                      "sids": sum(r.kind == "sid" for r in now)}
        else:
            counts = {"routes": sum(r.kind == "learned" for r in actual),
                      "encap": sum(r.kind == "encap" for r in actual),
                      "sids": sum(r.kind == "sid" for r in actual)}
        if on_bpf and self.bpf_report and "entries" in self.bpf_report:
            # the same contract on both datapaths: encapsulations and SIDs in force
            counts["encap"] = self.bpf_report["entries"]["encap"]
            counts["sids"] = self.bpf_report["entries"]["sids"]
        self.report.installed = counts
        self.report.skipped = [{"what": s.what, "reason": s.reason} for s in skipped]
        for kind, n in counts.items():
            self.metrics.routes.labels(self.opts.node, kind).set(n)
        self.metrics.missing_features.labels(self.opts.node).set(len(feats.missing))
        for c in feats.caps.checks:
            self.metrics.capability.labels(self.opts.node, c.name).set(1 if c.ok else 0)
        for name in ("kernel", "bpf"):
            self.metrics.datapath.labels(self.opts.node, name).set(1 if datapath == name else 0)
        return errors

    # -- the eBPF SRv6 datapath ----------------------------------------------------------------
    def _bpf_reconcile(self, st: NodeState, routes: list[Route]) -> list[str]:
        """Maps and attachments to match the planned SRv6 routes (level-triggered, ours only)."""
        try:
            if self.bpf is None:
                self.bpf = self._bpf_factory(self.opts.bpf_dir)
            dp = self.bpf
            dp.load()
            uplinks = [ifname(u.tor) for u in st.uplinks]
            present = list_links()
            pods = [n for n in present if is_pod_veth(n)]
            loc = st.locator if isinstance(st.locator, IPv6Network) else None
            want, problems = srv6_bpf.desired(routes, source=st.source_address,
                                              locator=loc, uplinks=uplinks,
                                              pod_veths=pods)
            have: list[srv6_bpf.Entry] = [*dp.list_encap(), *dp.list_sids(),
                                          *dp.list_locators()]
            put, delete = srv6_bpf.diff(want.entries, have)
            failures = dp.apply(put=put, delete=delete) if put or delete else []
            attached = dp.attached()
            attach, detach = srv6_bpf.attach_diff(want.attach, attached, present)
            for dev, prog in attach:
                dp.attach(dev, prog)
            for dev in detach:
                dp.detach(dev)
            if put or delete or attach or detach:
                self.log.info("bpf_datapath_changed", put=len(put), deleted=len(delete),
                              attached=[d for d, _ in attach], detached=detach,
                              failed=len(failures))
                attached = dp.attached()
            counters = dp.counters()
            now: list[srv6_bpf.Entry] = [*dp.list_encap(), *dp.list_sids(),
                                         *dp.list_locators()] if put or delete else have
        except AdapterError as exc:
            self.bpf_report = {"pinDir": self.opts.bpf_dir, "error": str(exc)}
            return [f"eBPF SRv6 datapath: {exc}"]
        ents = srv6_bpf.counts(now)
        self.bpf_report = {"pinDir": self.opts.bpf_dir, "entries": ents,
                           "attached": attached, "counters": counters}
        for name, n in ents.items():
            self.metrics.bpf_entries.labels(self.opts.node, name).set(n)
        for name, n in counters.items():
            self.metrics.bpf_packets.labels(self.opts.node, name).set(n)
        missing = sorted(d for d in want.attach if d not in present)
        errors = [f"eBPF SRv6: {p}" for p in problems]
        errors += [f"eBPF SRv6 map entry {e}: {why}" for e, why in failures]
        errors += [f"eBPF SRv6: uplink {d} not found" for d in missing if d in uplinks]
        return errors

    def _bpf_remove(self) -> list[str]:
        """Drained, switched to the kernel datapath or SRv6 off: every pin and filter goes."""
        if self.bpf is None:
            if not os.path.exists(self.opts.bpf_dir):
                return []
            try:
                self.bpf = self._bpf_factory(self.opts.bpf_dir)
            except AdapterError as exc:
                return [f"eBPF SRv6 datapath: {exc}"]
        try:
            self.bpf.remove()
        except AdapterError as exc:
            return [f"eBPF SRv6 datapath: cannot remove: {exc}"]
        self.log.info("bpf_datapath_removed", pin_dir=self.opts.bpf_dir)
        self.bpf = None
        self.bpf_report = None
        return []

    # -- status ------------------------------------------------------------------------------
    def status(self) -> SpeakerStatus:
        now = time.time()
        sent: dict[str, int] = {}
        for a in self.applied:
            sent[a.peer] = sent.get(a.peer, 0) + 1
        sessions = []
        for s in sorted(self.sessions.snapshot(), key=lambda x: x.peer):
            up = s.state == "established" and s.established_at is not None
            n_sent = sent.get(s.peer, 0) if s.state == "established" else 0
            sessions.append(SessionStatus(
                s.peer, s.name, s.state, round(now - s.established_at, 1)
                if up and s.established_at else None, s.last_error, n_sent, len(s.received),
                s.bfd, s.flaps))
            labels = (self.opts.node, s.peer, s.name)
            self.metrics.session_up.labels(*labels).set(1 if s.state == "established" else 0)
            self.metrics.prefixes_sent.labels(*labels).set(n_sent)
            self.metrics.prefixes_received.labels(*labels).set(len(s.received))
            self.metrics.session_flaps.labels(*labels).set(s.flaps)
            if s.bfd is not None:
                self.metrics.bfd_up.labels(*labels).set(1 if s.bfd == "up" else 0)
        self.metrics.exabgp_starts.labels(self.opts.node).set(self.exabgp.starts)
        announced = tuple(sorted({a.prefix for a in self.applied}))
        feats: tuple[str, ...] = ()
        caps: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            feats = self.kernel.features().missing
            caps = self.kernel.features().caps.to_doc()
        return SpeakerStatus(
            node=self.opts.node, pid=os.getpid(), updated_at=now_iso(now),
            generation=self.applied_generation, applied_at=self.report.applied_at,
            seen_generation=self.report.seen_generation, drained=self.drained(),
            last_reconcile_at=self.report.reconcile_at,
            last_reconcile_ms=self.report.reconcile_ms,
            last_reconcile_ok=self.report.reconcile_ok, last_error=self.report.last_error,
            sessions=tuple(sessions), announced=announced, installed=dict(self.report.installed),
            skipped=tuple(self.report.skipped), missing_kernel_features=feats,
            exabgp={"running": self.exabgp.alive(), "starts": self.exabgp.starts,
                    "lastExit": self.exabgp.last_exit},
            datapath=self.datapath, capabilities=caps, bpf=self.bpf_report,
        )

    def write_status(self) -> None:
        try:
            write_atomic(self.opts.status_path, self.status().to_json())
        except OSError as exc:
            self.log.error("status_write_failed", path=self.opts.status_path, error=str(exc))


class BpfAdapter(Protocol):
    """speaker.bpf.datapath.BpfDatapath, as the agent uses it (a fake in unit tests)."""

    def load(self) -> None: ...
    def attach(self, ifname: str, prog: str) -> bool: ...
    def attached(self) -> dict[str, str]: ...
    def detach(self, ifname: str) -> None: ...
    def list_encap(self) -> list[EncapEntry]: ...
    def list_sids(self) -> list[SidEntry]: ...
    def list_locators(self) -> list[LocatorEntry]: ...
    def apply(self, *, put: Sequence[srv6_bpf.Entry] = (),
              delete: Sequence[srv6_bpf.Entry] = ()) -> list[tuple[object, str]]: ...
    def counters(self) -> dict[str, int]: ...
    def remove(self) -> None: ...


def _real_bpf(pin_dir: str) -> BpfAdapter:
    from speaker.bpf.datapath import BpfDatapath

    return BpfDatapath(pin_dir)


def list_links() -> list[str]:
    """Interface names of this network namespace (sysfs: `ip netns exec` remounts it)."""
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def _only_devices(r: Route, devices: set[str]) -> Route:
    return Route(r.dst, sorted_nexthops(n for n in r.nexthops if n.ifname in devices),
                 r.encap, r.table, r.metric, r.kind)


def agent_from_args(args: Any) -> Agent:
    return Agent(Options(
        node=args.node, state_dir=args.state_dir, run_dir=args.run_dir,
        config_dir=args.config_dir, node_state_file=args.node_state, node_file=args.node_file,
        status_file=args.status_file, metrics_port=args.metrics_port,
        metrics_addr=args.metrics_listen or "", interval=args.interval,
        bpf_dir=getattr(args, "bpf_dir", None) or DEFAULT_BPF_DIR))
