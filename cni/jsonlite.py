"""JSON without `import json`.

`import json` pulls in `re` and `enum` and costs 10-20 ms of start-up, more than the whole ADD
budget allows. The C accelerator `_json` does the real work for the json package anyway; this
module drives it directly: the C scanner for parsing, `encode_basestring_ascii` for strings.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any


class JSONError(ValueError):
    """The text is not valid JSON."""


def _bad_constant(name: str) -> Any:
    raise JSONError(f"invalid JSON constant {name}")


class _Context:
    # Attributes the C scanner reads from its context object (json.decoder.JSONDecoder's).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_bad_constant)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_WS = " \t\n\r"


def loads(text: str) -> Any:
    idx = 0
    end = len(text)
    while idx < end and text[idx] in _WS:
        idx += 1
    try:
        value, idx = _scan(text, idx)
    except (StopIteration, ValueError, SystemError):
        # Error path only: the C scanner reports errors through json.decoder, which is not
        # imported on the fast path (3.11 then raises SystemError). Let json say what is wrong.
        _explain(text)
        raise JSONError("invalid JSON") from None
    finally:
        _Context.memo.clear()
    while idx < end and text[idx] in _WS:
        idx += 1
    if idx != end:
        raise JSONError(f"extra data at char {idx}")
    return value


def _explain(text: str) -> None:
    import json

    try:
        json.loads(text)
    except ValueError as exc:
        raise JSONError(str(exc)) from None


_encode_str = _json.encode_basestring_ascii


def dumps(value: Any) -> str:
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value - value != 0.0:  # NaN or infinity, without importing math
            raise JSONError("cannot encode a non-finite float")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise JSONError(f"object keys must be strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise JSONError(f"cannot encode {type(value).__name__}")
