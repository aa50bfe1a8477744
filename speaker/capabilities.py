"""What this kernel can really do for the speaker, found out by doing it.

Every check *tries* the thing (a seg6 route, a seg6local SID, a VRF device, a clsact qdisc with
a cls_bpf filter, loading the SRv6 eBPF object through the verifier) inside a network namespace
of its own: a child process that `unshare(CLONE_NEWNET)`s, so nothing it creates survives it.
No sysctl or file is taken as proof: `net.ipv6.conf.all.seg6_enabled` exists on kernels built
without `CONFIG_IPV6_SEG6_LWTUNNEL`, where every seg6 route fails.

The result is a `Capabilities` value (pure, JSON round-trip) with one `Check` per feature and the
kernel's own words for every "no"; the speaker shows it in its status, metrics and NodeState
status, `flatroute doctor` prints it, and the datapath choice (`auto | kernel | bpf`) is made
from it by `choose_datapath`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: seg6 encapsulation modes and seg6local behaviours the speaker programs (iproute2 spelling)
ENCAP_MODES = ("encap", "encap.red")
SEG6LOCAL_ACTIONS = ("End", "End.DX4", "End.DX6", "End.DT6", "End.DT4", "End.DT46")
#: behaviours that need a VRF device bound to the lookup table
NEEDS_VRF = ("End.DT4", "End.DT46")
#: what the kernel datapath needs to carry the project's SRv6 (decap IPv4: End.DX4 main table)
KERNEL_NEEDS = ("seg6.encap", "seg6.encap.red", "seg6local.End", "seg6local.End.DX4",
                "seg6local.End.DT6")
BPF_NEEDS = ("bpf.syscall", "bpf.btf", "bpf.clsact", "bpf.adjust_room_decap", "bpf.datapath")
#: NEXT-C-SID (RFC 9800) flavours the probe tries: End (uN, Linux 6.1+), End.X (uA, 6.6+)
CSID_ACTIONS = ("End", "End.X")
#: what the kernel datapath needs beyond KERNEL_NEEDS for each uSID behaviour
USID_KERNEL_NEEDS: dict[str, tuple[str, ...]] = {
    "uN": ("seg6local.End.next-csid",),
    "uA": ("seg6local.End.X.next-csid",),
    "uDT4": ("seg6local.End.DX4",),
    "uDT6": ("seg6local.End.DT6",),
    "uDT46": ("seg6local.End.DT46", "vrf"),
}

DATAPATHS = ("auto", "kernel", "bpf")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    reason: str = ""  # why not, in the kernel's words (or a detail when ok)


@dataclass(frozen=True, slots=True)
class Capabilities:
    checks: tuple[Check, ...]
    kernel_release: str = ""

    def get(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        return Check(name, False, "not probed")

    def ok(self, name: str) -> bool:
        return self.get(name).ok

    def all_ok(self, names: Iterable[str]) -> bool:
        return all(self.ok(n) for n in names)

    @property
    def kernel_srv6(self) -> bool:
        return self.all_ok(KERNEL_NEEDS)

    @property
    def bpf_srv6(self) -> bool:
        return self.all_ok(BPF_NEEDS)

    @property
    def vrf(self) -> bool:
        return self.ok("vrf")

    def why_not(self, names: Iterable[str]) -> str:
        return "; ".join(f"{c.name}: {c.reason}" for n in names if not (c := self.get(n)).ok)

    @property
    def missing(self) -> tuple[str, ...]:
        """Every failed check as `name: reason`, the form status documents carry."""
        return tuple(f"{c.name}: {c.reason}" for c in self.checks if not c.ok)

    def to_doc(self) -> dict[str, object]:
        return {"kernel": self.kernel_release,
                "kernelSrv6": self.kernel_srv6, "bpfSrv6": self.bpf_srv6,
                "checks": [{"name": c.name, "ok": c.ok, "reason": c.reason}
                           for c in self.checks]}

    @classmethod
    def from_doc(cls, doc: dict[str, object]) -> Capabilities:
        raw = doc.get("checks")
        checks = tuple(Check(str(c["name"]), bool(c["ok"]), str(c.get("reason") or ""))
                       for c in raw if isinstance(c, dict)) if isinstance(raw, list) else ()
        return cls(checks, str(doc.get("kernel") or ""))


def needed_missing(caps: Capabilities, datapath: str | None,
                   behaviors: Iterable[str] = ()) -> tuple[str, ...]:
    """The failed checks that matter to this node state (`name: reason`), not all of them:
    nothing without SRv6; on the kernel datapath its seg6 needs (and each uSID's), and VRF
    where End.DT4/DT46 SIDs are asked for; on the eBPF datapath its BPF needs."""
    if datapath is None:
        return ()
    behaviors = list(behaviors)
    names: list[str] = list(BPF_NEEDS if datapath == "bpf" else kernel_needs(behaviors))
    if datapath == "kernel" and any(b in NEEDS_VRF for b in behaviors):
        names += ["vrf", *(f"seg6local.{b}" for b in NEEDS_VRF if b in behaviors)]
    return tuple(f"{c.name}: {c.reason}" for n in names if not (c := caps.get(n)).ok)


class DatapathUnavailable(Exception):
    """The chosen SRv6 datapath cannot run on this kernel; the message says why."""


def kernel_needs(behaviors: Iterable[str] = ()) -> tuple[str, ...]:
    """The checks the kernel datapath needs for a node state with these behaviours: its
    seg6 needs, and for uSIDs each one's (a uN needs End with NEXT-C-SID, ...)."""
    extra = [n for b in sorted(set(behaviors)) for n in USID_KERNEL_NEEDS.get(b, ())]
    return tuple(dict.fromkeys((*KERNEL_NEEDS, *extra)))


def why_not_kernel(caps: Capabilities, behaviors: Iterable[str] = ()) -> str:
    """Why `auto` would not take the kernel datapath ("" when it would)."""
    return caps.why_not(kernel_needs(behaviors))


def choose_datapath(wanted: str, caps: Capabilities, behaviors: Iterable[str] = ()) -> str:
    """`kernel` or `bpf` for `wanted` (`auto | kernel | bpf`), or DatapathUnavailable.
    uSID behaviours count: `auto` takes the kernel only where the probe found each one's
    kernel behaviour working (NEXT-C-SID for uN and uA), else eBPF, which does them all."""
    if wanted not in DATAPATHS:
        raise DatapathUnavailable(f"unknown SRv6 datapath {wanted!r} (auto, kernel or bpf)")
    needs = kernel_needs(behaviors)
    kernel_ok = caps.all_ok(needs)
    if wanted == "kernel" or (wanted == "auto" and kernel_ok):
        if not kernel_ok:
            raise DatapathUnavailable("kernel SRv6 datapath chosen, but this kernel cannot: "
                                      + caps.why_not(needs))
        return "kernel"
    if not caps.bpf_srv6:
        what = "eBPF SRv6 datapath chosen" if wanted == "bpf" else \
            "no SRv6 datapath: kernel seg6 (" + caps.why_not(needs) + ") nor eBPF"
        raise DatapathUnavailable(f"{what}, but this kernel cannot: "
                                  + caps.why_not(BPF_NEEDS))
    return "bpf"


# -- the probe itself (runs in a throw-away network namespace) ---------------------------------

CLONE_NEWNET = 0x40000000
#: `r0 = 0 (TC_ACT_OK); exit`: the smallest program a cls_bpf filter can carry
_TRIVIAL_PROG = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
_BTF = "/sys/kernel/btf/vmlinux"


def _err(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        # pyroute2's NetlinkError: the errno, and the kernel's extack text when it gave one
        args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
        text = str(args[1]) if len(args) > 1 and str(args[1]) != os.strerror(code) else ""
        return f"{os.strerror(code)} (errno {code}){': ' + text if text else ''}"
    if isinstance(exc, OSError) and exc.errno:
        return f"{os.strerror(exc.errno)} (errno {exc.errno})"
    return f"{type(exc).__name__}: {exc}"


def _try(name: str, fn: Callable[[], object]) -> Check:
    try:
        detail = fn()
    except Exception as exc:
        return Check(name, False, _err(exc))
    return Check(name, True, detail if isinstance(detail, str) else "")


def _bpf_prog_load_trivial() -> int:
    """BPF_PROG_LOAD of the two-instruction SCHED_CLS program through the raw syscall."""
    from speaker.bpf import libbpf

    return libbpf.prog_load(libbpf.BPF_PROG_TYPE_SCHED_CLS, _TRIVIAL_PROG)


@functools.cache
def _btf_blob() -> bytes:
    """The kernel's BTF, read once however many checks look into it."""
    with open(_BTF, "rb") as fh:
        return fh.read()


def _btf_has(*names: str) -> str:
    blob = _btf_blob()
    absent = [n for n in names if n.encode() + b"\0" not in blob]
    if absent:
        raise LookupError(f"{', '.join(absent)} not in {_BTF} (needs Linux 6.3 or later)")
    return ""


def _probe_in_this_netns() -> list[Check]:
    """The checks; the caller has just entered a fresh, empty network namespace."""
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        checks = _seg6_checks(lo)
        # a VRF device (End.DT4 / End.DT46 look up through one)
        checks.append(_try("vrf", lambda: ipr.link("add", ifname="frprobevrf", kind="vrf",
                                                   vrf_table=0xFFF0)))
        checks += _seg6local_checks(ipr, lo, vrf_ok=checks[-1].ok)
        checks += _next_csid_checks(lo)
        checks += _bpf_checks(ipr, lo)
    finally:
        ipr.close()
    return checks


def _seg6_checks(lo: int) -> list[Check]:
    """seg6 encapsulation, every mode, through the same netlink codec the speaker uses."""
    from ipaddress import IPv6Address, ip_network

    from speaker.routes import Nexthop, Route, Seg6Encap
    from speaker.rtnl import Op, Rtnl

    checks: list[Check] = []
    with Rtnl(250) as rtnl:
        for i, mode in enumerate(ENCAP_MODES):
            route = Route(ip_network(f"2001:db8:{i + 1}::/64"), (Nexthop(None, "lo"),),
                          Seg6Encap(mode, (IPv6Address("2001:db8:ff::1"),)), metric=1024)

            def add(r: Route = route) -> None:
                failed = rtnl.apply([Op("add", r)], {"lo": lo})
                if failed:
                    raise OSError(failed[0][1], os.strerror(failed[0][1]))

            checks.append(_try(f"seg6.{mode}", add))
    return checks


def _seg6local_encap(action: str) -> dict[str, object]:
    encap: dict[str, object] = {"type": "seg6local", "action": action}
    if action == "End.DX4":
        encap["nh4"] = "0.0.0.0"
    elif action == "End.DX6":
        encap["nh6"] = "::"
    elif action == "End.DT6":
        encap["table"] = 254
    elif action in NEEDS_VRF:
        encap["vrf_table"] = 0xFFF0
    return encap


def _seg6local_checks(ipr: Any, lo: int, *, vrf_ok: bool) -> list[Check]:
    checks: list[Check] = []
    for i, action in enumerate(SEG6LOCAL_ACTIONS):
        encap = _seg6local_encap(action)

        def add_sid(e: dict[str, object] = encap, n: int = i) -> None:
            ipr.route("add", dst=f"2001:db8:fe::{n + 1}/128", oif=lo, encap=e)

        c = _try(f"seg6local.{action}", add_sid)
        if not c.ok and action in NEEDS_VRF:
            c = Check(c.name, False, c.reason + " (it looks up through a VRF device)")
        elif c.ok and action in NEEDS_VRF and not vrf_ok:
            c = Check(c.name, False, "the route is accepted, but packets need a VRF device "
                      "for the table and this kernel has none (see vrf)")
        checks.append(c)
    return checks


def _next_csid_checks(lo: int) -> list[Check]:
    """End and End.X with the NEXT-C-SID flavour over a uSID /48, written through the codec
    the speaker writes them with, then read back: a kernel older than the flavour ignores the
    attribute it does not know and keeps a plain End, which is no uN."""
    from ipaddress import IPv6Address, ip_network

    from speaker.routes import Nexthop, Route, Seg6Local
    from speaker.rtnl import Op, Rtnl

    checks: list[Check] = []
    with Rtnl(251) as rtnl:
        for i, action in enumerate(CSID_ACTIONS):
            nh6 = IPv6Address("2001:db8:fd::2") if action == "End.X" else None
            # uN over a node ID; uA over a node ID and a local function
            plen, bits = (64, 32) if action == "End.X" else (48, 16)
            route = Route(ip_network(f"fcbb:bb{i:02x}:1::/{plen}"), (Nexthop(None, "lo"),),
                          Seg6Local(action, nh6=nh6, next_csid=bits), metric=1024)

            def add(r: Route = route) -> None:
                failed = rtnl.apply([Op("add", r)], {"lo": lo})
                if failed:
                    raise OSError(failed[0][1], os.strerror(failed[0][1]))
                got = [x for x in rtnl.dump(names={lo: "lo"}) if x.dst == r.dst]
                if not got or got[0].encap != r.encap:
                    raise LookupError("the kernel took the route but not the NEXT-C-SID "
                                      "flavour (needs Linux 6.1 for End, 6.6 for End.X)")

            checks.append(_try(f"seg6local.{action}.next-csid", add))
    return checks


def _bpf_checks(ipr: Any, lo: int) -> list[Check]:
    """The syscall, BTF, clsact + cls_bpf, the decap flags, then the real object."""
    fd_box: list[int] = []
    checks = [_try("bpf.syscall", lambda: fd_box.append(_bpf_prog_load_trivial())),
              _try("bpf.btf", lambda: _btf_has("bpf_skb_adjust_room"))]
    if fd_box:
        def clsact() -> None:
            ipr.tc("add", "clsact", lo)
            ipr.tc("add-filter", "bpf", lo, ":1", fd=fd_box[0], name="flatroute-probe",
                   parent="ffff:fff2", classid=1, direct_action=True)
        checks.append(_try("bpf.clsact", clsact))
    else:
        checks.append(Check("bpf.clsact", False, "no BPF program could be loaded "
                            "(see bpf.syscall)"))
    checks.append(_try("bpf.adjust_room_decap", lambda: _btf_has(
        "BPF_F_ADJ_ROOM_DECAP_L3_IPV4", "BPF_F_ADJ_ROOM_DECAP_L3_IPV6")))
    checks.append(_try("bpf.datapath", _load_datapath_object))
    return checks


def _load_datapath_object() -> str:
    """Build (if needed) and load the SRv6 object through the verifier; nothing is pinned."""
    from speaker.bpf import build, libbpf

    path = build.build()
    obj = libbpf.BpfObject(str(path))
    try:
        obj.load()
    finally:
        obj.close()
    return str(path)


def _child_main() -> int:
    """`python -m speaker.capabilities --in-new-netns`: probe and print JSON."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        reason = f"cannot make a throw-away network namespace: {os.strerror(err)}" + (
            " (needs root / CAP_SYS_ADMIN)" if err in (errno.EPERM, errno.EACCES) else "")
        checks = [Check(n, False, reason) for n in
                  (*(f"seg6.{m}" for m in ENCAP_MODES), "vrf",
                   *(f"seg6local.{a}" for a in SEG6LOCAL_ACTIONS),
                   *(f"seg6local.{a}.next-csid" for a in CSID_ACTIONS), *BPF_NEEDS)]
    else:
        checks = _probe_in_this_netns()
    caps = Capabilities(tuple(checks), os.uname().release)
    sys.stdout.write(json.dumps(caps.to_doc()) + "\n")
    return 0


def probe(timeout: float = 60.0) -> Capabilities:
    """Run the probe in a child process in its own network namespace; nothing is left behind."""
    try:
        out = subprocess.run([sys.executable, "-m", "speaker.capabilities", "--in-new-netns"],
                             capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Capabilities((Check("probe", False, f"the probe did not run: {exc}"),),
                            os.uname().release)
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Capabilities((Check("probe", False, f"the probe failed: {tail}"),),
                            os.uname().release)
    return Capabilities.from_doc(doc)


def render_text(caps: Capabilities) -> str:
    """The probe's result for people (`flatroute doctor`)."""
    lines = [f"kernel {caps.kernel_release}"]
    width = max((len(c.name) for c in caps.checks), default=10)
    for c in caps.checks:
        lines.append(f"  {'yes' if c.ok else 'no ':3}  {c.name:<{width}}"
                     f"{'  ' + c.reason if c.reason else ''}")
    lines.append(f"kernel SRv6 datapath: {'usable' if caps.kernel_srv6 else 'not usable'}")
    lines.append(f"eBPF SRv6 datapath:   {'usable' if caps.bpf_srv6 else 'not usable'}")
    for what, behaviors in (("", ()), (" for uSID routers (uN)", ("uN",))):
        try:
            chosen = choose_datapath("auto", caps, behaviors)
            why = why_not_kernel(caps, behaviors) if chosen == "bpf" else ""
            lines.append(f"srv6.datapath auto{what} -> {chosen}"
                         + (f" (not the kernel: {why})" if why else ""))
        except DatapathUnavailable as exc:
            lines.append(f"srv6.datapath auto{what} -> none: {exc}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--in-new-netns"]:
        raise SystemExit(_child_main())
    print(render_text(probe()))
