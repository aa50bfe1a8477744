"""An SRv6 End SID on the eBPF datapath for a Linux router (a WAN or spine router running FRR)
whose kernel has no seg6local: the rendered `.srv6.sh` falls back to it, and the lab uses it for
its WAN routers. The SID program goes on every interface of the host; the SID and the router's
locator go into its maps. Idempotent, and `remove_end_sid` takes all of it away again."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from flatroute.errors import InvalidInput, field_error
from speaker.bpf.maps import USID_LENGTHS, LocatorEntry, SidEntry, UsidEntry
from speaker.srv6_bpf import PROG_SID, Entry

#: what `end-sid --behavior` takes: End (a full SID), or uN (a uSID: the SID is the locator's
#: own address, matched as the /48)
END_BEHAVIORS = ("End", "uN")


def _parse(sid: str, locator: str) -> tuple[IPv6Address, IPv6Network]:
    try:
        s = IPv6Address(sid)
    except ValueError as exc:
        raise InvalidInput([field_error("--sid", "", f"not an IPv6 address: {exc}", sid)]) \
            from exc
    try:
        loc = IPv6Network(locator)
    except ValueError as exc:
        raise InvalidInput([field_error("--locator", "", f"not an IPv6 prefix: {exc}",
                                        locator)]) from exc
    if s not in loc:
        raise InvalidInput([field_error("--sid", "", f"is not inside the locator {loc}", sid)])
    return s, loc


def end_entries(sid: str, locator: str, behavior: str = "End") -> list[Entry]:
    """The map entries of a router's End SID, or of its uN uSID (the whole /48 locator)."""
    s, loc = _parse(sid, locator)
    if behavior == "End":
        return [SidEntry(s, "End"), LocatorEntry(loc)]
    if behavior != "uN":
        raise InvalidInput([field_error("--behavior", "", f"must be one of "
                                        f"{', '.join(END_BEHAVIORS)}", behavior)])
    if loc.prefixlen not in USID_LENGTHS or s != loc.network_address:
        raise InvalidInput([field_error("--locator", "", "a uN's locator is block:ID::/48 and "
                                        "its SID the locator's own address", locator)])
    return [UsidEntry(loc, "uN"), LocatorEntry(loc)]


def program_end_sid(pin_dir: str, sid: str, locator: str, *, netns: str | None = None,
                    devices: list[str] | None = None, behavior: str = "End") -> list[str]:
    """Load (or reuse) the datapath in `pin_dir`, program End (or uN) at `sid`; returns the
    devices."""
    from speaker.bpf.datapath import BpfDatapath, ensure_bpffs, is_bpffs

    want = end_entries(sid, locator, behavior)
    parent = pin_dir.rstrip("/").rsplit("/", 1)[0] or "/"
    if not is_bpffs(parent) and parent == "/sys/fs/bpf":
        ensure_bpffs(parent)
    dp = BpfDatapath(pin_dir, netns=netns)
    dp.load()
    have: list[Entry] = [*dp.list_sids(), *dp.list_locators(), *dp.list_usids()]
    stale = [e for e in have if e not in want]
    failures = dp.apply(put=want, delete=stale)
    if failures:
        from flatroute.errors import AdapterError

        raise AdapterError("; ".join(f"{e}: {why}" for e, why in failures))
    if devices is None:
        devices = _devices(netns)
    for dev in devices:
        dp.attach(dev, PROG_SID)
    return devices


def remove_end_sid(pin_dir: str, *, netns: str | None = None) -> None:
    from speaker.bpf.datapath import BpfDatapath

    BpfDatapath(pin_dir, netns=netns).remove()


def _devices(netns: str | None) -> list[str]:
    """Every interface but the loopback (of `netns`, or of this namespace)."""
    import subprocess

    cmd = ["ip", "-o", "link", "show"]
    if netns is not None:
        cmd = ["ip", "-n", netns, "-o", "link", "show"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout
    names = [ln.split(":", 2)[1].strip().split("@", 1)[0] for ln in out.splitlines() if ":" in ln]
    return [n for n in names if n != "lo"]
