"""The one JSON codec every store uses: strict on the way in, fast on the way out.

orjson is used because loading history is the hot path of every turn (see docs/benchmarks.md).
It already refuses non-string keys, integers beyond 64 bits, lone surrogates and (with the
passthrough options) datetimes, dataclasses and other non-JSON objects. It does *not* refuse
NaN or infinities: it writes them as ``null``, which would silently change the data, so
:func:`dumps` checks for them itself.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from .errors import InvalidSessionData

__all__ = ["JSONDecodeError", "canonical", "dumps", "loads"]

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_CANONICAL = _STRICT | orjson.OPT_SORT_KEYS


def _refuse(_: object) -> Any:
    raise TypeError(f"type {type(_).__name__} is not JSON serializable")


def _find_non_finite(value: object, path: str) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_non_finite(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def dumps(value: object, *, what: str = "value", option: int = _STRICT) -> bytes:
    """Encode ``value`` as compact JSON, or raise :class:`InvalidSessionData` naming ``what``."""
    try:
        encoded = orjson.dumps(value, default=_refuse, option=option)
    except TypeError as exc:
        raise InvalidSessionData(
            f"{what} is not plain JSON ({exc}); tether stores JSON only (dict with str keys, "
            "list, str, int, float, bool, None). Convert it first, e.g. datetimes to ISO "
            "strings. Nothing was written."
        ) from exc
    # NaN and infinities come out as null; only a value that produced a null can hold one,
    # so the walk runs only then.
    if b"null" in encoded:
        where = _find_non_finite(value, what)
        if where is not None:
            raise InvalidSessionData(
                f"{where} is NaN or infinite, which JSON cannot represent; store None or a "
                "string instead. Nothing was written."
            )
    return encoded


def canonical(value: object, *, what: str = "value") -> str:
    """Encode ``value`` with sorted keys: equal JSON values give equal strings."""
    return dumps(value, what=what, option=_CANONICAL).decode()


loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
