"""The shape of a header document and the limits every argument is checked against.

Every public store call checks its arguments here, before any I/O, so that a value one store
could hold and another could not is refused by all of them alike (docs/model.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from .. import _json
from .._time import to_micros
from ..errors import (
    InvalidRequest,
    InvalidSessionData,
)
from ..models import (
    KeyedItem,
    SessionStatus,
)

Doc = dict[str, Any]

JSON_FIELDS = ("metadata", "state", "options")
DOC_FIELDS = (
    "id",
    "owner",
    "agent",
    "status",
    *JSON_FIELDS,
    "parent_id",
    "fork_seq",
    "version",
    "schema_version",
    "created_at",
    "updated_at",
    "expires_at",
    "last_seq",
    "history_len",
    "lease_owner",
    "lease_token",
    "lease_fence",
    "lease_expires_at",
)
"""Every field of a header document, in the order the SQL stores keep their columns."""

STATUSES = frozenset(s.value for s in SessionStatus)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# --- limits: what every store can hold (docs/model.md, "Limits") --------------------------------
# Every public call checks its arguments against these before any I/O, here, once, so that a
# value one store could hold and another could not is refused by all of them alike.

MAX_INT = 2**63 - 1
"""Versions, seqs, fences, ``last`` / ``after`` / ``limit``: signed 64-bit (SQL BIGINT)."""
MIN_INT = -(2**63)
MAX_NAME_LENGTH = 256
"""owner, agent and a lease's owner: at most this many characters."""
MAX_TTL = timedelta(days=3653)
"""The longest lease: about 10 years. Longer ones would overflow a timestamp somewhere."""
MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
"""Stored timestamps (``expires_at``, the restored ``created_at`` / ``updated_at``) lie in
[MIN_TIME, MAX_TIME): Redis keeps them in sorted-set scores and Lua numbers, exact to 2**53 µs."""
MIN_MICROS = to_micros(MIN_TIME)
MAX_MICROS = to_micros(MAX_TIME)
MAX_TTL_MICROS = MAX_TTL // timedelta(microseconds=1)


def check_text(
    name: str, value: object, *, optional: bool = True, error: type[InvalidRequest] = InvalidRequest
) -> str | None:
    """A name-like string (owner, agent): a str of valid Unicode, no NUL, <= MAX_NAME_LENGTH.

    NUL and lone surrogates are refused because PostgreSQL text and UTF-8 (SQLite, Redis, files)
    cannot hold them; the length keeps index entries small.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        none = " or None" if optional else ""
        raise error(f"{name} must be a str{none}, not {type(value).__name__} {short(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise error(f"{name} has {len(value)} characters; the limit is {MAX_NAME_LENGTH}")
    if "\x00" in value:
        raise error(f"{name} {short(value)} contains a NUL character; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(
            f"{name} {short(value)} is not valid Unicode (a lone surrogate at {exc.start}); "
            "decode your text with errors='replace' first"
        ) from None
    return value


def check_int(name: str, value: object, *, low: int = 0, high: int = MAX_INT) -> int:
    """An int (not a bool) in [low, high]; raise :class:`InvalidRequest` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an int, not {type(value).__name__} {short(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be an int from {low} to {high}, not {value}")
    return value


def check_time(name: str, value: object) -> int | None:
    """An aware datetime in [MIN_TIME, MAX_TIME) as µs, or None; raise before any I/O."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        naive = "a naive datetime" if isinstance(value, datetime) else short(value)
        raise InvalidRequest(
            f"{name} must be a timezone-aware datetime or None, not {naive} "
            "(e.g. datetime.now(timezone.utc) + timedelta(days=1))"
        )
    try:
        micros = to_micros(value)
    except (OverflowError, ValueError) as exc:  # an offset pushing it past datetime's range
        raise InvalidRequest(f"{name} {value!r} cannot be stored ({exc})") from None
    if not MIN_MICROS <= micros < MAX_MICROS:
        raise InvalidRequest(
            f"{name} {value.isoformat()} is out of range: stored times lie between "
            f"{MIN_TIME.date()} and {MAX_TIME.date()} (UTC)"
        )
    return micros


def bound_micros(name: str, value: object) -> int | None:
    """A listing's ``updated_after`` / ``updated_before`` as µs, clamped to just outside the
    storable range: any aware datetime is a valid bound, and clamping cannot change which
    stored sessions it keeps (their times are all inside the range)."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        naive = "a naive datetime" if isinstance(value, datetime) else short(value)
        raise InvalidRequest(f"{name} must be a timezone-aware datetime or None, not {naive}")
    try:
        micros = to_micros(value)
    except OverflowError:
        micros = MAX_MICROS if value.year > 1970 else MIN_MICROS
    return min(max(micros, MIN_MICROS - 1), MAX_MICROS + 1)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_copy(value: Any, *, what: str, must_be_object: bool = False) -> Any:
    """A deep copy made by a JSON round trip: proves the value is JSON and detaches it."""
    if must_be_object and not isinstance(value, dict):
        raise InvalidSessionData(f"{what} must be a JSON object (dict), not {type(value)}")
    return _json.loads(_json.dumps(value, what=what))


_TRUSTED = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def trusted_json_fields(header: Any) -> dict[str, Any]:
    """Deep copies of a stored header's ``metadata``, ``state`` and ``options``, in one JSON
    round trip: for a header a store returned or a commit stamped, whose values were checked
    as JSON when written, so :func:`json_copy`'s check is not made again (a value that is not
    JSON still raises ``TypeError``; a NaN or an Enum, which that check refuses, could not have
    been stored)."""
    metadata, state, options = header.metadata, header.state, header.options
    if metadata == state == options == {}:  # nothing to copy (a new session's): new dicts
        return {"metadata": {}, "state": {}, "options": {}}
    # one dict of the three, copied whole: orjson keeps its keys' order, so the copy is the
    # result (a list of the values zipped back to their names took twice as long)
    fields: dict[str, Any] = trusted_copy(
        {"metadata": metadata, "state": state, "options": options}
    )
    return fields


def trusted_copy(value: Any) -> Any:
    """A deep copy, by a JSON round trip, of a value already checked as JSON (a value a
    store wrote, or one a store's write just accepted): :func:`json_copy` without the walk
    that proves it is JSON. A value that is not JSON still raises ``TypeError``."""
    return orjson.loads(orjson.dumps(value, option=_TRUSTED))


def item_list(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> list[Mapping[str, Any] | KeyedItem]:
    """``list(items)``, refusing a single value (a str, a dict, a number) with
    :class:`InvalidSessionData`: a store drains ``append=`` / ``items=`` with this before any
    I/O, and each item is checked when encoded."""
    if type(items) is list or type(items) is tuple:  # the usual case, without the ABC checks
        return list(items)
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidSessionData(
            f"history items must be a list of item dicts, not {type(items).__name__}"
        )
    return list(items)


MAX_KEY_LENGTH = 256
"""A history item's key (:class:`~tether.KeyedItem`): at most this many characters."""
MAX_KEYS = 1000
"""``items_by_key``: at most this many keys per call."""


def check_item_key(value: object, what: str = "key") -> str:
    """A history item's key: a non-empty str of valid Unicode, no NUL, <= MAX_KEY_LENGTH."""
    if value == "":
        raise InvalidSessionData(f"{what} is empty; a key has 1 to {MAX_KEY_LENGTH} characters")
    text = check_text(what, value, optional=False, error=InvalidSessionData)
    assert text is not None
    return text


def check_item_keys(keys: object) -> list[str]:
    """The keys of ``items_by_key``: a list (not a lone str) of 1 to MAX_KEYS valid keys."""
    if isinstance(keys, (str, bytes, Mapping)) or not isinstance(keys, Iterable):
        raise InvalidRequest(f"keys must be a list of str keys, not {type(keys).__name__}")
    checked = list(dict.fromkeys(check_item_key(key) for key in keys))
    if len(checked) > MAX_KEYS:
        raise InvalidRequest(f"{len(checked)} keys in one call; the limit is {MAX_KEYS}")
    return checked


def check_window(last: int | None, after: int | None, limit: int | None = None) -> None:
    """The arguments of ``load(last=, after=, limit=)``; raise before any I/O if one is bad."""
    for name, value in (("last", last), ("after", after)):
        if value is not None:
            check_int(name, value)
    check_limit(limit)


def check_limit(limit: int | None, *, name: str = "limit", optional: bool = True) -> None:
    """A page size: ``load(limit=)`` takes None (no limit) or an int >= 1."""
    if limit is None and optional:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_INT:
        none = " or None (no limit)" if optional else ""
        raise InvalidRequest(f"{name} must be an int >= 1{none}, not {short(limit)}")


def check_after(after: object) -> int:
    """``replace_tail``'s ``after``: an int seq >= 0 (checked against the history later)."""
    return check_int("after", after)


def check_version(expected_version: object) -> None:
    """A compare-and-set's ``expected_version``: any signed 64-bit int (one that was never a
    version of the session is not refused here; the write simply conflicts)."""
    check_int("expected_version", expected_version, low=MIN_INT)


def check_restore_args(replace: object, expected_version: object) -> None:
    """``restore(replace=, expected_version=)``: raise before any I/O if one is bad."""
    if not isinstance(replace, bool):
        raise InvalidRequest(f"replace must be True or False, not {short(replace)}")
    if expected_version is not None:
        check_version(expected_version)
