"""The speaker loop: read the NodeState, make BGP and the kernel match it, say what is true.

Level-triggered: every pass reads the node state file, lists our kernel routes, diffs and applies;
passes run on a timer and whenever something changes (an ExaBGP event, SIGHUP from `drain`).
One pass: load the desired state (all or nothing), resolve unnumbered peers, apply the node
settings, `session.set(announcements)`, BFD, reconcile the kernel (routes, or the eBPF maps and
attachments), write the status. Every piece lives in a module of its own; every adapter
(kernel, ExaBGP, bfdd, eBPF, router discovery, clock) is injected and has a fake in the tests.

Graceful restart, both ways:
- Stopping (SIGTERM/SIGINT) kills ExaBGP with SIGKILL: no Cease NOTIFICATION, so the ToR keeps our
  routes as stale; kernel routes are left in place. SIGKILL of the speaker kills ExaBGP with it
  (parent-death signal) to the same effect.
- Starting, the kernel still holds the learned ECMP routes of the previous run: each peer's paths
  are held until that peer is established again and has sent its End-of-RIB (or a cap passes),
  and the announcements are in ExaBGP's config, sent before its End-of-RIB (`speaker.grace`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flatroute import ROUTE_PROTOCOL, tombstone
from flatroute.errors import FlatrouteError, InvalidInput
from flatroute.fabric.naming import is_pod_veth
from flatroute.files import write_atomic
from flatroute.logging import get_logger
from flatroute.nodestate import NodeState
from flatroute.speaker_status import SpeakerStatus, now_iso
from flatroute.tombstone import Removed
from speaker import (
    announce,
    bfd,
    exabgp_config,
    farewell,
    grace,
    kernel_routes,
    linkwatch,
    node_settings,
    report,
    services,
    statewatch,
    uplinks,
)
from speaker.bfd import BfdAdapter, Bfdd
from speaker.bpf_reconcile import BpfAdapter, BpfSync, list_links, real_bpf
from speaker.capabilities import (
    DatapathUnavailable,
    choose_datapath,
    needed_missing,
    why_not_kernel,
)
from speaker.clock import Clock, SystemClock
from speaker.desired import DEFAULT_BPF_DIR, Desired, Options, load
from speaker.diagnose import Diagnose
from speaker.discovery import Discovery, Ndisc, RealNdisc
from speaker.exabgp_json import Event, Shutdown
from speaker.exabgp_process import ExaBGP, ExaBGPProcess
from speaker.leave import Leaver
from speaker.metrics import Metrics
from speaker.netlink import Kernel, KernelAdapter
from speaker.session import ExaBGPSession
from speaker.sessions import Session, Sessions
from speaker.tcpprobe import TcpProbe, probe

__all__ = ["Agent", "BpfAdapter", "Desired", "Options", "agent_from_args", "load"]

#: makes the ExaBGP process adapter: (paths, event handler, log)
ExaBGPFactory = Callable[[exabgp_config.Paths, Callable[[Event], None], Any], ExaBGPProcess]


def _real_exabgp(opts: Options) -> ExaBGPFactory:
    def make(paths: exabgp_config.Paths, on_event: Callable[[Event], None],
             log: Any) -> ExaBGPProcess:
        return ExaBGP(paths, on_event, command=opts.exabgp_command, log=log)
    return make


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
                 bpf: Callable[[str], BpfAdapter] | None = None,
                 exabgp: ExaBGPFactory | None = None, bfdd: BfdAdapter | None = None,
                 ndisc: Ndisc | None = None, clock: Clock | None = None,
                 links: Callable[[], list[str]] = list_links,
                 tcp_probe: TcpProbe = probe) -> None:
        self.opts = opts
        self.log = get_logger(node=opts.node)
        self.clock: Clock = clock or SystemClock()
        self.kernel: KernelAdapter = kernel or Kernel(ROUTE_PROTOCOL)
        self.metrics = Metrics(opts.node)
        self.bpf = BpfSync(opts.bpf_dir, self.metrics, opts.node, self.log,
                           factory=bpf or real_bpf, links=links)
        self.datapath: str | None = None
        self.sessions = Sessions(self.clock.time)
        self.trigger = threading.Event()
        self.stopping = threading.Event()
        self.desired: Desired | None = None
        #: `desired` with unnumbered peers resolved to link-local sessions: what is applied
        self.resolved: Desired | None = None
        self.diagnose = Diagnose(self.sessions, tcp_probe)
        self.discovery = Discovery(ndisc or RealNdisc(), self.kernel, self.log)
        self.report = _Report()
        pipename = "flatroute-" + hashlib.sha256(opts.run_dir.encode()).hexdigest()[:10]
        self.paths = exabgp_config.Paths(opts.run_dir, pipename)
        process = (exabgp or _real_exabgp(opts))(self.paths, self._on_event, self.log)
        self.session = ExaBGPSession(process, self.paths, log=self.log,
                                     on_restart=self._on_exabgp_restart)
        self.bfdd: BfdAdapter = bfdd or Bfdd(opts.run_dir, self.log)
        self.bfdd.subscribe(self._on_bfd)
        self.hold = grace.RestartHold(self.clock.monotonic())
        self.static_done = ""  # generation whose static parts (sysctls, files) were applied
        self.applied_generation: str | None = None
        #: the node's tombstone, once read: it was removed from the fabric (speaker.farewell)
        self.removal: Removed | None = None
        self.leaver = Leaver(self.session, self.sessions, self.bfdd, self.clock, self.log)

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

    def _on_bfd(self, peer: str, state: str) -> None:
        """bfdd saw a peer change state (its event thread): the kernel follows in this pass."""
        if self.sessions.set_bfd(peer, state):
            self.log.info("bfd_state", peer=peer, state=state, via="event")
            self.trigger.set()

    def _on_exabgp_restart(self) -> None:
        """A fresh ExaBGP: what the old one learned is gone; hold learned paths again."""
        self.sessions.exabgp_lost()
        self.hold.restart(self.clock.monotonic())

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
        statewatch.watch(self.opts.node_state_path, self.trigger.set, self.stopping)
        self.log.info("speaker_started", node_state=self.opts.node_state_path,
                      run_dir=self.opts.run_dir)
        waiting = 0.25  # no node state yet: look again soon, backing off to the interval
        try:
            while not self.stopping.is_set():
                self.reconcile_once()
                if self.desired is None:
                    wait, waiting = waiting, min(waiting * 2, self.opts.interval)
                else:
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
        """Planned stop: service routes withdrawn first (acknowledged); then no NOTIFICATION,
        kernel routes stay, the ToR keeps the pod blocks as stale (graceful restart). A
        removed node (its tombstone published) first finishes leaving the fabric."""
        with contextlib.suppress(Exception):
            self._load()  # a tombstone published just now still counts
            if self.removal is not None:
                self.leaver.finish(self.reconcile_once, self.trigger)
        if self.removal is None:
            self._withdraw_services()
        self.session.close()
        self.log.info("speaker_stopped", kernel_routes="kept", bgp="graceful restart")
        with contextlib.suppress(Exception):
            self.write_status()

    def _withdraw_services(self) -> None:
        d = self.resolved
        keep = services.withdraw_first(self.session.applied, d.state) if d else None
        if d is None or keep is None or not self.session.connected():
            return
        try:
            self.session.set(d.state, keep, md5=d.md5)
            self.log.info("service_routes_withdrawn", reason="speaker stopping")
        except FlatrouteError as exc:
            self.log.error("service_routes_withdraw_failed", error=str(exc))

    def drained(self) -> bool:
        return os.path.exists(self.opts.drain_flag)

    def reconcile_once(self) -> None:
        t0 = self.clock.monotonic()
        errors: list[str] = []
        try:
            load_error = self._load()
            if load_error:
                errors.append(load_error)
            if self.removal is not None:
                errors += self._leave(self.removal)
            elif self.desired is not None:  # bad input: the last good state stays in force
                errors += self._reconcile(self.desired)
        except FlatrouteError as exc:
            errors.append(str(exc))
        except Exception as exc:  # keep running, say what happened
            errors.append(f"internal error: {type(exc).__name__}: {exc}")
            self.log.exception("reconcile_crashed")
        if errors:
            self.metrics.reconcile_errors.labels(self.opts.node).inc()
            self.log.error("reconcile_failed", errors=errors)
        dt = self.clock.monotonic() - t0
        self.metrics.reconcile_seconds.labels(self.opts.node).observe(dt)
        self.report.last_error = "; ".join(errors) or None
        self.report.reconcile_at = now_iso(self.clock.time())
        self.report.reconcile_ms = round(dt * 1000, 2)
        self.report.reconcile_ok = not errors
        self.write_status()

    def _load(self) -> str | None:
        """Load the node state; returns an error text (and keeps the old state) when bad."""
        try:
            new = load(self.opts)
        except InvalidInput as exc:
            if self.removal is not None and not os.path.exists(self.opts.node_state_path):
                return None  # the tombstone is gone too: its allocations were released
            self.report.seen_generation = None
            self.log.error("node_state_invalid", errors=[str(e) for e in exc.errors])
            return "invalid node state, nothing of it applied: " + "; ".join(
                str(e) for e in exc.errors)
        if isinstance(new, Removed):
            if self.removal is None:
                self.log.warning("node_removed", removed_at=new.at, reason=new.reason)
            self.removal = new
            self.report.seen_generation = tombstone.generation(new)
            return None
        if self.removal is not None:
            self.log.info("node_back_in_fabric", generation=new.generation)
            self.removal, self.static_done = None, ""
            self.leaver.progress.reset()
        self.report.seen_generation = new.generation
        if new.state.srv6_enabled:
            try:
                behaviors = [sid.behavior.value for sid in new.state.local_sids]
                new.datapath = choose_datapath(new.state.srv6_datapath,
                                               self.kernel.features().caps, behaviors)
            except DatapathUnavailable as exc:
                self.report.seen_generation = None
                self.log.error("srv6_datapath_unavailable", wanted=new.state.srv6_datapath,
                               reason=str(exc))
                return (f"invalid node state, nothing of it applied: "
                        f"{self.opts.node_state_path}: spec.srv6.datapath: {exc}")
            if self.datapath != new.datapath:
                self.log.info("srv6_datapath_chosen", wanted=new.state.srv6_datapath,
                              datapath=new.datapath,
                              why_not_kernel=why_not_kernel(self.kernel.features().caps,
                                                            behaviors) or None)
        if self.desired is None or new.generation != self.desired.generation \
                or new.md5 != self.desired.md5:
            self.log.info("node_state_loaded", generation=new.generation)
        self.desired = new
        return None

    def _reconcile(self, wanted: Desired) -> list[str]:
        st, errors = uplinks.resolve(wanted.state, self.kernel.addresses())
        st, more = self.discovery.resolve(
            st, self._by_peer(), now=self.clock.monotonic(), wall=self.clock.time())
        errors += more
        d = self.resolved = Desired(st, wanted.generation, wanted.md5, wanted.datapath)
        # static settings (sysctls, files) again when the generation or an uplink changes
        static_key = d.generation + repr([u.interface for u in st.uplinks])
        if self.static_done != static_key:
            errors += node_settings.apply(self.kernel, st, d.datapath, self.opts.node_file_path)
            self.static_done = static_key if not errors else ""
        self.sessions.configure({str(p.address): (p.name, d.md5 is not None) for p in st.peers},
                                st.asn)
        try:
            # Drained: the service routes are withdrawn (and acknowledged) before the rest.
            for want in services.steps(st, announce.desired(st, drained=self.drained()),
                                       drained=self.drained(), applied=self.session.applied):
                self.session.set(st, want, md5=d.md5)
        except FlatrouteError as exc:
            errors.append(str(exc))
        errors += self._bfd(st)
        errors += self.diagnose.explain(st, alive=self.session.alive(),
                                        last_exit=self.session.last_exit,
                                        now=self.clock.monotonic())
        errors += self._kernel(st, d.datapath)
        if not errors:
            self.report.applied_at = now_iso(self.clock.time())
            self.applied_generation = d.generation
        return errors

    def _leave(self, removed: Removed) -> list[str]:
        """One step of leaving the fabric (speaker.leave): withdraw, notify, finish."""
        errors, finished = self.leaver.step(self.resolved)
        if finished:
            errors += self._left(removed)
        return errors

    def _left(self, removed: Removed) -> list[str]:
        """The sessions are ended: our routes, eBPF state and the CNI node file go."""
        errors = self.bpf.remove()
        if self.resolved is not None:
            more, self.report.installed = kernel_routes.sync(
                self.kernel, self.resolved.state, [], [], set(), self.log)
            errors += more
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.opts.node_file_path)
        self.applied_generation = tombstone.generation(removed)
        self.report.applied_at = now_iso(self.clock.time())
        return errors

    # -- pieces --------------------------------------------------------------------------------
    def _by_peer(self) -> dict[str, Session]:
        return {s.peer: s for s in self.sessions.snapshot()}

    def _bfd(self, st: NodeState) -> list[str]:
        return bfd.sync(self.bfdd, self.sessions, st, self.log)

    def _restart_cap(self, st: NodeState) -> float:
        return grace.restart_cap(st, self.opts.restart_hold)

    def _all_settled(self) -> bool:
        if self.removal is not None:
            return self.leaver.progress.done
        d = self.resolved
        if d is None:
            return True
        return self.hold.all_settled((str(p.address) for p in d.state.peers),
                                     self.clock.monotonic(), self._restart_cap(d.state))

    def _kernel(self, st: NodeState, datapath: str | None) -> list[str]:
        feats = self.kernel.features()
        errors: list[str] = []
        srv6, skipped = kernel_routes.srv6_plan(self.kernel, st, feats, datapath)
        if self.datapath != datapath:
            self.log.info("srv6_datapath_switched", previous=self.datapath, datapath=datapath)
            self.datapath = datapath
        on_bpf = datapath == "bpf"
        if on_bpf and not self.drained():
            errors += self.bpf.reconcile(st, srv6)
        else:
            errors += self.bpf.remove()
        if on_bpf:
            srv6 = []  # no seg6 route of ours stays in the kernel: the diff removes them
        by_peer = self._by_peer()
        held = self.hold.held_devices(st, by_peer, now=self.clock.monotonic(),
                                      wall=self.clock.time(), cap=self._restart_cap(st))
        more, counts = kernel_routes.sync(self.kernel, st, list(by_peer.values()), srv6, held,
                                          self.log)
        errors += more
        bpf_report = self.bpf.report
        if on_bpf and bpf_report and "entries" in bpf_report:
            # the same contract on both datapaths: encapsulations and SIDs in force
            counts["encap"] = bpf_report["entries"]["encap"]
            counts["sids"] = bpf_report["entries"]["sids"]
        self.report.installed = counts
        self.report.skipped = [{"what": s.what, "reason": s.reason} for s in skipped]
        self._kernel_metrics(counts, feats, datapath)
        return errors

    def _kernel_metrics(self, counts: dict[str, int], feats: Any, datapath: str | None) -> None:
        node = self.opts.node
        for kind, n in counts.items():
            self.metrics.routes.labels(node, kind).set(n)
        self.metrics.missing_features.labels(node).set(len(self._missing()))
        for c in feats.caps.checks:
            self.metrics.capability.labels(node, c.name).set(1 if c.ok else 0)
        for name in ("kernel", "bpf"):
            self.metrics.datapath.labels(node, name).set(1 if datapath == name else 0)

    # -- status ------------------------------------------------------------------------------
    def _missing(self) -> tuple[str, ...]:
        """Kernel features missing that the applied node state needs (the whole probe is in
        `capabilities`): a fabric without SRv6 is never told it lacks VRF."""
        d = self.resolved
        behaviors = [s.behavior.value for s in d.state.local_sids] if d is not None else []
        return needed_missing(self.kernel.features().caps, self.datapath, behaviors)

    def status(self) -> SpeakerStatus:
        now = self.clock.time()
        sessions = report.session_statuses(self.sessions.snapshot(), self.session.applied,
                                           now, self.metrics, self.opts.node)
        self.metrics.exabgp_starts.labels(self.opts.node).set(self.session.starts)
        announced = tuple(sorted({a.prefix for a in self.session.applied}))
        svc = services.report(self.resolved.state, self.session.applied) \
            if self.resolved is not None else ()
        self.metrics.set_service_routes(svc)
        feats: tuple[str, ...] = ()
        caps: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            feats = self._missing()
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
            exabgp={"running": self.session.alive(), "starts": self.session.starts,
                    "lastExit": self.session.last_exit},
            datapath=self.datapath, capabilities=caps, bpf=self.bpf.report, services=svc,
            removed=farewell.status_doc(self.removal, self.leaver.progress),
        )

    def write_status(self) -> None:
        try:
            write_atomic(self.opts.status_path, self.status().to_json())
        except OSError as exc:
            self.log.error("status_write_failed", path=self.opts.status_path, error=str(exc))


def agent_from_args(args: Any) -> Agent:
    return Agent(Options(
        node=args.node, state_dir=args.state_dir, run_dir=args.run_dir,
        config_dir=args.config_dir, node_state_file=args.node_state, node_file=args.node_file,
        status_file=args.status_file, metrics_port=args.metrics_port,
        metrics_addr=args.metrics_listen or "", interval=args.interval,
        bpf_dir=getattr(args, "bpf_dir", None) or DEFAULT_BPF_DIR))
