"""The eBPF SRv6 datapath, the pure part: the same route model, as map entries and attachments.

The speaker plans SRv6 once, as `speaker.routes.Route` values (`reconcile.srv6_routes`): seg6
encapsulation routes and seg6local SIDs. On the kernel datapath they become routes; on the eBPF
datapath this module turns them into entries of the programs' maps (an LPM trie per family of
remote prefixes, a hash of local SIDs, the node's locators) and says which interface carries
which program: the encapsulating program at tc ingress of every pod's host veth, the SID program
(End, End.DX4/DT4/DT6/DT46, and the uSIDs uN, uA, uDT4/uDT6/uDT46 matched by prefix) at tc
ingress of every uplink. Reconciling is then as for routes:
desired against what the maps hold, by key, owned entries only (the maps are ours alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from speaker.bpf.maps import USID_BEHAVIORS, EncapEntry, LocatorEntry, SidEntry, UsidEntry
from speaker.routes import Route, Seg6Encap, Seg6Local

Entry = EncapEntry | SidEntry | LocatorEntry | UsidEntry

#: which program an interface gets (speaker.bpf.datapath.PROG_*)
PROG_ENCAP = "flr_encap"
PROG_SID = "flr_sid"


@dataclass(frozen=True, slots=True)
class Desired:
    entries: frozenset[Entry]
    #: interface name -> program name
    attach: dict[str, str]


def key(e: Entry) -> tuple[str, str]:
    if isinstance(e, EncapEntry):
        return ("encap", str(e.prefix))
    if isinstance(e, SidEntry):
        return ("sid", str(e.sid))
    if isinstance(e, UsidEntry):
        return ("usid", str(e.prefix))
    return ("locator", str(e.prefix))


def entries(routes: Iterable[Route], *, source: IPv6Address | None,
            locator: IPv6Network | None) -> tuple[frozenset[Entry], list[str]]:
    """Map entries for the planned SRv6 routes; problems (not programmable) as text."""
    out: set[Entry] = set()
    problems: list[str] = []
    for r in routes:
        if isinstance(r.encap, Seg6Encap):
            if source is None:
                problems.append(f"encap route {r.dst}: the node has no End SID to use as the "
                                "outer source address")
                continue
            out.add(EncapEntry(r.dst, r.encap.mode, r.encap.segments, source))
        elif isinstance(r.encap, Seg6Local):
            if not isinstance(r.dst, IPv6Network):
                problems.append(f"SID {r.dst}: not IPv6")
                continue
            if r.encap.action in USID_BEHAVIORS:
                out.add(UsidEntry(r.dst, r.encap.action, r.encap.nh6))
            else:
                out.add(SidEntry(r.dst.network_address, r.encap.action))
    if locator is not None and out:
        out.add(LocatorEntry(locator))
    return frozenset(out), problems


def desired(routes: Iterable[Route], *, source: IPv6Address | None,
            locator: IPv6Network | None, uplinks: Iterable[str],
            pod_veths: Iterable[str]) -> tuple[Desired, list[str]]:
    ents, problems = entries(routes, source=source, locator=locator)
    attach = dict.fromkeys(uplinks, PROG_SID)
    if any(isinstance(e, EncapEntry) for e in ents):
        attach.update(dict.fromkeys(pod_veths, PROG_ENCAP))
    return Desired(ents, attach), problems


def diff(want: Iterable[Entry], have: Iterable[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(put, delete): put what is new or changed, delete what is no longer wanted."""
    w = {key(e): e for e in want}
    h = {key(e): e for e in have}
    put = [e for k, e in sorted(w.items()) if h.get(k) != e]
    delete = [e for k, e in sorted(h.items()) if k not in w]
    return put, delete


def after(have: Iterable[Entry], put: Iterable[Entry], delete: Iterable[Entry],
          failed: Iterable[object]) -> list[Entry]:
    """The entries in force once `put` and `delete` were applied to `have`, but `failed`."""
    bad = set(failed)
    now = {key(e): e for e in have}
    for e in delete:
        if e not in bad:
            now.pop(key(e), None)
    for e in put:
        if e not in bad:
            now[key(e)] = e
    return list(now.values())


def attach_diff(want: dict[str, str], have: dict[str, str], present: Sequence[str]
                ) -> tuple[list[tuple[str, str]], list[str]]:
    """(attach, detach): (device, program) to attach where missing or different; devices to
    detach. Devices that do not exist (yet) are left out of both."""
    exists = set(present)
    attach = [(d, p) for d, p in sorted(want.items()) if d in exists and have.get(d) != p]
    detach = [d for d in sorted(have) if d not in want and d in exists]
    return attach, detach


def counts(ents: Iterable[Entry]) -> dict[str, int]:
    out = {"encap": 0, "sids": 0, "locators": 0}
    for e in ents:
        out["encap" if isinstance(e, EncapEntry) else "sids" if isinstance(
            e, SidEntry | UsidEntry) else "locators"] += 1
    return out
