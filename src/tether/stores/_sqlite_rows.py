"""The SQLite store's work on rows inside a transaction the store holds: a session's
header, its metadata index, its items and keys, and the shares of rows between forks.

Every function takes the open connection; none begins or ends a transaction (the store's
``_write`` / ``_read`` do). The shares are explained in :mod:`._sqlite_sql` ("Forks share
rows"): before a session's rows are deleted or replaced, :func:`detach_dependents` (or
:func:`detach_above` for a tail) turns every share that reads them into the reader's own rows.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping
from typing import Any

from .. import _core, _json
from .._core.leases import check_write
from ..errors import CorruptSession, SessionNotFound
from ..models import HistoryItem, Lease
from ..schema import schema
from ._sqlite_sql import (
    BASE,
    COMMIT_COLUMNS,
    COMMIT_HEADER,
    FREE_FIELDS,
    HEADER_COLUMNS,
    INSERT_HEADER,
    JSON_COLUMNS,
    SELECT_HEADER,
    SELECT_SHARES,
    WRITE_HEADER,
    doc_to_row,
    in_range,
    items_query,
    row_to_doc,
)

Statements = sqlite3.Connection | sqlite3.Cursor
"""Where a function's statements run: the open connection, or the store's kept cursor (no
cursor made per statement: a commit's runs there), each statement's rows read before the
next statement."""


def live_doc(conn: sqlite3.Connection, session_id: str, now: int) -> _core.Doc | None:
    """The session's header, or None if it is missing or expired."""
    row = conn.execute(f"{SELECT_HEADER} WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        return None
    doc = row_to_doc(row)
    return doc if _core.is_live(doc, now) else None


def writable(
    conn: Statements,
    session_id: str,
    expected_version: int | None,
    lease: Lease | None,
    now: int,
) -> tuple[_core.Doc, int]:
    """The session's header for a write (``expected_version`` None: a blind append), and its
    number (``num``: its rows' keys and its header's rowid), read in the same statement."""
    row = conn.execute(WRITE_HEADER, (session_id,)).fetchone()
    doc = None if row is None else row_to_doc(row[:-1])
    if doc is None or not _core.is_live(doc, now):
        raise SessionNotFound(session_id)
    check_write(session_id, doc, expected_version, lease, now)
    if _core.needs_upgrade(doc):
        write_back_upgraded(conn, doc)
    return doc, row[-1]


def committable(
    conn: Statements,
    session_id: str,
    expected_version: int | None,
    lease: Lease | None,
    now: int,
) -> tuple[_core.Doc, int]:
    """:func:`writable` for a commit (or an append): only the header fields it reads
    (``COMMIT_COLUMNS``: its checks', ``apply_commit``'s and its stamp's), checked as there; the
    whole header when a session an older tether stored is to be upgraded first. A commit
    writes the fields it changes, never the header whole, so it needs no more."""
    row = conn.execute(COMMIT_HEADER, (session_id,)).fetchone()
    if row is None:
        raise SessionNotFound(session_id)
    doc = dict(zip(COMMIT_COLUMNS, row[:-1], strict=True))
    try:
        doc["state"] = _json.loads(doc["state"])
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, "its state column is not valid JSON") from exc
    if not _core.is_live(doc, now):
        raise SessionNotFound(session_id)
    if _core.needs_upgrade(doc):  # the whole header read, checked and upgraded
        return writable(conn, session_id, expected_version, lease, now)
    check_write(session_id, doc, expected_version, lease, now)
    return doc, row[-1]


def write_back_upgraded(conn: Statements, doc: _core.Doc) -> None:
    """Rewrite a session stored by an older tether in the current schema (once)."""
    old = int(doc["schema_version"])
    session_id = doc["id"]
    upgraded = _core.upgrade_doc(doc)
    assignments = ", ".join(f"{name} = ?" for name in HEADER_COLUMNS[1:])
    conn.execute(
        f"UPDATE tether_sessions SET {assignments} WHERE id = ?",
        (*doc_to_row(upgraded)[1:], session_id),
    )
    write_meta(conn, session_id, upgraded["metadata"])
    where, params = in_range(session_id, 0)
    rows = conn.execute(f"SELECT k, data FROM tether_items WHERE {where}", params).fetchall()
    if rows and schema.items_need_upgrade(old):
        items = _core.upgrade_items(_core.decode_items(session_id, [r[1] for r in rows]), old)
        conn.executemany(
            "UPDATE tether_items SET data = ? WHERE k = ?",
            [
                (_core.encode_item(item).decode(), k)
                for (k, _), item in zip(rows, items, strict=True)
            ],
        )
    doc.update(upgraded)


def free_id(
    conn: sqlite3.Connection,
    session_id: str,
    now: int,
    *,
    replace: bool = False,
    expected_version: int | None = None,
) -> None:
    """Make ``session_id`` free for a new session where ``_core.restore_over`` lets it go
    (an expired one is dropped: its id is free again)."""
    row = conn.execute(
        f"SELECT {', '.join(FREE_FIELDS)} FROM tether_sessions WHERE id = ?", (session_id,)
    ).fetchone()
    existing = None if row is None else dict(zip(FREE_FIELDS, row, strict=True))
    if _core.restore_over(
        session_id, existing, now, replace=replace, expected_version=expected_version
    ):
        delete_rows(conn, session_id)


def insert_header(conn: sqlite3.Connection, row: tuple[Any, ...]) -> int:
    """Insert a new session's header row; its number (``num``, the rowid SQLite gave it)."""
    num = conn.execute(INSERT_HEADER, row).lastrowid
    if num is None:  # an INSERT into a rowid table always sets it
        raise sqlite3.DatabaseError("the new session header has no rowid")
    return num


def write_meta(conn: Statements, session_id: str, metadata: Mapping[str, Any]) -> None:
    """Replace a session's metadata index (one row per top-level key)."""
    conn.execute("DELETE FROM tether_session_meta WHERE session_id = ?", (session_id,))
    insert_meta(conn, session_id, metadata)


def insert_meta(conn: Statements, session_id: str, metadata: Mapping[str, Any]) -> None:
    """Index a new session's metadata (its id was freed, so it has no rows yet)."""
    rows = [(session_id, key, value) for key, value in _core.metadata_index(metadata)]
    if rows:
        conn.executemany(
            "INSERT INTO tether_session_meta (session_id, key, value) VALUES (?, ?, ?)", rows
        )


INSERT_KEY = "INSERT INTO tether_item_keys (session_id, key, seq) VALUES (?, ?, ?)"
INSERT_ROW = "INSERT INTO tether_items (k, session_id, seq, data) VALUES (?, ?, ?, ?)"


def insert_items(conn: Statements, session_id: str, encoded: _core.PreparedItems, num: int) -> None:
    """Insert new rows and index their keys, refusing a key the session already holds.

    ``num`` is the session's number: a row's ``k`` is ``(num << 32) + seq``, computed here
    rather than by a subquery per row. (A multi-row INSERT measured no faster than one
    executemany per table.) A key the session holds is refused by tether_item_keys' primary
    key: see :func:`insert_keys`."""
    if encoded.keys:
        insert_keys(conn, session_id, encoded.keys)
    base = num << 32
    conn.executemany(
        INSERT_ROW, [(base + seq, session_id, seq, data.decode()) for seq, data in encoded]
    )


def insert_keys(conn: Statements, session_id: str, keys: list[tuple[str, int]]) -> None:
    """Index new keys; a key the session already holds raises :class:`DuplicateItemKey`
    naming the first such key in the write's order, as the other stores do.

    The primary key (session_id, key) refuses the duplicate, so a write whose keys are all new
    (nearly every one) reads nothing first. The keys inserted before the refused one stay
    until the caller's rollback: the keys the session held before are told apart by their
    seqs, all below the new ones (a write numbers its new items after every item it keeps,
    and the rows it replaces are deleted, with their keys, before it inserts)."""
    try:
        conn.executemany(INSERT_KEY, [(session_id, key, seq) for key, seq in keys])
    except sqlite3.IntegrityError:
        first_new = keys[0][1]
        marks = ", ".join("?" for _ in keys)
        taken = {
            key
            for key, seq in conn.execute(
                f"SELECT key, seq FROM tether_item_keys WHERE session_id = ? AND key IN ({marks})",
                (session_id, *(key for key, _ in keys)),
            )
            if seq < first_new
        }
        _core.refuse_taken_keys(session_id, keys, taken)
        raise  # not a key the session held: a store error, as any other


def rows_by_key(conn: sqlite3.Connection, session_id: str, keys: list[str]) -> list[bytes]:
    """The stored rows of the session's items under ``keys`` (those it holds), in seq order."""
    marks = ", ".join("?" for _ in keys)
    seqs = conn.execute(  # the (session_id, key) primary key: one lookup per key
        f"SELECT seq FROM tether_item_keys WHERE session_id = ? AND key IN ({marks}) ORDER BY seq",
        (session_id, *keys),
    ).fetchall()
    shares = conn.execute(SELECT_SHARES, (session_id,)).fetchall() if seqs else []
    raw: list[bytes] = []
    for (seq,) in seqs:  # each row by the (session_id, seq) primary key
        sql, params = items_query(session_id, shares, seq - 1, limit=1)
        raw.extend(row[0] for row in conn.execute(sql, params))
    return raw


def detach_above(conn: sqlite3.Connection, session_id: str, after: int) -> None:
    """Turn the shares that read ``session_id``'s rows above seq ``after`` into their
    readers' own rows, before those rows are deleted (a fork keeps what it had)."""
    dependents = conn.execute(
        "SELECT session_id, lo, hi FROM tether_item_shares WHERE source_id = ? AND hi > ?",
        (session_id, after),
    ).fetchall()
    for dependent, lo, hi in dependents:
        where, params = in_range(session_id, lo, hi)
        conn.execute(
            f"INSERT INTO tether_items (k, session_id, seq, data) SELECT {BASE} + seq, ?, seq, "
            f"data FROM tether_items WHERE {where}",
            (dependent, dependent, *params),
        )
    if dependents:
        conn.execute(
            "DELETE FROM tether_item_shares WHERE source_id = ? AND hi > ?",
            (session_id, after),
        )


def drop_tail(conn: sqlite3.Connection, session_id: str, after: int) -> None:
    """Delete a session's items (own rows, shares, keys) above seq ``after``: O(suffix)."""
    detach_above(conn, session_id, after)
    conn.execute(
        "DELETE FROM tether_item_shares WHERE session_id = ? AND lo >= ?", (session_id, after)
    )
    conn.execute(
        "UPDATE tether_item_shares SET hi = ? WHERE session_id = ? AND hi > ?",
        (after, session_id, after),
    )
    where, params = in_range(session_id, after)
    conn.execute(f"DELETE FROM tether_items WHERE {where}", params)
    conn.execute(
        "DELETE FROM tether_item_keys WHERE session_id = ? AND seq > ?", (session_id, after)
    )


def detach_dependents(conn: sqlite3.Connection, session_id: str) -> None:
    """Turn every share that reads ``session_id``'s rows into the reader's own rows.

    Called before those rows are deleted or replaced. A share of ``session_id`` only ever
    covers rows it owns (a fork maps its parent's own shares to their sources), so
    copying the range is enough."""
    detach_above(conn, session_id, -1)  # every share: a share's hi is a seq, never below 0


def drop_items(conn: sqlite3.Connection, session_id: str) -> None:
    """Delete a session's items (its own rows and its shares), keeping its forks whole."""
    detach_dependents(conn, session_id)
    conn.execute("DELETE FROM tether_item_shares WHERE session_id = ?", (session_id,))
    where, params = in_range(session_id, -1)
    conn.execute(f"DELETE FROM tether_items WHERE {where}", params)
    conn.execute("DELETE FROM tether_item_keys WHERE session_id = ?", (session_id,))


def delete_rows(conn: sqlite3.Connection, session_id: str) -> None:
    """Delete a whole session: its items (keeping its forks whole), metadata and header."""
    drop_items(conn, session_id)
    for table, column in (
        ("tether_session_meta", "session_id"),
        ("tether_sessions", "id"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (session_id,))


def read_items(
    conn: sqlite3.Connection, session_id: str, floor: int, count: int, *, shared: bool = True
) -> list[HistoryItem]:
    """The ``count`` items after seq ``floor``, inside the caller's read transaction
    (``shared`` False: the caller knows the session shares no rows)."""
    shares = conn.execute(SELECT_SHARES, (session_id,)).fetchall() if shared else []
    sql, params = items_query(session_id, shares, floor, limit=count)
    return _core.decode_rows(session_id, [row[0] for row in conn.execute(sql, params)])


def read_raw(
    conn: sqlite3.Connection, session_id: str, floor: int, count: int, *, shared: bool = True
) -> list[tuple[int, bytes]]:
    """:func:`read_items` undecoded: each row's ``(seq, JSON bytes)``."""
    shares = conn.execute(SELECT_SHARES, (session_id,)).fetchall() if shared else []
    sql, params = items_query(session_id, shares, floor, "seq, CAST(data AS BLOB)", limit=count)
    return conn.execute(sql, params).fetchall()


@functools.lru_cache(maxsize=64)
def update_sql(changed: tuple[str, ...]) -> str:
    """The UPDATE of a write's header: its counters and the ``changed`` fields (names from
    the fixed CHANGEABLE_FIELDS set, never from input text), by the session's number."""
    columns = ("version", "updated_at", "last_seq", "history_len", *changed)
    return f"UPDATE tether_sessions SET {', '.join(f'{c} = ?' for c in columns)} WHERE num = ?"


def update_header(conn: Statements, new: _core.Doc, changes: _core.Doc, num: int) -> None:
    """Write a write's new version, time, seq counters and changed fields (``num``: the
    session's number, its header's rowid, so the row is found without the id's index)."""
    values = [new["version"], new["updated_at"], new["last_seq"], new["history_len"]]
    if changes:  # most commits change no field: no list of them to build
        values += [_json.dumps(new[c]).decode() if c in JSON_COLUMNS else new[c] for c in changes]
    values.append(num)
    conn.execute(update_sql(tuple(changes)), values)
    if "metadata" in changes:
        write_meta(conn, new["id"], new["metadata"])


def set_lease(conn: sqlite3.Connection, session_id: str, fields: _core.Doc) -> None:
    """Write a claim's, renewal's or release's lease fields."""
    # column names come from the fixed LEASE_FIELDS, never from input text
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(
        f"UPDATE tether_sessions SET {assignments} WHERE id = ?", (*fields.values(), session_id)
    )
