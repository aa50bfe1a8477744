"""The speaker's status document: what is really true on the node, for people and controllers.

Written atomically by the speaker after every reconcile (and at least every few seconds as a
heartbeat) to `<state-dir>/status/<node>.json`, beside the controller's `nodes/<node>.json`.
Controllers import `parse()`; it needs the standard library only.

    {
      "apiVersion": "flatroute.dev/v1",
      "kind": "SpeakerStatus",
      "node": "tk-n1",
      "pid": 4242,
      "updatedAt": "2026-01-01T10:00:00Z",      heartbeat: stale after a few seconds = not running
      "generation": "aaca371d5c59c343",         NodeState generation applied (null: none yet)
      "appliedAt": "2026-01-01T09:59:58Z",
      "seenGeneration": "aaca371d5c59c343",     last generation read (differs when it is bad)
      "drained": false,
      "lastReconcile": {"at": "...", "durationMs": 3.1, "ok": true},
      "lastError": null,                        plain words: "invalid node state: ...", ...
      "sessions": [{"peer": "10.1.1.1", "name": "tk-r1-a", "state": "established",
                    "uptimeSeconds": 12.5, "lastError": null, "prefixesSent": 1,
                    "prefixesReceived": 1, "bfd": null, "flaps": 0}],
      "announced": ["10.244.0.0/26", "fcbb:bb00:1:1::/64"],
      "installed": {"routes": 2, "encap": 2, "sids": 3},
      "skipped": [{"what": "SID fcbb::44 (End.DT4)", "reason": "missing kernel feature: vrf"}],
      "missingKernelFeatures": ["vrf: ..."],
      "exabgp": {"running": true, "starts": 1, "lastExit": null},
      "removed": null,                          or, once its tombstone is read:
                 {"at": "...", "reason": "not in the fabric", "state": "leaving" | "left",
                  "why": "notified" | "deadline" | "nothing applied" | null},
      "services": [{"prefix": "198.51.100.2/32", "service": "default/web",   only when the
                    "source": "LoadBalancer", "reason": "Local: 1 ready ...",  node has any
                    "communities": ["65200:100"], "announcedTo": ["10.0.51.1"]}]
    }

Session states: idle (not started), connect (TCP up, no OPEN yet), established, down.
Session `bfd`: up, down, off (this ToR runs no BFD: BGP alone decides), null (not known yet).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

API_VERSION = "flatroute.dev/v1"
KIND = "SpeakerStatus"
#: a status not refreshed for this long means the speaker is not running
STALE_AFTER = 15.0


class StatusError(Exception):
    """The status document is missing or malformed."""


def now_iso(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class SessionStatus:
    peer: str
    name: str
    state: str
    uptimeSeconds: float | None
    lastError: str | None
    prefixesSent: int
    prefixesReceived: int
    bfd: str | None = None
    flaps: int = 0


@dataclass(frozen=True, slots=True)
class SpeakerStatus:
    node: str
    pid: int
    updated_at: str
    generation: str | None
    applied_at: str | None
    seen_generation: str | None
    drained: bool
    last_reconcile_at: str | None
    last_reconcile_ms: float | None
    last_reconcile_ok: bool
    last_error: str | None
    sessions: tuple[SessionStatus, ...]
    announced: tuple[str, ...]
    installed: dict[str, int] = field(default_factory=dict)
    skipped: tuple[dict[str, str], ...] = ()
    missing_kernel_features: tuple[str, ...] = ()
    exabgp: dict[str, Any] = field(default_factory=dict)
    #: kernel | bpf (null: SRv6 off or not chosen yet)
    datapath: str | None = None
    #: the capability probe's result (speaker.capabilities.Capabilities.to_doc())
    capabilities: dict[str, Any] = field(default_factory=dict)
    #: the eBPF datapath: map entries, attached interfaces, per-CPU drop/packet counters
    bpf: dict[str, Any] | None = None
    #: the node was removed from the fabric (its tombstone): see the module docstring
    removed: dict[str, Any] | None = None
    #: the node's service routes: prefix, service, source, reason, communities, announcedTo
    services: tuple[dict[str, Any], ...] = ()

    def is_stale(self, now: float | None = None) -> bool:
        return (now or time.time()) - parse_iso(self.updated_at) > STALE_AFTER

    def to_json(self) -> str:
        doc = {
            "apiVersion": API_VERSION, "kind": KIND, "node": self.node, "pid": self.pid,
            "updatedAt": self.updated_at, "generation": self.generation,
            "appliedAt": self.applied_at, "seenGeneration": self.seen_generation,
            "drained": self.drained,
            "lastReconcile": {"at": self.last_reconcile_at, "durationMs": self.last_reconcile_ms,
                              "ok": self.last_reconcile_ok},
            "lastError": self.last_error,
            "sessions": [asdict(s) for s in self.sessions],
            "announced": list(self.announced), "installed": dict(self.installed),
            "skipped": [dict(s) for s in self.skipped],
            "missingKernelFeatures": list(self.missing_kernel_features),
            "exabgp": dict(self.exabgp),
            "srv6Datapath": self.datapath, "capabilities": dict(self.capabilities),
            "bpf": self.bpf, "removed": self.removed,
        }
        if self.services:
            doc["services"] = [dict(x) for x in self.services]
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def parse(text: str, source: str = "<status>") -> SpeakerStatus:
    """Parse a status document; raises StatusError naming the source."""
    try:
        doc = json.loads(text)
        if doc.get("kind") != KIND:
            raise StatusError(f"{source}: not a {KIND} document")
        rec = doc.get("lastReconcile") or {}
        return SpeakerStatus(
            node=str(doc["node"]), pid=int(doc.get("pid", 0)), updated_at=str(doc["updatedAt"]),
            generation=doc.get("generation"), applied_at=doc.get("appliedAt"),
            seen_generation=doc.get("seenGeneration"), drained=bool(doc.get("drained")),
            last_reconcile_at=rec.get("at"), last_reconcile_ms=rec.get("durationMs"),
            last_reconcile_ok=bool(rec.get("ok")), last_error=doc.get("lastError"),
            sessions=tuple(SessionStatus(
                peer=str(s["peer"]), name=str(s.get("name", "")), state=str(s["state"]),
                uptimeSeconds=s.get("uptimeSeconds"), lastError=s.get("lastError"),
                prefixesSent=int(s.get("prefixesSent", 0)),
                prefixesReceived=int(s.get("prefixesReceived", 0)), bfd=s.get("bfd"),
                flaps=int(s.get("flaps", 0))) for s in doc.get("sessions") or ()),
            announced=tuple(str(x) for x in doc.get("announced") or ()),
            installed={str(k): int(v) for k, v in (doc.get("installed") or {}).items()},
            skipped=tuple({"what": str(x["what"]), "reason": str(x["reason"])}
                          for x in doc.get("skipped") or ()),
            missing_kernel_features=tuple(str(x) for x in doc.get("missingKernelFeatures") or ()),
            exabgp=dict(doc.get("exabgp") or {}),
            datapath=doc.get("srv6Datapath"), capabilities=dict(doc.get("capabilities") or {}),
            bpf=dict(doc["bpf"]) if isinstance(doc.get("bpf"), dict) else None,
            removed=dict(doc["removed"]) if isinstance(doc.get("removed"), dict) else None,
            services=tuple(dict(x) for x in doc.get("services") or () if isinstance(x, dict)),
        )
    except StatusError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatusError(f"{source}: malformed status document: {exc}") from exc


def read(path: str) -> SpeakerStatus:
    try:
        with open(path, encoding="utf-8") as fh:
            return parse(fh.read(), path)
    except FileNotFoundError as exc:
        raise StatusError(f"{path}: no status (has the speaker ever run?)") from exc
    except OSError as exc:
        raise StatusError(f"{path}: cannot read status: {exc.strerror}") from exc


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else \
        f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render_text(st: SpeakerStatus, now: float | None = None) -> str:
    """Human-readable status for `flatroute speaker status`."""
    lines = [f"node {st.node}  pid {st.pid}  updated {st.updated_at}"
             + ("  (STALE: the speaker is not running)" if st.is_stale(now) else "")]
    lines.append(f"generation {st.generation or '-'} applied {st.applied_at or '-'}"
                 + (f"  (seen {st.seen_generation})"
                    if st.seen_generation and st.seen_generation != st.generation else "")
                 + ("  DRAINED" if st.drained else ""))
    if st.removed:
        lines.append(f"REMOVED from the fabric at {st.removed.get('at')} "
                     f"({st.removed.get('reason')}): "
                     + ("every announcement withdrawn, sessions ended"
                        f" ({st.removed.get('why')})" if st.removed.get("state") == "left"
                        else "withdrawing, ending the sessions"))
    rec = "ok" if st.last_reconcile_ok else "FAILED"
    lines.append(f"last reconcile {st.last_reconcile_at or '-'} "
                 f"({st.last_reconcile_ms if st.last_reconcile_ms is not None else '-'} ms, {rec})")
    if st.last_error:
        lines.append(f"last error: {st.last_error}")
    lines.append("")
    lines.append(f"{'PEER':<26} {'TOR':<14} {'STATE':<12} {'UPTIME':>7} {'SENT':>5} "
                 f"{'RCVD':>5} {'BFD':<5} LAST ERROR")
    for s in st.sessions:
        lines.append(f"{s.peer:<26} {s.name:<14} {s.state:<12} {_age(s.uptimeSeconds):>7} "
                     f"{s.prefixesSent:>5} {s.prefixesReceived:>5} {s.bfd or '-':<5} "
                     f"{s.lastError or ''}")
    lines.append("")
    lines.append("announced: " + (", ".join(st.announced) or "nothing"))
    for sv in st.services:
        to = ", ".join(sv.get("announcedTo") or ()) or "NOT announced"
        lines.append(f"service {sv.get('prefix')} {sv.get('service')} ({sv.get('source')}): "
                     f"{sv.get('reason')} -> {to}")
    lines.append("installed: " + ", ".join(f"{k} {v}" for k, v in sorted(st.installed.items())))
    for sk in st.skipped:
        lines.append(f"not installed: {sk['what']}: {sk['reason']}")
    for f in st.missing_kernel_features:
        lines.append(f"missing kernel feature: {f}")
    if st.datapath:
        lines.append(f"srv6 datapath: {st.datapath}")
    if st.bpf:
        ents = st.bpf.get("entries") or {}
        lines.append("bpf maps: " + ", ".join(f"{k} {v}" for k, v in sorted(ents.items()))
                     + f"  (pinned in {st.bpf.get('pinDir')})")
        att = st.bpf.get("attached") or {}
        lines.append("bpf programs: " + (", ".join(f"{d} {p}" for d, p in sorted(att.items()))
                                         or "none attached"))
        lines.append("bpf counters: " + ", ".join(
            f"{k} {v}" for k, v in sorted((st.bpf.get("counters") or {}).items())))
    ex = st.exabgp
    lines.append(f"exabgp: {'running' if ex.get('running') else 'NOT running'}, "
                 f"started {ex.get('starts', 0)}x"
                 + (f", last exit: {ex['lastExit']}" if ex.get("lastExit") else ""))
    return "\n".join(lines) + "\n"


# -- health: what `flatroute speaker status` exits with -------------------------------------
#: every session that should be up is, the desired generation is applied, no error
HEALTHY = 0
#: (the CLI's own error: no status document, or one that cannot be read)
ERROR = 1
#: the status is stale: the speaker is not running (or is stuck)
NOT_RUNNING = 3
#: traffic flows (a session is usable) but something is wrong: a session or BFD down, an
#: error in the last pass, a generation seen but not applied, drained, leaving the fabric
DEGRADED = 4
#: a BGP outage: no session usable, ExaBGP not running, or nothing applied yet
DOWN = 5


@dataclass(frozen=True, slots=True)
class Health:
    code: int
    reasons: tuple[str, ...]

    @property
    def words(self) -> str:
        name = {HEALTHY: "healthy", NOT_RUNNING: "not running", DEGRADED: "degraded",
                DOWN: "down"}.get(self.code, "error")
        return name + (": " + "; ".join(self.reasons) if self.reasons else "")


def health(st: SpeakerStatus, now: float | None = None) -> Health:
    """The speaker's health from its status document (pure; `now` for the staleness)."""
    if st.is_stale(now):
        return Health(NOT_RUNNING, (f"status not refreshed since {st.updated_at}",))
    if st.removed:
        if st.removed.get("state") == "left":
            return Health(HEALTHY, ("removed from the fabric: nothing announced, as asked",))
        return Health(DEGRADED, ("leaving the fabric: withdrawing",))
    down: list[str] = []
    if not st.exabgp.get("running"):
        down.append("ExaBGP is not running"
                    + (f" ({st.exabgp['lastExit']})" if st.exabgp.get("lastExit") else ""))
    usable = [s for s in st.sessions if s.state == "established" and s.bfd != "down"]
    if not usable:
        down.append("no BGP session is up" if st.sessions else "no BGP session configured")
    if st.generation is None:
        down.append("no node state applied yet")
    problems = [f"session {s.name or s.peer} ({s.peer}) {s.state}"
                + (f": {s.lastError}" if s.lastError else "")
                for s in st.sessions if s not in usable]
    if down:
        return Health(DOWN, tuple(down + problems + ([st.last_error] if st.last_error else [])))
    if st.seen_generation is not None and st.seen_generation != st.generation:
        problems.append(f"generation {st.seen_generation} seen, {st.generation} applied")
    if st.drained:
        problems.append("drained: nothing announced on purpose")
    if st.last_error:
        problems.append(st.last_error)
    return Health(DEGRADED if problems else HEALTHY, tuple(problems))
