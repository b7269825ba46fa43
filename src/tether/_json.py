"""The one JSON codec every store uses: strict on the way in, fast on the way out.

orjson is used because loading history is the hot path of every turn (see docs/benchmarks.md).
It already refuses non-string keys, integers beyond 64 bits, lone surrogates and (with the
passthrough options) datetimes, dataclasses and other non-JSON objects. It does *not* refuse
NaN or infinities (it writes ``null``), ``uuid.UUID`` or ``Enum`` members (it writes their
value): each would come back as something else, so :func:`dumps` walks the value once for
them and names the path of the first one it finds (``state.order.id``). Plain subclasses of
str and int are kept: they read back as the equal str or int.
"""

from __future__ import annotations

import enum
import math
import uuid
from typing import Any

import orjson

from .errors import InvalidSessionData

__all__ = ["JSONDecodeError", "canonical", "dumps", "loads"]

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_CANONICAL = _STRICT | orjson.OPT_SORT_KEYS


def _refuse(_: object) -> Any:
    raise TypeError(f"type {type(_).__name__} is not JSON serializable")


def _find_unfaithful(value: object, path: str) -> tuple[str, str] | None:
    """(path, why) of the first value orjson encoded but that would not read back as itself:
    NaN / infinities, UUIDs, Enum members (``IntEnum`` and str enums too). orjson itself
    refuses keys that are not exactly str."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most leaves: no more
        return None
    if isinstance(value, (enum.Enum, uuid.UUID)):
        return path, f"is a {kind.__name__} ({value!r})"
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "is NaN or infinite")
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_unfaithful(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_unfaithful(item, f"{path}[{index}]")
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
    found = _find_unfaithful(value, what)
    if found is not None:
        where, why = found
        raise InvalidSessionData(
            f"{where} {why}, which JSON cannot represent as itself: it would be read back as "
            "something else. Store plain JSON instead (None, str(...) of a UUID, an Enum's "
            ".value). Nothing was written."
        )
    return encoded


def dumps_text(value: object, *, what: str = "value") -> str:
    """:func:`dumps` as ``str``, for a driver that takes JSON as text (PostgreSQL's json
    parameters); every other caller keeps the bytes."""
    return dumps(value, what=what).decode()


def canonical(value: object, *, what: str = "value") -> str:
    """Encode ``value`` with sorted keys: equal JSON values give equal strings."""
    return dumps(value, what=what, option=_CANONICAL).decode()


loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
