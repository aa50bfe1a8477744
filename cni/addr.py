"""IP addresses as (family, int) pairs, parsed with inet_pton (no `ipaddress`: 9 ms to import)."""

from __future__ import annotations

import _socket

V4 = 4
V6 = 6
_AF = {V4: _socket.AF_INET, V6: _socket.AF_INET6}
BITS = {V4: 32, V6: 128}


def parse_ip(text: str) -> tuple[int, int]:
    """'10.0.0.1' or 'fd00::1' -> (version, integer). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IP address")
    version = V6 if ":" in text else V4
    try:
        packed = _socket.inet_pton(_AF[version], text)
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None
    return version, int.from_bytes(packed, "big")


def parse_cidr(text: str, strict: bool = True) -> tuple[int, int, int]:
    """'10.0.0.0/24' -> (version, network int, prefix length). Raises ValueError."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"{text!r} is not a CIDR")
    ip, _, plen_text = text.partition("/")
    version, value = parse_ip(ip)
    if not plen_text.isdigit() or not 0 <= int(plen_text) <= BITS[version]:
        raise ValueError(f"{text!r} has a bad prefix length")
    plen = int(plen_text)
    host_mask = (1 << (BITS[version] - plen)) - 1
    if value & host_mask:
        if strict:
            raise ValueError(f"{text!r} has host bits set")
        value &= ~host_mask
    return version, value, plen


def fmt(version: int, value: int) -> str:
    return _socket.inet_ntop(_AF[version], value.to_bytes(BITS[version] // 8, "big"))


def packed(version: int, value: int) -> bytes:
    return value.to_bytes(BITS[version] // 8, "big")


def family(version: int) -> int:
    return _AF[version]
