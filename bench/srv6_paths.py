"""The SRv6 paths bench/srv6_datapath.py measures, and how to read their overhead off the wire.

Pure (no I/O): the transit chain's addressing, each path's segment lists in both directions,
and the decoding of one captured frame into its bytes of encapsulation.

The chain is pod A - node A - T1 - T2 - T3 - T4 - T5 - node B - pod B: every path (plain
routing too) crosses the five transits, and a path's waypoints are some of them. Full-SID
waypoints run End (fc00:fN::e), uSID waypoints uN (fcbb:bb00:N::/48, F3216); the nodes'
decapsulations are End.DX4 (full) and uDT46 (uSID, block:ID:: with ID a / b).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

TRANSITS = ("T1", "T2", "T3", "T4", "T5")
CHAIN = ("A", *TRANSITS, "B")
USID_BLOCK = "fcbb:bb00"
USID_ID = {"A": 0xA, "B": 0xB, **{t: i + 1 for i, t in enumerate(TRANSITS)}}


def full_locator(key: str) -> IPv6Network:
    return IPv6Network(f"fc00:{key[-1].lower() if key in ('A', 'B') else 'f' + key[1]}::/48")


def end_sid(transit: str) -> IPv6Address:
    return full_locator(transit)[0xE]


def usid_locator(key: str) -> IPv6Network:
    return IPv6Network(f"{USID_BLOCK}:{USID_ID[key]:x}::/48")


def container(*keys: str) -> IPv6Address:
    """One uSID container holding the uSIDs of `keys` in order (at most six)."""
    if not 1 <= len(keys) <= 6:
        raise ValueError("a container holds one to six uSIDs")
    groups = [f"{USID_ID[k]:x}" for k in keys]
    return IPv6Address(f"{USID_BLOCK}:" + ":".join(groups) + ("::" if len(groups) < 6 else ""))


@dataclass(frozen=True, slots=True)
class SrPath:
    """An eBPF SRv6 path: its mode and the waypoints it goes through from A to B (B to A
    goes through them backwards)."""

    label: str
    mode: str                      # encap | encap.red
    waypoints: tuple[str, ...]
    usid: bool = False

    def segments(self, src: str, dx4: dict[str, IPv6Address]) -> tuple[IPv6Address, ...]:
        """The segment list node `src` encapsulates with toward the other node."""
        dst = "B" if src == "A" else "A"
        wps = self.waypoints if src == "A" else tuple(reversed(self.waypoints))
        if self.usid:
            return (container(*wps, dst),)
        return (*(end_sid(w) for w in wps), dx4[dst])


#: the eBPF paths, by name (the classic ones first, then the uSID ones, in one run)
SR_PATHS: dict[str, SrPath] = {
    "bpf-encap": SrPath("eBPF H.Encaps 1 SID", "encap", ()),
    "bpf-red": SrPath("eBPF H.Encaps.Red 1 SID", "encap.red", ()),
    "bpf-2sid": SrPath("eBPF H.Encaps 2 SIDs (End)", "encap", ("T1",)),
    "full-2wp": SrPath("eBPF Red full, 2 waypoints", "encap.red", ("T1", "T3")),
    "full-5wp": SrPath("eBPF Red full, 5 waypoints", "encap.red", TRANSITS),
    "usid-0": SrPath("eBPF uSID, 0 waypoints", "encap.red", (), usid=True),
    "usid-2": SrPath("eBPF uSID, 2 waypoints", "encap.red", ("T1", "T3"), usid=True),
    "usid-5": SrPath("eBPF uSID, 5 waypoints", "encap.red", TRANSITS, usid=True),
}


def expected_overhead(path: SrPath) -> int:
    """Bytes the encapsulation adds: 40, plus an SRH (8 + 16 a listed segment) when more than
    the first segment must be carried (H.Encaps lists them all)."""
    n = 1 if path.usid else len(path.waypoints) + 1
    listed = n - 1 if path.mode == "encap.red" else n
    return 40 + (8 + 16 * listed if listed else 0)


def overhead(frame: bytes, wire_len: int) -> int | None:
    """Bytes of encapsulation of one captured Ethernet frame carrying an IPv4 inner packet:
    its length less the Ethernet header and the inner packet (0 for a bare IPv4 packet).
    SRv6 (IPv6, an SRH or not, then IPv4) and VXLAN (IPv4, UDP 4789, VXLAN, Ethernet, IPv4)
    are read; anything else is None."""
    if len(frame) < 34:
        return None
    etype = frame[12:14]
    off = 14
    if etype == b"\x08\x00":
        ihl = (frame[off] & 0xF) * 4
        if frame[off + 9] == 17 and struct.unpack("!H", frame[off + ihl + 2:off + ihl + 4])[0] \
                == 4789:
            off += ihl + 8 + 8 + 14  # UDP, VXLAN, the inner Ethernet header
        else:
            return 0
    elif etype == b"\x86\xdd":
        nh = frame[off + 6]
        off += 40
        if nh == 43:
            nh, hdrlen = frame[off], frame[off + 1]
            off += 8 + 8 * hdrlen
        if nh != 4:
            return None
    else:
        return None
    if len(frame) < off + 4 or frame[off] >> 4 != 4:
        return None
    inner = struct.unpack("!H", frame[off + 2:off + 4])[0]
    return wire_len - 14 - inner
