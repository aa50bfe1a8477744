"""A small typed reader over parsed YAML/JSON that records every problem with its field path.

The loader walks a document once; each accessor returns a typed value or None and, on a
problem, records a FieldError instead of raising, so that one run reports every error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flatroute.errors import FieldError, field_error

T = TypeVar("T")

_MISSING = object()


class Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str, *value: object) -> None:
        self.errors.append(field_error(self.source, path, message, *value))

    # -- mappings ---------------------------------------------------------------------------
    def mapping(
        self, value: Any, path: str, allowed: set[str] | None
    ) -> dict[str, Any] | None:
        """Check that value is a mapping whose keys are all in `allowed` (None: any key)."""
        if not isinstance(value, dict):
            self.error(path or "(top)", "must be a mapping", value)
            return None
        for key in value:
            if allowed is not None and key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                hint = ", ".join(sorted(allowed))
                self.error(where, f"unknown key (expected one of: {hint})")
        return value

    def get(
        self,
        obj: dict[str, Any] | None,
        key: str,
        path: str,
        conv: Callable[[Any, str], T | None],
        *,
        required: bool = False,
        default: T | None = None,
    ) -> T | None:
        where = f"{path}.{key}" if path else key
        if obj is None:
            return default
        raw = obj.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            if required:
                self.error(where, "is required")
            return default
        return conv(raw, where)

    def items(self, value: Any, path: str) -> Iterator[tuple[str, Any]]:
        """Yield (path, item) for each element of a list, recording a type error otherwise."""
        if value is None:
            return
        if not isinstance(value, list):
            self.error(path, "must be a list", value)
            return
        for i, item in enumerate(value):
            yield f"{path}[{i}]", item

    # -- scalar converters (each returns None after recording an error) ----------------------
    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.error(path, "must be a non-empty string", value)
            return None
        return value

    def name(self, value: Any, path: str) -> str | None:
        s = self.string(value, path)
        if s is None:
            return None
        ok = all(c.isalnum() or c in "-_." for c in s) and s[0].isalnum() and len(s) <= 63
        if not ok:
            self.error(path, "must be a name of letters, digits, '-', '_' or '.' (max 63)", s)
            return None
        return s

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, "must be true or false", value)
            return None
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, "must be an integer", value)
            return None
        if not lo <= value <= hi:
            self.error(path, f"must be between {lo} and {hi}", value)
            return None
        return value

    def int_in(self, lo: int, hi: int) -> Callable[[Any, str], int | None]:
        return lambda v, p: self.integer(v, p, lo, hi)

    def asn(self, value: Any, path: str) -> int | None:
        return self.integer(value, path, 1, 4294967294)

    def choice(self, options: list[str]) -> Callable[[Any, str], str | None]:
        def conv(value: Any, path: str) -> str | None:
            if value not in options:
                self.error(path, f"must be one of: {', '.join(options)}", value)
                return None
            return str(value)

        return conv

    def _ip(self, value: Any, path: str, kind: Callable[[str], T], what: str) -> T | None:
        if not isinstance(value, str):
            self.error(path, f"must be {what} as a string", value)
            return None
        try:
            return kind(value)
        except ValueError as exc:
            self.error(path, f"is not {what}: {exc}", value)
            return None

    def ipv4(self, value: Any, path: str) -> ipaddress.IPv4Address | None:
        return self._ip(value, path, ipaddress.IPv4Address, "an IPv4 address")

    def ipv6(self, value: Any, path: str) -> ipaddress.IPv6Address | None:
        return self._ip(value, path, ipaddress.IPv6Address, "an IPv6 address")

    def host4(self, value: Any, path: str) -> tuple[ipaddress.IPv4Address, int | None] | None:
        """A host address, bare (`10.0.1.11`) or with its subnet's length (`10.0.1.11/24`,
        as node states carry it): (address, length or None)."""
        iface = self._ip(value, path, ipaddress.IPv4Interface, "an IPv4 address "
                         "(10.0.1.11, or 10.0.1.11/24 with the ToR subnet's length)")
        return None if iface is None else (iface.ip, _length(iface, value))

    def host6(self, value: Any, path: str) -> tuple[ipaddress.IPv6Address, int | None] | None:
        iface = self._ip(value, path, ipaddress.IPv6Interface, "an IPv6 address "
                         "(fd00:1::11, or fd00:1::11/64 with the ToR subnet's length)")
        return None if iface is None else (iface.ip, _length(iface, value))

    def net4(self, value: Any, path: str) -> ipaddress.IPv4Network | None:
        return self._ip(value, path, ipaddress.IPv4Network, "an IPv4 network with host bits zero")

    def net6(self, value: Any, path: str) -> ipaddress.IPv6Network | None:
        return self._ip(value, path, ipaddress.IPv6Network, "an IPv6 network with host bits zero")

    def iface4(self, value: Any, path: str) -> ipaddress.IPv4Interface | None:
        iface = self._ip(value, path, ipaddress.IPv4Interface, "an IPv4 address/prefix")
        if iface is not None and "/" not in str(value):
            self.error(path, "needs a prefix length, like 10.1.1.1/24", value)
            return None
        return iface

    def iface6(self, value: Any, path: str) -> ipaddress.IPv6Interface | None:
        iface = self._ip(value, path, ipaddress.IPv6Interface, "an IPv6 address/prefix")
        if iface is not None and "/" not in str(value):
            self.error(path, "needs a prefix length, like fd00:1::1/64", value)
            return None
        return iface

    def net_list(
        self, conv: Callable[[Any, str], T | None]
    ) -> Callable[[Any, str], tuple[T, ...] | None]:
        def read(value: Any, path: str) -> tuple[T, ...] | None:
            out = []
            for p, item in self.items(value, path):
                v = conv(item, p)
                if v is not None:
                    out.append(v)
            return tuple(out)

        return read


def _length(iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, text: Any) -> int | None:
    """The prefix length written after the address, or None when it was bare."""
    return iface.network.prefixlen if "/" in str(text) else None
