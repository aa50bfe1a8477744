"""Typed entries of the SRv6 datapath's maps and their byte codecs (pure: no I/O).

The layouts mirror the C structs of srv6.bpf.c (change both together):

  flr_enc4  LPM trie  key  struct lpm4_key { u32 prefixlen (host order); u8 addr[4]; }      8 B
  flr_enc6  LPM trie  key  struct lpm6_key { u32 prefixlen (host order); u8 addr[16]; }    20 B
            value struct encap_val { u8 mode; u8 nseg; u8 pad[6]; u8 src[16];
                                     u8 segs[6][16] (travel order) }                     120 B
  flr_sids  hash      key  u8 sid[16]; value struct sid_val { u32 behavior; u32 pad; }   16/8 B
  flr_locs  LPM trie  key  struct lpm6_key; value u32 (1)                                 20/4 B
  flr_usids LPM trie  key  struct lpm6_key; value struct usid_val { u32 behavior; u32 plen;
                                                     u8 nh[16] }                        20/24 B
  flr_cnt   per-CPU array of u64, indexed by the counter enum
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

MAX_SEGMENTS = 6

MAP_ENCAP4 = "flr_enc4"
MAP_ENCAP6 = "flr_enc6"
MAP_SIDS = "flr_sids"
MAP_LOCATORS = "flr_locs"
MAP_COUNTERS = "flr_cnt"
MAP_USIDS = "flr_usids"

MODES: dict[str, int] = {"encap": 1, "encap.red": 2}
BEHAVIORS: dict[str, int] = {
    "End": 1, "End.DX4": 2, "End.DT4": 3, "End.DT6": 4, "End.DT46": 5, "End.DX6": 6,
}
#: uSIDs (RFC 9800, F3216), matched by prefix in flr_usids
USID_BEHAVIORS: dict[str, int] = {"uN": 7, "uA": 8, "uDT4": 9, "uDT6": 10, "uDT46": 11}
#: the lengths a uSID prefix may have: a node ID (48), a local function after one (64)
USID_LENGTHS = (48, 64)
_USID_NAMES = {v: k for k, v in USID_BEHAVIORS.items()}
_MODE_NAMES = {v: k for k, v in MODES.items()}
_BEHAVIOR_NAMES = {v: k for k, v in BEHAVIORS.items()}

_HOST = "<" if sys.byteorder == "little" else ">"
_LPM4 = struct.Struct(_HOST + "I4s")
_LPM6 = struct.Struct(_HOST + "I16s")
_ENCAP = struct.Struct(_HOST + "BB6x16s" + "16s" * MAX_SEGMENTS)
_SID_VAL = struct.Struct(_HOST + "I4x")
_LOC_VAL = struct.Struct(_HOST + "I")
_USID_VAL = struct.Struct(_HOST + "II16s")

ENCAP4_KEY_SIZE = _LPM4.size
ENCAP6_KEY_SIZE = _LPM6.size
ENCAP_VALUE_SIZE = _ENCAP.size
SID_KEY_SIZE = 16
SID_VALUE_SIZE = _SID_VAL.size
LOCATOR_KEY_SIZE = _LPM6.size
LOCATOR_VALUE_SIZE = _LOC_VAL.size
USID_KEY_SIZE = _LPM6.size
USID_VALUE_SIZE = _USID_VAL.size


@dataclass(frozen=True, slots=True)
class EncapEntry:
    """H.Encaps / H.Encaps.Red for inner destinations in `prefix`."""

    prefix: IPv4Network | IPv6Network
    mode: str                               # "encap" or "encap.red"
    segments: tuple[IPv6Address, ...]       # travel order: segments[0] is visited first
    source: IPv6Address                     # outer IPv6 source

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, IPv4Network | IPv6Network):
            raise ValueError(f"encap prefix must be an IPv4Network or IPv6Network, "
                             f"got {self.prefix!r}")
        if self.mode not in MODES:
            raise ValueError(f"encap mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if not isinstance(self.segments, tuple):
            raise ValueError("encap segments must be a tuple of IPv6Address")
        if not 1 <= len(self.segments) <= MAX_SEGMENTS:
            raise ValueError(f"encap needs 1 to {MAX_SEGMENTS} segments, "
                             f"got {len(self.segments)} for {self.prefix}")
        for seg in self.segments:
            if not isinstance(seg, IPv6Address):
                raise ValueError(f"segment {seg!r} of {self.prefix} is not an IPv6Address")
        if not isinstance(self.source, IPv6Address):
            raise ValueError(f"encap source {self.source!r} is not an IPv6Address")


@dataclass(frozen=True, slots=True)
class SidEntry:
    """A local SID handled at tc ingress of the uplinks."""

    sid: IPv6Address
    behavior: str   # one of BEHAVIORS

    def __post_init__(self) -> None:
        if not isinstance(self.sid, IPv6Address):
            raise ValueError(f"SID {self.sid!r} is not an IPv6Address")
        if self.behavior not in BEHAVIORS:
            raise ValueError(f"SID behavior must be one of {sorted(BEHAVIORS)}, "
                             f"got {self.behavior!r}")


@dataclass(frozen=True, slots=True)
class LocatorEntry:
    """A local locator: a packet to a SID inside it that is not in the SID map is dropped."""

    prefix: IPv6Network

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, IPv6Network):
            raise ValueError(f"locator {self.prefix!r} is not an IPv6Network")


@dataclass(frozen=True, slots=True)
class UsidEntry:
    """A local uSID (F3216) handled at tc ingress of the uplinks, matched by prefix: uN or uA
    (uA forwards to `nexthop`), or a decapsulation uDT4 / uDT6 / uDT46."""

    prefix: IPv6Network
    behavior: str   # one of USID_BEHAVIORS
    nexthop: IPv6Address | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, IPv6Network) or self.prefix.prefixlen not in USID_LENGTHS:
            raise ValueError(f"uSID {self.prefix!r} is not an IPv6 prefix of length "
                             f"{' or '.join(map(str, USID_LENGTHS))}")
        if self.behavior not in USID_BEHAVIORS:
            raise ValueError(f"uSID behavior must be one of {sorted(USID_BEHAVIORS)}, "
                             f"got {self.behavior!r}")
        if (self.behavior == "uA") != (self.nexthop is not None):
            raise ValueError(f"uSID {self.prefix}: a neighbour is for uA, and uA needs one")
        if self.nexthop is not None and not isinstance(self.nexthop, IPv6Address):
            raise ValueError(f"uA neighbour {self.nexthop!r} is not an IPv6Address")


Entry = EncapEntry | SidEntry | LocatorEntry | UsidEntry


def _lpm_key(prefix: IPv4Network | IPv6Network) -> bytes:
    if isinstance(prefix, IPv4Network):
        return _LPM4.pack(prefix.prefixlen, prefix.network_address.packed)
    return _LPM6.pack(prefix.prefixlen, prefix.network_address.packed)


def _decode_lpm(key: bytes) -> IPv4Network | IPv6Network:
    if len(key) == _LPM4.size:
        plen, addr4 = _LPM4.unpack(key)
        if plen > 32:
            raise ValueError(f"IPv4 LPM key with prefix length {plen}")
        return IPv4Network((IPv4Address(addr4), plen), strict=False)
    if len(key) == _LPM6.size:
        plen, addr6 = _LPM6.unpack(key)
        if plen > 128:
            raise ValueError(f"IPv6 LPM key with prefix length {plen}")
        return IPv6Network((IPv6Address(addr6), plen), strict=False)
    raise ValueError(f"LPM key of {len(key)} bytes: expected {_LPM4.size} or {_LPM6.size}")


def encap_map(entry: EncapEntry) -> str:
    """The map holding this entry: one trie per inner family."""
    return MAP_ENCAP4 if isinstance(entry.prefix, IPv4Network) else MAP_ENCAP6


def encode_encap_key(prefix: IPv4Network | IPv6Network) -> bytes:
    return _lpm_key(prefix)


def encode_encap_value(entry: EncapEntry) -> bytes:
    segs = [s.packed for s in entry.segments]
    segs += [bytes(16)] * (MAX_SEGMENTS - len(segs))
    return _ENCAP.pack(MODES[entry.mode], len(entry.segments), entry.source.packed, *segs)


def encode_encap(entry: EncapEntry) -> tuple[bytes, bytes]:
    return encode_encap_key(entry.prefix), encode_encap_value(entry)


def decode_encap(key: bytes, value: bytes) -> EncapEntry:
    prefix = _decode_lpm(key)
    if len(value) != _ENCAP.size:
        raise ValueError(f"encap value of {len(value)} bytes: expected {_ENCAP.size}")
    mode, nseg, src, *segs = _ENCAP.unpack(value)
    if mode not in _MODE_NAMES:
        raise ValueError(f"encap value with unknown mode {mode}")
    if not 1 <= nseg <= MAX_SEGMENTS:
        raise ValueError(f"encap value with {nseg} segments")
    return EncapEntry(prefix=prefix, mode=_MODE_NAMES[mode],
                      segments=tuple(IPv6Address(s) for s in segs[:nseg]),
                      source=IPv6Address(src))


def encode_sid(entry: SidEntry) -> tuple[bytes, bytes]:
    return entry.sid.packed, _SID_VAL.pack(BEHAVIORS[entry.behavior])


def decode_sid(key: bytes, value: bytes) -> SidEntry:
    if len(key) != SID_KEY_SIZE or len(value) != _SID_VAL.size:
        raise ValueError(f"SID key/value of {len(key)}/{len(value)} bytes: "
                         f"expected {SID_KEY_SIZE}/{_SID_VAL.size}")
    (beh,) = _SID_VAL.unpack(value)
    if beh not in _BEHAVIOR_NAMES:
        raise ValueError(f"SID value with unknown behavior {beh}")
    return SidEntry(sid=IPv6Address(key), behavior=_BEHAVIOR_NAMES[beh])


def encode_locator(entry: LocatorEntry) -> tuple[bytes, bytes]:
    return _lpm_key(entry.prefix), _LOC_VAL.pack(1)


def decode_locator(key: bytes) -> LocatorEntry:
    if len(key) != _LPM6.size:
        raise ValueError(f"locator key of {len(key)} bytes: expected {_LPM6.size}")
    prefix = _decode_lpm(key)
    assert isinstance(prefix, IPv6Network)
    return LocatorEntry(prefix=prefix)


def encode_usid(entry: UsidEntry) -> tuple[bytes, bytes]:
    nh = entry.nexthop.packed if entry.nexthop is not None else bytes(16)
    return _lpm_key(entry.prefix), _USID_VAL.pack(USID_BEHAVIORS[entry.behavior],
                                                  entry.prefix.prefixlen, nh)


def decode_usid(key: bytes, value: bytes) -> UsidEntry:
    if len(key) != _LPM6.size or len(value) != _USID_VAL.size:
        raise ValueError(f"uSID key/value of {len(key)}/{len(value)} bytes: "
                         f"expected {_LPM6.size}/{_USID_VAL.size}")
    prefix = _decode_lpm(key)
    beh, plen, nh = _USID_VAL.unpack(value)
    if beh not in _USID_NAMES:
        raise ValueError(f"uSID value with unknown behavior {beh}")
    if plen != prefix.prefixlen:
        raise ValueError(f"uSID value for /{plen} under the key {prefix}")
    assert isinstance(prefix, IPv6Network)
    name = _USID_NAMES[beh]
    return UsidEntry(prefix, name, IPv6Address(nh) if name == "uA" else None)


def encode(entry: Entry) -> tuple[str, bytes, bytes]:
    """(map name, key, value) for any entry."""
    if isinstance(entry, EncapEntry):
        return (encap_map(entry), *encode_encap(entry))
    if isinstance(entry, SidEntry):
        return (MAP_SIDS, *encode_sid(entry))
    if isinstance(entry, LocatorEntry):
        return (MAP_LOCATORS, *encode_locator(entry))
    if isinstance(entry, UsidEntry):
        return (MAP_USIDS, *encode_usid(entry))
    raise ValueError(f"not a datapath entry: {entry!r}")


def sum_percpu(value: bytes, ncpus: int) -> int:
    """Sum a per-CPU u64 counter value (8 bytes per possible CPU)."""
    if len(value) < 8 * ncpus:
        raise ValueError(f"per-CPU value of {len(value)} bytes for {ncpus} CPUs")
    return sum(struct.unpack_from(_HOST + "Q", value, 8 * i)[0] for i in range(ncpus))
