"""`flatroute controller status`: what is published, and what each speaker applied.

Everything is read from the state directory, defensively (a half-written or foreign file shows
as unknown, never as a traceback): `controller.json` (the controller's record),
`nodes/<node>.json` (published NodeState documents) and `status/<node>.json` (what the speaker
of that node reports; at least `node`, `generation` of the NodeState applied and `applied_at`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.record import load_record_doc

NOT_REPORTED = "not reported"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _json_files(directory: Path) -> dict[str, Path]:
    try:
        with os.scandir(directory) as it:
            return {e.name[:-5]: Path(e.path) for e in it
                    if e.name.endswith(".json") and not e.name.startswith(".")}
    except OSError:
        return {}


def speaker_report(path: Path | None, published_generation: str | None) -> dict[str, Any]:
    """One speaker's status document, reduced to what the controller shows."""
    doc = _load(path) if path is not None else None
    if not isinstance(doc, dict) or not _str(doc.get("generation")):
        state = NOT_REPORTED if path is None else f"{NOT_REPORTED} (malformed report)"
        return {"state": state, "generation": None, "appliedAt": None, "error": None}
    gen = _str(doc.get("generation"))
    applied_at = _str(doc.get("applied_at")) or _str(doc.get("appliedAt"))
    error = doc.get("error") or doc.get("last_error") or doc.get("lastError")
    state = "applied" if gen == published_generation else "stale"
    if error:
        state += " with errors"
    return {"state": state, "generation": gen, "appliedAt": applied_at,
            "error": str(error) if error else None}


def gather(state_dir: str | Path) -> dict[str, Any]:
    """The whole status as one JSON-able document (what --json prints)."""
    root = Path(state_dir)
    record = load_record_doc(root)
    rec = _dict(record)
    published = _dict(rec.get("nodes"))
    reports = _json_files(root / "status")
    nodes: list[dict[str, Any]] = []
    sites: dict[str, dict[str, Any]] = {}
    for name, path in sorted(_json_files(root / "nodes").items()):
        doc = _dict(_load(path))
        spec = _dict(doc.get("spec"))
        srv6 = _dict(spec.get("srv6"))
        gen = _str(doc.get("generation"))
        pub = _dict(published.get(name))
        published_at = _str(pub.get("publishedAt")) if pub.get("generation") == gen else None
        if published_at is None:
            try:
                published_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(
                    timespec="seconds")
            except OSError:
                published_at = None
        site = _str(spec.get("site")) or "?"
        blocks = _dict(spec.get("podBlocks"))
        nodes.append({
            "name": name, "site": site, "rack": _str(spec.get("rack")),
            "role": _str(spec.get("role")),
            "podBlocks": {"ipv4": _list(blocks.get("ipv4")), "ipv6": _list(blocks.get("ipv6"))},
            "locator": _str(srv6.get("locator")),
            "sids": [s for s in _list(srv6.get("localSids")) if isinstance(s, dict)],
            "generation": gen, "publishedAt": published_at,
            "speaker": speaker_report(reports.get(name), gen),
        })
        entry = sites.setdefault(site, {"name": site, "nodes": 0, "gateways": [],
                                        "segments": None})
        entry["nodes"] += 1
        if spec.get("role") == "gateway":
            entry["gateways"].append(name)
        if entry["segments"] is None:  # every node of a site carries the site's segments
            entry["segments"] = [r for r in _list(srv6.get("routes")) if isinstance(r, dict)]
    for s in sites.values():
        s["segments"] = s["segments"] or []
        s["policies"] = sorted({str(r["policy"]) for r in s["segments"] if r.get("policy")})
    return {
        "stateDir": str(root),
        "controller": None if record is None else {
            "fabric": rec.get("fabric"), "lastPlanAt": rec.get("lastPlanAt"),
            "lastAttemptAt": rec.get("lastAttemptAt"), "lastError": rec.get("lastError"),
            "problems": _list(rec.get("problems")), "heldBack": _list(rec.get("heldBack")),
            "releaseGraceSeconds": rec.get("releaseGraceSeconds"),
            "retired": _dict(rec.get("retired")),
        },
        "nodes": nodes,
        "sites": [sites[k] for k in sorted(sites)],
        "unknownReports": sorted(set(reports) - {n["name"] for n in nodes}),
        "services": _load(root / "services-status.json") if (
            root / "services-status.json").exists() else None,
    }


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [headers, *rows]]


def render(view: dict[str, Any]) -> str:
    out: list[str] = []
    ctl = view["controller"]
    if ctl is None:
        out.append(f"controller: no record in {view['stateDir']} (has it run?)")
    else:
        fab = _dict(ctl.get("fabric"))
        digest = str(fab.get("sha256") or "")[:12]
        out.append(f"controller: fabric {fab.get('source') or '-'} (sha256 {digest or '-'}); "
                   f"last plan {ctl.get('lastPlanAt') or 'never'}, "
                   f"last attempt {ctl.get('lastAttemptAt') or 'never'}")
        err = ctl.get("lastError")
        if isinstance(err, dict):
            out.append(f"last error at {err.get('at')} (the last good state stays published):")
            out.extend(f"  {e}" for e in _list(err.get("errors")))
        for p in ctl.get("problems") or ():
            if isinstance(p, dict):
                out.append(f"problem: {p.get('node')}: {p.get('message')}")
        if ctl.get("heldBack"):
            out.append("held back (not published): " + ", ".join(map(str, ctl["heldBack"])))
    rows = []
    for n in view["nodes"]:
        sp = n["speaker"]
        applied = sp["state"] if sp["generation"] is None else (
            f"{sp['state']} {sp['generation']} at {sp['appliedAt'] or '?'}")
        blocks = " ".join(map(str, [*n["podBlocks"]["ipv4"], *n["podBlocks"]["ipv6"]])) or "-"
        sids = " ".join(f"{s.get('behavior')}={s.get('sid')}" for s in n["sids"]) or "-"
        rows.append([n["name"], n["site"], n["role"] or "-", blocks, n["locator"] or "-", sids,
                     n["generation"] or "-", n["publishedAt"] or "-", applied])
    out.append("")
    out.extend(_table(["NODE", "SITE", "ROLE", "POD BLOCKS", "LOCATOR", "SIDS", "GENERATION",
                       "PUBLISHED", "SPEAKER"], rows))
    out.append("")
    out.extend(_table(["SITE", "NODES", "GATEWAYS", "SEGMENTS", "POLICIES"],
                      [[s["name"], str(s["nodes"]), ", ".join(s["gateways"]) or "-",
                        str(len(s["segments"])), ", ".join(s["policies"]) or "-"]
                       for s in view["sites"]]))
    seg_rows = [[s["name"], str(r.get("prefix")), " -> ".join(map(str, _list(r.get("segments")))),
                 str(r.get("target") or "-"), str(r.get("policy") or "-")]
                for s in view["sites"] for r in s["segments"]]
    if seg_rows:
        out.append("")
        out.extend(_table(["FROM SITE", "PREFIX", "SEGMENT LIST", "DECAP AT", "POLICY"],
                          seg_rows))
    retired = _dict(ctl.get("retired")) if ctl else {}
    if retired:
        out.append("")
        out.extend(_table(["RETIRED NODE", "RETIRED AT", "ALLOCATIONS RELEASED AT",
                           "TOMBSTONE"],
                          [[k, str(_dict(v).get("retiredAt")), str(_dict(v).get("releaseAt")),
                            "published" if _dict(v).get("tombstone") else "-"]
                           for k, v in sorted(retired.items())]))
    out += _services_lines(_dict(view.get("services")))
    if view["unknownReports"]:
        out.append("")
        out.append("speaker reports without a published state: "
                   + ", ".join(view["unknownReports"]))
    return "\n".join(out) + "\n"


def _services_lines(svc: dict[str, Any]) -> list[str]:
    """Pools with their use, allocations and who announces them (static mode)."""
    if not svc:
        return []
    out = [""]
    out.extend(_table(["POOL", "PREFIXES", "USED", "SIZE", "SCOPE"], [
        [str(p.get("name")), " ".join(map(str, _list(p.get("prefixes")))), str(p.get("used")),
         str(p.get("size")), " ".join(map(str, [*_list(p.get("sites")),
                                                *_list(p.get("racks"))])) or "everywhere"]
        for p in _list(svc.get("pools")) if isinstance(p, dict)]))
    announcers = _dict(svc.get("announcers"))
    rows = []
    for key, a in sorted(_dict(svc.get("allocations")).items()):
        addrs = _list(_dict(a).get("addresses"))
        who = sorted({n for addr in addrs for k, ns in announcers.items()
                      if k.startswith(f"{key} {addr}/") for n in _list(ns)})
        rows.append([key, str(_dict(a).get("pool")), " ".join(map(str, addrs)),
                     ", ".join(who) or "-"])
    if rows:
        out.append("")
        out.extend(_table(["SERVICE", "POOL", "ADDRESSES", "ANNOUNCED BY"], rows))
    for p in _list(svc.get("problems")):
        if isinstance(p, dict):
            out.append(f"service problem: {p.get('service')}: {p.get('reason')}: "
                       f"{p.get('message')}")
    return out


def render_json(view: dict[str, Any]) -> str:
    return json.dumps(view, indent=2, sort_keys=True) + "\n"
