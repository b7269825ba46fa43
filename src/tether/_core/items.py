"""History items, with no I/O: check, number, stamp and encode new items; decode stored rows
into their two views (``history`` and ``items``); look items up by key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from .. import _json
from .._time import from_micros
from ..errors import (
    CorruptSession,
    DuplicateItemKey,
    InvalidSessionData,
)
from ..models import (
    HistoryItem,
    KeyedItem,
    Session,
    StoredItem,
    _is_legacy,
)
from ..schema import schema
from .checks import Doc, check_item_key, item_list

EncodedItem = tuple[int, bytes]
"""A history row ready to store: its ``seq`` and its JSON (which includes the ``seq``)."""


class PreparedItems(list[EncodedItem]):
    """Encoded new items, with ``keys``: (key, seq) of each keyed one, for the store's index."""

    keys: list[tuple[str, int]]


class UnnumberedItems(list[tuple[bool, bytes]]):
    """Encoded new items a server numbers, with ``keys``: (key, offset in the batch)."""

    keys: list[tuple[str, int]]


def checked_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """(offset, a copy, key or None) of each new history item, refusing anything that is not
    one. Any JSON object is an item (no ``role`` needed); its own keys are never touched."""
    seen: set[str] = set()
    for offset, entry in enumerate(item_list(items)):
        key = None
        item: object = entry
        if isinstance(entry, KeyedItem):
            key = check_item_key(entry.key, f"history item {offset}: key")
            if key in seen:
                raise DuplicateItemKey(None, key)
            seen.add(key)
            item = entry.item
        if type(item) is not dict and not isinstance(item, Mapping):  # dict: no ABC check
            raise InvalidSessionData(f"history item {offset} is a {type(item)}, not a dict")
        yield offset, dict(item), key


def _own_stamp(item: Mapping[str, Any]) -> str | None:
    """An item's own ``timestamp`` string becomes tether's (an imported history keeps its
    times); any other value is just part of the item."""
    stamp = item.get("timestamp")
    return stamp if isinstance(stamp, str) else None


def row(fields: dict[str, Any], item: Mapping[str, Any], offset: int) -> bytes:
    """A stored history row (schema 3): ``{"seq": ..., "timestamp": ..., "key": ..., "item":
    {...}}``, the item as given beside tether's fields. The item is encoded on its own, so an
    error names its path as the caller wrote it (``history item 2.content``)."""
    data = _dumps(item, offset)
    if not fields:
        return b'{"item":' + data + b"}"
    return join_row(_dumps(fields, offset), data)


def join_row(fields: bytes, data: bytes) -> bytes:
    """A stored history row from the JSON of its fields (an object) and of its item."""
    return fields[:-1] + b',"item":' + data + b"}"


class EncodedNewItems(list[tuple["str | None", bytes, "str | None"]]):
    """New items a wrapping store has already checked and encoded (the encrypting store: the
    JSON of each item's envelope), ``(key, the item's JSON, its own timestamp string or
    None)`` each, the keys checked and distinct: :func:`prepare_encoded_items` numbers and
    stamps them without encoding anything again. Private: only a store whose ``_add`` says
    it takes them (``_adds_encoded``) is given them."""


def prepare_encoded_items(items: EncodedNewItems, first_seq: int, now: int) -> PreparedItems:
    """:func:`prepare_items` for items already checked and encoded: the same rows."""
    now_stamp = stamp_text(now)  # an item without a timestamp of its own takes the commit's
    encoded = PreparedItems()
    encoded.keys = []
    dumps = orjson.dumps  # the fields are a checked int, key and timestamp string
    for seq, (key, data, own) in enumerate(items, first_seq):
        stamp = now_stamp if own is None else own
        if key is not None:
            encoded.keys.append((key, seq))
        encoded.append((seq, join_row(dumps(row_fields(seq, stamp, key)), data)))
    return encoded


_LEAF = frozenset((str, int, bool, type(None)))


def _plain(value: Any) -> bool:
    """Whether ``value`` is built of exactly ``dict`` (str keys), ``list``, ``str``, ``int``,
    ``bool``, ``None`` and finite floats: nothing JSON would read back as something else (no
    Enum, UUID, subclass, NaN), so the path-naming walk of :func:`tether._json.dumps` has
    nothing to find. Anything else (a tuple, a subclass) answers False: the full check runs."""
    if type(value) is dict:
        for key in value:  # a plain loop: all() of a generator cost more than the check
            if type(key) is not str:
                return False
        entries: Iterable[Any] = value.values()
    else:
        entries = value
    for entry in entries:
        kind = type(entry)
        if kind in _LEAF:
            continue
        if kind is dict or kind is list:
            if not _plain(entry):
                return False
        elif kind is not float or not math.isfinite(entry):
            return False
    return True


def _dumps(value: Mapping[str, Any], offset: int) -> bytes:
    """:func:`tether._json.dumps` of an item (or a row's fields), the same bytes; a plain one
    (:func:`_plain`: most items, every item of the LangGraph saver) skips the walk that only
    looks for what a plain one cannot hold."""
    try:
        if type(value) is dict and _plain(value):
            return orjson.dumps(value)
    except (TypeError, RecursionError):  # too deep, an int past 64 bits, a lone surrogate
        pass  # said by the full check
    return _json.dumps(value, what=f"history item {offset}")


def row_fields(seq: int, stamp: str, key: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"seq": seq, "timestamp": stamp}
    if key is not None:
        fields["key"] = key
    return fields


def encode_unnumbered_items(items: Iterable[Mapping[str, Any] | KeyedItem]) -> UnnumberedItems:
    """Check and encode new items for a store that numbers and stamps them server-side.

    Each row is encoded without ``seq`` (and without ``timestamp`` when the item has no
    timestamp string of its own), paired with whether the server must add the timestamp: it
    adds ``"seq"`` (and ``"timestamp"``) as top-level keys of the row, beside ``"item"``. The
    rules are those of :func:`prepare_items`; the Redis and PostgreSQL stores use this because
    only their server-side step knows the session's ``last_seq`` and the server's time.
    """
    encoded = UnnumberedItems()
    encoded.keys = []
    for offset, item, key in checked_items(items):
        stamp = _own_stamp(item)
        fields: dict[str, Any] = {}
        if key is not None:
            fields["key"] = key
            encoded.keys.append((key, offset))
        if stamp is not None:
            fields["timestamp"] = stamp
        encoded.append((stamp is None, row(fields, item, offset)))
    return encoded


def prepare_items(
    items: Iterable[Mapping[str, Any] | KeyedItem] | EncodedNewItems, first_seq: int, now: int
) -> PreparedItems:
    """Number, timestamp and encode new history items; raise before any I/O if one is bad.
    Items a wrapping store already checked and encoded are numbered and stamped as they are
    (:func:`prepare_encoded_items`)."""
    if isinstance(items, EncodedNewItems):
        return prepare_encoded_items(items, first_seq, now)
    now_stamp = stamp_text(now)  # an item without a timestamp of its own takes the commit's
    encoded = PreparedItems()
    encoded.keys = []
    dumps = orjson.dumps
    for offset, item, key in checked_items(items):
        seq = first_seq + offset
        stamp = item.get("timestamp", now_stamp)  # _own_stamp's rule, without its call
        if not isinstance(stamp, str):
            stamp = now_stamp
        fields: dict[str, Any] = {"seq": seq, "timestamp": stamp}  # row_fields, inlined
        if key is not None:
            encoded.keys.append((key, seq))
            fields["key"] = key
        data: bytes | None = None
        try:  # a plain item (a dict, from checked_items): the row in one call, the same bytes
            if _plain(item):
                fields["item"] = item
                data = dumps(fields)
        except (TypeError, RecursionError):  # row()'s full check says what is wrong
            fields.pop("item", None)
        encoded.append((seq, row(fields, item, offset) if data is None else data))
    return encoded


_SECOND = [(0, "1970-01-01T00:00:00")]
"""The last second :func:`stamp_text` wrote, and its text up to the seconds (one entry)."""


def stamp_text(now: int) -> str:
    """``from_micros(now).isoformat(timespec="microseconds")`` (a commit's timestamp string),
    the same text, with the date and time of day formatted once per second: a commit makes
    one, and the datetime and its isoformat were about a tenth of encoding two items."""
    second, micros = divmod(now, 1_000_000)
    known = _SECOND[0]
    if known[0] != second:
        known = _SECOND[0] = (second, from_micros(now - micros).isoformat()[:-6])
    return f"{known[1]}.{micros:06d}+00:00"


def item_views(
    session_id: str, records: Iterable[Mapping[str, Any]]
) -> tuple[list[HistoryItem], list[StoredItem]]:
    """The two views of stored rows: ``history`` (items with ``seq`` / ``timestamp`` merged
    into copies, as before schema 3) and ``items`` (each item exactly as stored)."""
    # one pass building both (the runtime's cached turn builds them for each commit's items):
    # the entries of history_view and the items of stored_from_records, the same rows decided
    # legacy or not once each
    history: list[HistoryItem] = []
    stored: list[StoredItem] = []
    add_entry, add_item, copy = history.append, stored.append, dict.copy
    try:
        for record in records:
            if "role" in record or not isinstance(item := record.get("item"), dict):
                item = {k: v for k, v in record.items() if k not in ("seq", "timestamp")}
                key = None
            else:
                key = record.get("key")
            seq, stamp = record["seq"], record["timestamp"]
            entry = copy(item)
            entry["seq"] = seq
            entry["timestamp"] = stamp
            add_entry(entry)
            add_item(StoredItem(seq, stamp, key, item))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptSession(session_id, f"a history item cannot be read ({exc!r})") from exc
    return history, stored


def history_view(session_id: str, records: Iterable[Mapping[str, Any]]) -> list[HistoryItem]:
    """``Session.history`` of stored rows: each item with ``seq`` and ``timestamp`` merged into
    a copy. Raises :class:`CorruptSession` for a row that is not a history row."""
    history: list[HistoryItem] = []
    add, copy = history.append, dict.copy
    try:
        for record in records:
            # _is_legacy, inlined: this loop runs once per loaded item
            if "role" in record or not isinstance(item := record.get("item"), dict):
                item = {k: v for k, v in record.items() if k not in ("seq", "timestamp")}
            # a plain dict's copy then two stores: the dict {**item, "seq": ..., "timestamp":
            # ...} gives (same keys, same order), built in about two thirds of the time
            entry = copy(item) if type(item) is dict else {**item}
            entry["seq"] = record["seq"]
            entry["timestamp"] = record["timestamp"]
            add(entry)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptSession(session_id, f"a history item cannot be read ({exc!r})") from exc
    return history


def loaded_item_dicts(session: Session) -> list[dict[str, Any]]:
    """The exact item dicts (``[s.item for s in session.items]``) of a session a store just
    returned and nobody changed since: read from the decoded rows when they are still there,
    so no :class:`StoredItem` is built and ``history`` is not compared with anything."""
    records = session._records
    if records is None:
        return [entry.item for entry in session._items or session.items]
    if not any(_is_legacy(record) for record in records):
        return [record["item"] for record in records]
    return [entry.item for entry in session._items or ()]


def keyed_items(session_id: str, raw: Iterable[bytes | str]) -> dict[str, StoredItem]:
    """What ``items_by_key`` returns for the stored rows a store found by key."""
    return keyed_records(session_id, decode_items(session_id, raw))


def keyed_records(session_id: str, records: Iterable[Mapping[str, Any]]) -> dict[str, StoredItem]:
    """``keyed_items`` for rows already decoded."""
    _, items = item_views(session_id, records)
    return {item.key: item for item in items if item.key is not None}


def decode_items(session_id: str, raw: Iterable[bytes | str]) -> list[Doc]:
    """Decode stored rows, one JSON object each (see :func:`make_session` for the items)."""
    try:
        return [_json.loads(data) for data in raw]
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"a history item is not valid JSON ({exc})") from exc


def decode_item_array(session_id: str, joined: str | bytes) -> list[Doc]:
    """Decode stored items that the store joined into one JSON array."""
    items: list[Doc] = decode_stored(
        session_id, joined, list, "a history item", "its history is not a list of items"
    )
    return items


DECODE_CHUNK = 250
"""Stored rows decoded by one orjson call (see :func:`decode_rows`)."""


def decode_rows(session_id: str, rows: list[bytes]) -> list[Doc]:
    """Stored item rows (each one JSON value) decoded, in order.

    One orjson call per :data:`DECODE_CHUNK` rows joined into an array: fewer calls than one
    per row, and each array small enough to stay in the CPU's cache (one array of 5,000 items,
    ~3 MB, decoded ~35% slower than 20 arrays of 250). The brackets go onto a chunk's first
    and last rows, not around the joined whole, so its bytes are copied once, not three times.
    A row that is not one JSON value changes the count: it is corrupt."""
    items: list[Doc] = []
    for start in range(0, len(rows), DECODE_CHUNK):
        chunk = rows[start : start + DECODE_CHUNK]
        if len(chunk) == 1:
            joined = b"[" + chunk[0] + b"]"
        else:
            joined = b",".join([b"[" + chunk[0], *chunk[1:-1], chunk[-1] + b"]"])
        items += decode_item_array(session_id, joined)
    if len(items) != len(rows):
        raise CorruptSession(session_id, "a history item is not one JSON value")
    return items


def decode_stored(session_id: str, data: str | bytes, kind: type, what: str, not_kind: str) -> Any:
    """A stored JSON value that must be a ``kind`` (a list, a dict): decoded, or
    :class:`CorruptSession` saying ``what`` is not valid JSON, or ``not_kind``."""
    try:
        value = _json.loads(data)
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise CorruptSession(session_id, not_kind)
    return value


def encode_item(record: Doc) -> bytes:
    """Encode a stored row (one :func:`decode_items` returned, perhaps upgraded)."""
    return _json.dumps(record, what="history item")


def upgrade_items(items: list[Doc], from_version: int) -> list[Doc]:
    if not schema.items_need_upgrade(from_version):
        return items
    return [schema.upgrade_item(item, from_version) for item in items]


def refuse_taken_keys(session_id: str, new: Iterable[tuple[str, int]], taken: Any) -> None:
    """Raise :class:`DuplicateItemKey` if a new item's key is already ``in taken``."""
    for key, _ in new:
        if key in taken:
            raise DuplicateItemKey(session_id, key)


def new_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> list[Mapping[str, Any] | KeyedItem]:
    """Drain and check items to append (as :func:`prepare_items` will), before any I/O."""
    drained = item_list(items)
    prepare_items(drained, 1, 0)
    return drained
