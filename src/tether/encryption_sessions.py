"""Encryption at rest for whole sessions: every value of a session sealed or opened through one
:class:`~tether.encryption_codec.Codec` (which seals and opens one value in its place). No I/O.

The encrypting store (:mod:`tether.encryption_async`) opens what its store beneath returns and
seals what it writes with these; ``tether rekey`` and ``tether export --decrypt`` use them on
whole sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _core
from ._core import construct_trusted
from .encryption_codec import Codec, key_ids_in
from .models import HistoryItem, Session, SessionHeader, StoredItem

__all__ = [
    "open_header",
    "open_loaded",
    "open_raw",
    "open_session",
    "rebuilt",
    "seal_session",
    "stored_key_ids",
]


def rebuilt(
    session: Session,
    state: dict[str, Any],
    options: dict[str, Any],
    items: Sequence[StoredItem],
) -> Session:
    """``session`` with these state, options and stored items (both history views rebuilt)."""
    fields = dict(session.__dict__)
    fields["state"] = state
    fields["options"] = options
    history: list[HistoryItem] = [
        {**entry.item, "seq": entry.seq, "timestamp": entry.timestamp} for entry in items
    ]
    fields["history"] = history
    out = construct_trusted(Session, fields)
    out._items = items
    out._stored_schema_version = session._stored_schema_version
    return out


def open_session(codec: Codec, session: Session) -> Session:
    """The session as written: its state, options and items decrypted (fails closed).
    ``session`` is left as it was."""
    sid = session.id
    entries = session._items if session._items is not None else session.items
    values = codec.open_window(
        sid, [{"seq": entry.seq, "key": entry.key, "item": entry.item} for entry in entries]
    )
    items = [
        StoredItem(entry.seq, entry.timestamp, entry.key, value)
        for entry, value in zip(entries, values, strict=True)
    ]
    return rebuilt(
        session,
        codec.open_field(sid, "state", session.state),
        codec.open_field(sid, "options", session.options),
        items,
    )


def open_loaded(codec: Codec, session: Session) -> Session:
    """:func:`open_session` for a session a store has just returned to this caller: opened in
    place, without a copy (a load returns a copy that is the caller's to change, a clause
    of the conformance suite), and without a :class:`StoredItem` built for any envelope.

    The store keeps the decoded rows for ``Session.items`` to build at first use (the
    ``_records`` of :func:`tether._core.make_session`); their items are opened in one pass,
    each row's envelope replaced by its item. A session without such rows, or with a row of
    another shape, is opened by :func:`open_session`.
    """
    # the private attributes directly: pydantic's __getattr__ for one costs microseconds
    rows = session.__pydantic_private__.get("_records")  # type: ignore[union-attr]
    if rows is None:
        return open_session(codec, session)
    sid = session.id
    try:
        values = codec.open_window(sid, rows)
    except (KeyError, TypeError):  # a row of another shape (an older one): the slow way
        return open_session(codec, session)
    fields = session.__dict__
    opened = {"state": fields["state"], "options": fields["options"]}
    codec.open_fields(sid, opened)
    history: list[HistoryItem] = []
    for row, value in zip(rows, values, strict=True):
        row["item"] = value
        history.append({**value, "seq": row["seq"], "timestamp": row["timestamp"]})
    fields.update(opened)
    fields["history"] = history  # the rows, opened in place, give the items at first use
    return session


def open_raw(
    codec: Codec,
    doc: dict[str, Any],
    rows: Sequence[tuple[int, bytes]],
    known: Sequence[bytes] = (),
) -> Session:
    """The session of a window a store read undecoded (its ``_load_raw``: the header document
    and ``(seq, stored JSON)`` rows, in the current schema), opened (fails closed): what the
    store's own ``load`` would give for the same rows stored in clear. ``known``: the
    window's rows before ``rows``, in clear, that the caller knows are still stored as the
    codec verified them (:meth:`Codec.known_rows`). ``doc`` is changed."""
    sid = doc["id"]
    clear = codec.open_rows(sid, rows) if rows else []
    if known:
        clear = [*known, *clear]
    records: list[dict[str, Any]] = []
    if clear:  # (a worker's load after the items it holds has none)
        records = _core.decode_rows(sid, clear)
    codec.open_fields(sid, doc)
    return _core.readable_session(doc, records)


def open_header(codec: Codec, header: SessionHeader) -> SessionHeader:
    """A listed header with its state and options decrypted."""
    fields = dict(header.__dict__)
    codec.open_fields(header.id, fields)
    return construct_trusted(SessionHeader, fields)


def seal_session(codec: Codec, session: Session) -> Session:
    """The session to store: state, options and every item (at its seq, under its key)
    encrypted with the current key. The items are ``session.items`` (exact, with keys)."""
    sid = session.id
    items = [
        StoredItem(
            entry.seq,
            entry.timestamp,
            entry.key,
            codec.seal_item(sid, entry.seq, entry.key, entry.item, what=f"history item {offset}"),
        )
        for offset, entry in enumerate(session.items)
    ]
    return rebuilt(
        session,
        codec.seal_field(sid, "state", session.state),
        codec.seal_field(sid, "options", session.options),
        items,
    )


def stored_key_ids(session: Session) -> set[str | None]:
    """Every key id a stored (raw) session's values name; None for a value in clear."""
    return key_ids_in([session.state, session.options, *(entry.item for entry in session.items)])
