"""The SQLite store: the embedded default. One file, no server, safe across processes.

Layout: one row per session header (``tether_sessions``), one row per history item
(``tether_items``, keyed by ``(session_id, seq)``), and one row per top-level metadata key
(``tether_session_meta``) so that metadata filters use an index. WAL mode, a busy timeout, and
every write inside ``BEGIN IMMEDIATE``: the version check and the write happen under one
database write lock, so two processes can never both commit from the same version.

Durability: ``synchronous=normal`` (the default) survives the process being killed at any
moment; ``synchronous=full`` also survives power loss, at the cost of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import _core, _json
from .._time import Clock, system_clock, to_micros
from .._urls import as_choice, as_float, parse_store_url, redact
from ..errors import (
    ConflictError,
    CorruptSession,
    DuplicateItemKey,
    InvalidRequest,
    LeaseLost,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ..models import HistoryItem, Lease, Page, Session, SessionHeader, StoredItem
from ..schema import schema
from ._private import make_private_dirs, open_regular
from .base import CheckedItems, CheckedKeys, Store, SyncBackedAsyncStore

__all__ = ["DEFAULT_PATH", "AsyncSQLiteStore", "SQLiteStore"]

DEFAULT_PATH = Path(".tether") / "sessions.db"

log = logging.getLogger(__name__)

# Ordered schema migrations of the database itself (not of session documents): each entry is
# applied once, in order, recorded in tether_schema_migrations.
_DB_MIGRATIONS: Sequence[Sequence[str]] = (
    (
        """CREATE TABLE tether_sessions (
            id TEXT PRIMARY KEY NOT NULL,
            owner TEXT,
            agent TEXT,
            status TEXT NOT NULL,
            metadata TEXT NOT NULL,
            state TEXT NOT NULL,
            options TEXT NOT NULL,
            parent_id TEXT,
            fork_seq INTEGER,
            version INTEGER NOT NULL,
            schema_version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            expires_at INTEGER,
            last_seq INTEGER NOT NULL,
            history_len INTEGER NOT NULL
        )""",
        """CREATE TABLE tether_items (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        """CREATE TABLE tether_session_meta (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX tether_session_meta_kv ON tether_session_meta (key, value, session_id)",
        "CREATE INDEX tether_sessions_updated ON tether_sessions (updated_at, id)",
        "CREATE INDEX tether_sessions_owner ON tether_sessions (owner, updated_at, id)",
        "CREATE INDEX tether_sessions_agent ON tether_sessions (agent, updated_at, id)",
        "CREATE INDEX tether_sessions_status ON tether_sessions (status, updated_at, id)",
        """CREATE INDEX tether_sessions_expires ON tether_sessions (expires_at)
            WHERE expires_at IS NOT NULL""",
    ),
    (  # 2: leases (claims)
        "ALTER TABLE tether_sessions ADD COLUMN lease_owner TEXT",
        "ALTER TABLE tether_sessions ADD COLUMN lease_token TEXT",
        "ALTER TABLE tether_sessions ADD COLUMN lease_fence INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tether_sessions ADD COLUMN lease_expires_at INTEGER",
    ),
    (  # 3: forks share their parent's rows instead of copying them
        """CREATE TABLE tether_item_shares (
            session_id TEXT NOT NULL,
            lo INTEGER NOT NULL,
            hi INTEGER NOT NULL,
            source_id TEXT NOT NULL,
            PRIMARY KEY (session_id, lo)
        ) WITHOUT ROWID""",
        "CREATE INDEX tether_item_shares_source ON tether_item_shares (source_id, session_id)",
    ),
    (  # 4: sessions without an owner (or agent) stay out of its index: every commit moves
        # updated_at, and an index entry nobody can query (owner = ? never matches NULL) was
        # one more B-tree to rewrite per commit. SQLite still uses these partial indexes for
        # "owner = ?", which implies "owner IS NOT NULL".
        "DROP INDEX tether_sessions_owner",
        "CREATE INDEX tether_sessions_owner ON tether_sessions (owner, updated_at, id) "
        "WHERE owner IS NOT NULL",
        "DROP INDEX tether_sessions_agent",
        "CREATE INDEX tether_sessions_agent ON tether_sessions (agent, updated_at, id) "
        "WHERE agent IS NOT NULL",
    ),
    (  # 5: keyed history items (KeyedItem): key -> seq, unique within a session. A table of
        # its own rather than a column of tether_items, because a fork's items may be its
        # parent's rows (tether_item_shares) while its keys are its own.
        """CREATE TABLE tether_item_keys (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX tether_item_keys_seq ON tether_item_keys (session_id, seq)",
    ),
)

_HEADER_COLUMNS = _core.DOC_FIELDS
_UPDATED_AT = _HEADER_COLUMNS.index("updated_at")
_SELECT_HEADER = f"SELECT {', '.join(_HEADER_COLUMNS)} FROM tether_sessions"
_INSERT_HEADER = (
    f"INSERT INTO tether_sessions ({', '.join(_HEADER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _HEADER_COLUMNS)})"
)
_JSON_COLUMNS = frozenset(_core.JSON_FIELDS)
_FREE_FIELDS = ("version", "schema_version", "expires_at")  # what _core.restore_over reads
_DELETE_COLUMNS = (
    "id", "version", "schema_version", "expires_at", "lease_owner", "lease_token",
    "lease_expires_at",
)  # fmt: skip

# Loading a window: SQLite joins the items into one JSON array and orjson decodes it in one
# call, which beats decoding row by row (~30% at 1,000 items here). Past a few thousand items
# the joined string's size costs more than that saves, so larger windows are decoded per row.
# Items are read as BLOBs: bytes cost one copy, a str also a UTF-8 pass orjson repeats anyway.
# Figures: benchmarks/chat_turn.py, docs/benchmarks.md.
_JOIN_LIMIT = 2000
_NO_LAST = 1 << 62  # ``last=None``: a window reaching past any history

# The common load in ONE statement (an autocommit SELECT reads one consistent snapshot, so no
# BEGIN/COMMIT is needed): the header and, when the window is small and the session shares
# no rows, its items already joined. ?1 after, ?2 last, ?3 the join limit, ?4 the id, ?5 the
# limit (a page: the oldest ?5 items of the window). Anything else (a large window, a fork's
# shared rows) goes through _read_items in a read transaction, row by row.
_FLOOR = "max(s.last_seq - s.history_len, ?1, s.last_seq - ?2)"
_SHARES = "EXISTS (SELECT 1 FROM tether_item_shares WHERE session_id = s.id)"
_LOAD_ONE = (
    f"SELECT {', '.join('s.' + c for c in _HEADER_COLUMNS)}, "
    f"CASE WHEN min(s.last_seq - {_FLOOR}, ?5) BETWEEN 1 AND ?3 AND NOT {_SHARES} THEN "
    "(SELECT CAST('[' || group_concat(data, ',') || ']' AS BLOB) FROM "
    f"(SELECT data FROM tether_items WHERE session_id = s.id AND seq > {_FLOOR} ORDER BY seq "
    "LIMIT ?5)) END FROM tether_sessions s WHERE s.id = ?4"
)
# Forks share rows. A fork does not copy its parent's items: it records, in
# tether_item_shares, that its seqs in (lo, hi] are the rows of ``source_id`` with the same
# seqs, so a fork costs O(1) whatever the history's length. A session's own rows and its
# shares never overlap. Before a session's rows are deleted or replaced, every share that
# reads them is turned into the dependent's own rows (_detach_dependents): no fork ever loses
# an item to its parent's rewrite or deletion. Past _MAX_SHARES pieces (a long chain of forks
# of forks), a fork copies instead, keeping every load one bounded UNION ALL.
_MAX_SHARES = 32
_SELECT_SHARES = "SELECT lo, hi, source_id FROM tether_item_shares WHERE session_id = ? ORDER BY lo"
_OWN_ITEMS = "SELECT seq, data FROM tether_items WHERE session_id = ? AND seq > ?"
_SHARED_ITEMS = "SELECT seq, data FROM tether_items WHERE session_id = ? AND seq > ? AND seq <= ?"

Share = tuple[int, int, str]  # (lo, hi, source_id): seqs in (lo, hi] are source_id's rows


def _items_query(
    session_id: str,
    shares: Sequence[Share],
    floor: int,
    columns: str = "CAST(data AS BLOB)",
    limit: int | None = None,
) -> tuple[str, list[Any]]:
    """A SELECT of ``columns`` (of ``seq, data``) for every item of ``session_id`` after
    ``floor``, in order: its own rows and the rows its shares point at; with ``limit``, only
    the first ``limit`` of them (seqs are contiguous, so each part is also cut at seq
    ``floor + limit`` and no row past the page is read). Only fixed fragments are joined;
    every value is a bound parameter."""
    ceiling = None if limit is None else floor + limit
    own = _OWN_ITEMS if ceiling is None else f"{_OWN_ITEMS} AND seq <= ?"
    parts, params = [own], [session_id, floor]
    if ceiling is not None:
        params.append(ceiling)
    for lo, hi, source_id in shares:
        top = hi if ceiling is None else min(hi, ceiling)
        if top > max(lo, floor):
            parts.append(_SHARED_ITEMS)
            params += [source_id, max(lo, floor), top]
    sql = f"SELECT {columns} FROM ({' UNION ALL '.join(parts)}) ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _fork_shares(parent_id: str, parent_shares: Sequence[Share], at: int) -> list[Share]:
    """A fork's shares at seq ``at`` of a parent whose history starts at seq 1: the parent's
    own shares below ``at``, and the parent's own rows (the gaps between them) as shares of the
    parent itself. Adjacent pieces of one source merge."""
    shares: list[Share] = []

    def add(lo: int, hi: int, source_id: str) -> None:
        if hi <= lo:
            return
        if shares and shares[-1][2] == source_id and shares[-1][1] == lo:
            shares[-1] = (shares[-1][0], hi, source_id)
        else:
            shares.append((lo, hi, source_id))

    covered = 0
    for lo, hi, source_id in sorted(parent_shares):
        if lo >= at:
            break
        add(covered, min(lo, at), parent_id)
        add(lo, min(hi, at), source_id)
        covered = hi
    add(covered, at, parent_id)
    return shares


def _row_to_doc(row: Sequence[Any]) -> _core.Doc:
    doc = dict(zip(_HEADER_COLUMNS, row, strict=True))
    try:
        for name in _core.JSON_FIELDS:
            doc[name] = _json.loads(doc[name])
    except _json.JSONDecodeError as exc:
        raise CorruptSession(str(doc["id"]), f"its {name} column is not valid JSON") from exc
    return doc


def _doc_to_row(doc: _core.Doc) -> tuple[Any, ...]:
    return tuple(
        _json.dumps(doc[name]).decode() if name in _JSON_COLUMNS else doc[name]
        for name in _HEADER_COLUMNS
    )


class SQLiteStore(Store):
    """Sessions in one SQLite database file (``.tether/sessions.db`` unless told otherwise).

    Safe to share between threads (one connection, serialized) and between processes (SQLite's
    file locks). ``timeout`` is how long a write waits for another process's write to finish
    before raising :class:`~tether.errors.StoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        synchronous: str = "normal",
        timeout: float = 30.0,
        clock: Clock = system_clock,
        create: bool = True,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        # "~/app.db" is the home directory, as in a shell, not a directory named "~"
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._clock = clock
        self._lock = threading.RLock()
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            # a reader with a mistyped path must not leave an empty database (and its
            # directories) behind and then report "no sessions"
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"no SQLite database at {str(Path(self.path).absolute())!r}; nothing was created. "
                "Check the path (sqlite:///relative.db is relative to the working directory, "
                "sqlite:////abs/path.db absolute)."
            )
        try:
            if self.path != ":memory:":
                _create_private(self.path)
            self._conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open SQLite database {self.path!r}: {exc}. Check that the directory "
                "exists and is writable."
            ) from exc
        try:
            self._set_journal_mode(timeout)
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot prepare SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = system_clock, create: bool = True) -> SQLiteStore:
        """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///~/app.db``
        (in the home directory), or ``sqlite://`` for the default path; options ``synchronous``
        (normal|full) and ``timeout`` (seconds). ``create=False`` refuses a database that does
        not exist (ConfigurationError) instead of creating it.
        """
        netloc, path, options = parse_store_url(
            url, "sqlite", {"synchronous": as_choice("normal", "full"), "timeout": as_float}
        )
        if netloc:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"{redact(url)!r} names a host ({redact(netloc)!r}); a SQLite URL is "
                "sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        # sqlite:///x.db -> "x.db" (relative); sqlite:////tmp/x.db -> "/tmp/x.db"
        file_path = path[1:] if path.startswith("/") else path
        return cls(file_path or DEFAULT_PATH, clock=clock, create=create, **options)

    # --- plumbing ------------------------------------------------------------------------------

    def _set_journal_mode(self, timeout: float) -> None:
        # Switching a new file to WAL needs an exclusive lock; with several processes opening
        # the same new file at once, one of them can be refused without the busy handler.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        target = len(_DB_MIGRATIONS)
        try:
            row = self._conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone()
            if row[0] == target:
                return  # the common case: no write lock taken on open
        except sqlite3.OperationalError:
            pass  # no migrations table yet
        with self._write():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS tether_schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
            row = self._conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone()
            applied = row[0] or 0
            if applied > target:
                raise StoreError(
                    f"database {self.path!r} has schema version {applied}, newer than this "
                    f"tether knows ({target}); upgrade tether to use it"
                )
            for version in range(applied + 1, target + 1):
                for statement in _DB_MIGRATIONS[version - 1]:
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT INTO tether_schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, self._now()),
                )

    def _now(self) -> int:
        return to_micros(self._clock())

    @contextmanager
    def _transaction(self, begin: str, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction on the shared connection; driver errors become StoreError."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute(begin)
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"SQLite {what} on {self.path!r} failed: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction, under the database write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE", "write")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction: every SELECT inside sees the same snapshot."""
        return self._transaction("BEGIN", "read")

    def _live_doc(self, conn: sqlite3.Connection, session_id: str, now: int) -> _core.Doc | None:
        row = conn.execute(f"{_SELECT_HEADER} WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        doc = _row_to_doc(row)
        return doc if _core.is_live(doc, now) else None

    def _writable(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        expected_version: int | None,
        lease: Lease | None,
        now: int,
    ) -> _core.Doc:
        """The session's header for a write; ``expected_version`` None: a blind append."""
        doc = self._live_doc(conn, session_id, now)
        if doc is None:
            raise SessionNotFound(session_id)
        _core.check_writable(session_id, doc)
        _core.check_write_lease(doc, lease, now)
        if expected_version is not None and doc["version"] != expected_version:
            raise ConflictError(session_id, expected_version, doc["version"])
        if _core.needs_upgrade(doc):
            self._write_back_upgraded(conn, doc)
        return doc

    def _write_back_upgraded(self, conn: sqlite3.Connection, doc: _core.Doc) -> None:
        """Rewrite a session stored by an older tether in the current schema (once)."""
        old = int(doc["schema_version"])
        session_id = doc["id"]
        upgraded = _core.upgrade_doc(doc)
        assignments = ", ".join(f"{name} = ?" for name in _HEADER_COLUMNS[1:])
        conn.execute(
            f"UPDATE tether_sessions SET {assignments} WHERE id = ?",
            (*_doc_to_row(upgraded)[1:], session_id),
        )
        self._write_meta(conn, session_id, upgraded["metadata"])
        rows = conn.execute(
            "SELECT seq, data FROM tether_items WHERE session_id = ?", (session_id,)
        ).fetchall()
        if rows and schema.items_need_upgrade(old):
            items = _core.upgrade_items(_core.decode_items(session_id, [r[1] for r in rows]), old)
            conn.executemany(
                "UPDATE tether_items SET data = ? WHERE session_id = ? AND seq = ?",
                [
                    (_core.encode_item(item).decode(), session_id, seq)
                    for (seq, _), item in zip(rows, items, strict=True)
                ],
            )
        doc.update(upgraded)

    def _free_id(
        self,
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
            f"SELECT {', '.join(_FREE_FIELDS)} FROM tether_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        existing = None if row is None else dict(zip(_FREE_FIELDS, row, strict=True))
        if _core.restore_over(
            session_id, existing, now, replace=replace, expected_version=expected_version
        ):
            self._delete_rows(conn, session_id)

    @classmethod
    def _write_meta(
        cls, conn: sqlite3.Connection, session_id: str, metadata: Mapping[str, Any]
    ) -> None:
        conn.execute("DELETE FROM tether_session_meta WHERE session_id = ?", (session_id,))
        cls._insert_meta(conn, session_id, metadata)

    @staticmethod
    def _insert_meta(
        conn: sqlite3.Connection, session_id: str, metadata: Mapping[str, Any]
    ) -> None:
        """Index a new session's metadata (its id was freed, so it has no rows yet)."""
        rows = [(session_id, key, value) for key, value in _core.metadata_index(metadata)]
        if rows:
            conn.executemany(
                "INSERT INTO tether_session_meta (session_id, key, value) VALUES (?, ?, ?)", rows
            )

    @staticmethod
    def _insert_items(
        conn: sqlite3.Connection, session_id: str, encoded: _core.PreparedItems
    ) -> None:
        """Insert new rows and index their keys, refusing a key the session already holds."""
        if encoded.keys:
            keys = [key for key, _ in encoded.keys]
            marks = ", ".join("?" for _ in keys)
            taken = conn.execute(
                f"SELECT key FROM tether_item_keys WHERE session_id = ? AND key IN ({marks})",
                (session_id, *keys),
            ).fetchone()
            if taken is not None:
                raise DuplicateItemKey(session_id, taken[0])
            conn.executemany(
                "INSERT INTO tether_item_keys (session_id, key, seq) VALUES (?, ?, ?)",
                [(session_id, key, seq) for key, seq in encoded.keys],
            )
        if encoded:
            conn.executemany(
                "INSERT INTO tether_items (session_id, seq, data) VALUES (?, ?, ?)",
                [(session_id, seq, data.decode()) for seq, data in encoded],
            )

    @staticmethod
    def _detach_above(conn: sqlite3.Connection, session_id: str, after: int) -> None:
        """Turn the shares that read ``session_id``'s rows above seq ``after`` into their
        readers' own rows, before those rows are deleted (a fork keeps what it had)."""
        dependents = conn.execute(
            "SELECT session_id, lo, hi FROM tether_item_shares WHERE source_id = ? AND hi > ?",
            (session_id, after),
        ).fetchall()
        for dependent, lo, hi in dependents:
            conn.execute(
                "INSERT INTO tether_items (session_id, seq, data) SELECT ?, seq, data "
                "FROM tether_items WHERE session_id = ? AND seq > ? AND seq <= ?",
                (dependent, session_id, lo, hi),
            )
        if dependents:
            conn.execute(
                "DELETE FROM tether_item_shares WHERE source_id = ? AND hi > ?",
                (session_id, after),
            )

    @classmethod
    def _drop_tail(cls, conn: sqlite3.Connection, session_id: str, after: int) -> None:
        """Delete a session's items (own rows, shares, keys) above seq ``after``: O(suffix)."""
        cls._detach_above(conn, session_id, after)
        conn.execute(
            "DELETE FROM tether_item_shares WHERE session_id = ? AND lo >= ?", (session_id, after)
        )
        conn.execute(
            "UPDATE tether_item_shares SET hi = ? WHERE session_id = ? AND hi > ?",
            (after, session_id, after),
        )
        conn.execute(
            "DELETE FROM tether_items WHERE session_id = ? AND seq > ?", (session_id, after)
        )
        conn.execute(
            "DELETE FROM tether_item_keys WHERE session_id = ? AND seq > ?", (session_id, after)
        )

    @staticmethod
    def _detach_dependents(conn: sqlite3.Connection, session_id: str) -> None:
        """Turn every share that reads ``session_id``'s rows into the reader's own rows.

        Called before those rows are deleted or replaced. A share of ``session_id`` only ever
        covers rows it owns (a fork maps its parent's own shares to their sources), so
        copying the range is enough."""
        dependents = conn.execute(
            "SELECT session_id, lo, hi FROM tether_item_shares WHERE source_id = ?",
            (session_id,),
        ).fetchall()
        for dependent, lo, hi in dependents:
            conn.execute(
                "INSERT INTO tether_items (session_id, seq, data) SELECT ?, seq, data "
                "FROM tether_items WHERE session_id = ? AND seq > ? AND seq <= ?",
                (dependent, session_id, lo, hi),
            )
        if dependents:
            conn.execute("DELETE FROM tether_item_shares WHERE source_id = ?", (session_id,))

    @classmethod
    def _drop_items(cls, conn: sqlite3.Connection, session_id: str) -> None:
        """Delete a session's items (its own rows and its shares), keeping its forks whole."""
        cls._detach_dependents(conn, session_id)
        conn.execute("DELETE FROM tether_item_shares WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM tether_items WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM tether_item_keys WHERE session_id = ?", (session_id,))

    @classmethod
    def _delete_rows(cls, conn: sqlite3.Connection, session_id: str) -> None:
        cls._drop_items(conn, session_id)
        for table, column in (
            ("tether_session_meta", "session_id"),
            ("tether_sessions", "id"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (session_id,))

    # --- the contract --------------------------------------------------------------------------

    def _create(self, session: Session) -> Session:
        now = self._now()
        doc = _core.new_session_doc(session, now)
        encoded = _core.prepare_items(session.history, 1, now)
        doc["last_seq"] = doc["history_len"] = len(encoded)
        row = _doc_to_row(doc)
        session_id = doc["id"]
        with self._write() as conn:
            self._free_id(conn, session_id, now)
            conn.execute(_INSERT_HEADER, row)
            self._insert_items(conn, session_id, encoded)
            self._insert_meta(conn, session_id, doc["metadata"])
        return _core.make_session(doc, _core.decode_items(session_id, [d for _, d in encoded]))

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        now = self._now()
        params = (
            after or 0,
            _NO_LAST if last is None else last,
            _JOIN_LIMIT,
            session_id,
            _NO_LAST if limit is None else limit,
        )
        with self._lock:
            try:
                row = self._conn.execute(_LOAD_ONE, params).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite read on {self.path!r} failed: {exc}") from exc
        if row is None:
            raise SessionNotFound(session_id)
        doc = _row_to_doc(row[:-1])
        if not _core.is_live(doc, now):
            raise SessionNotFound(session_id)
        joined = row[-1]
        floor = _core.window_floor(doc, last, after)
        if doc["last_seq"] <= floor:
            return _core.readable_session(doc, [])
        if joined is not None:
            return _core.readable_session(doc, _core.decode_item_array(session_id, joined))
        # a large window or a fork's shared rows: header and items in one read transaction
        with self._read() as conn:
            current = self._live_doc(conn, session_id, now)
            if current is None:
                raise SessionNotFound(session_id)
            floor = _core.window_floor(current, last, after)
            count = current["last_seq"] - floor
            if limit is not None:
                count = min(count, limit)
            history = self._read_items(conn, session_id, floor, count) if count > 0 else []
        return _core.readable_session(current, history)

    @staticmethod
    def _read_items(
        conn: sqlite3.Connection, session_id: str, floor: int, count: int
    ) -> list[HistoryItem]:
        """The ``count`` items after seq ``floor``, inside the caller's read transaction."""
        shares = conn.execute(_SELECT_SHARES, (session_id,)).fetchall()
        sql, params = _items_query(session_id, shares, floor, limit=count)
        return _core.decode_items(session_id, [row[0] for row in conn.execute(sql, params)])

    def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        return self._add(session_id, expected_version, items, changes, lease)

    def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        return self._add(session_id, None, items, {}, lease)

    def _add(
        self,
        session_id: str,
        expected_version: int | None,
        items: CheckedItems,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """A commit (``expected_version`` None: a blind append)."""
        with self._write() as conn:
            now = self._now()
            doc = self._writable(conn, session_id, expected_version, lease, now)
            encoded = _core.prepare_items(items, doc["last_seq"] + 1, now)
            new = _core.apply_commit(doc, changes, len(encoded), now)
            self._insert_items(conn, session_id, encoded)
            self._update_header(conn, new, changes)
        return int(new["version"])

    def _update_header(self, conn: sqlite3.Connection, new: _core.Doc, changes: _core.Doc) -> None:
        """Write a write's new version, time, seq counters and changed fields."""
        columns = ["version", "updated_at", "last_seq", "history_len", *changes]
        values = [_json.dumps(new[c]).decode() if c in _JSON_COLUMNS else new[c] for c in columns]
        # column names come from the fixed CHANGEABLE_FIELDS set, never from input text
        assignments = ", ".join(f"{c} = ?" for c in columns)
        conn.execute(f"UPDATE tether_sessions SET {assignments} WHERE id = ?", (*values, new["id"]))
        if "metadata" in changes:
            self._write_meta(conn, new["id"], new["metadata"])

    def _replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        with self._write() as conn:
            now = self._now()
            doc = self._writable(conn, session_id, expected_version, lease, now)
            encoded = _core.prepare_items(items, doc["last_seq"] + 1, now)
            new = _core.apply_replace(doc, len(encoded), now, changes)
            self._drop_items(conn, session_id)
            self._insert_items(conn, session_id, encoded)
            self._update_header(conn, new, changes)
        return int(new["version"])

    def _replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        with self._write() as conn:
            now = self._now()
            doc = self._writable(conn, session_id, expected_version, lease, now)
            _core.items_kept(doc, after, "replace_tail")  # raises if after is outside the history
            encoded = _core.prepare_items(items, after + 1, now)
            new = _core.apply_tail(doc, changes, after, len(encoded), now)
            self._drop_tail(conn, session_id, after)
            self._insert_items(conn, session_id, encoded)
            self._update_header(conn, new, changes)
        return int(new["version"])

    def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        wanted = keys
        with self._read() as conn:
            doc = self._live_doc(conn, session_id, self._now())
            if doc is None:
                raise SessionNotFound(session_id)
            _core.check_writable(session_id, doc)
            raw: list[bytes] = []
            if not wanted:
                return {}
            marks = ", ".join("?" for _ in wanted)
            seqs = conn.execute(  # the (session_id, key) primary key: one lookup per key
                f"SELECT seq FROM tether_item_keys WHERE session_id = ? AND key IN ({marks}) "
                "ORDER BY seq",
                (session_id, *wanted),
            ).fetchall()
            shares = conn.execute(_SELECT_SHARES, (session_id,)).fetchall() if seqs else []
            for (seq,) in seqs:  # each row by the (session_id, seq) primary key
                sql, params = _items_query(session_id, shares, seq - 1, limit=1)
                raw.extend(row[0] for row in conn.execute(sql, params))
        return _core.keyed_items(session_id, raw)

    def _list_page(self, query: _core.ListQuery) -> Page:
        # Only fixed SQL fragments are joined; every value is a bound parameter.
        where = ["(s.expires_at IS NULL OR s.expires_at > ?)"]
        params: list[Any] = [self._now()]
        for column, value in (("owner", query.owner), ("agent", query.agent)):
            if value is not None:
                where.append(f"s.{column} = ?")
                params.append(value)
        if query.statuses is not None:
            where.append(f"s.status IN ({', '.join('?' for _ in query.statuses)})")
            params.extend(sorted(query.statuses))
        if query.updated_after is not None:
            where.append("s.updated_at > ?")
            params.append(query.updated_after)
        if query.updated_before is not None:
            where.append("s.updated_at < ?")
            params.append(query.updated_before)
        if query.cursor is not None:
            where.append("(s.updated_at < ? OR (s.updated_at = ? AND s.id < ?))")
            params.extend((query.cursor[0], query.cursor[0], query.cursor[1]))
        for key, value in query.metadata:
            # IN (subquery), not a correlated EXISTS: SQLite then drives it from the
            # (key, value) index instead of probing every session.
            where.append(
                "s.id IN (SELECT session_id FROM tether_session_meta WHERE key = ? AND value = ?)"
            )
            params.extend((key, value))
        columns = ", ".join(f"s.{c}" for c in _HEADER_COLUMNS)
        sql = (
            f"SELECT {columns} FROM tether_sessions s WHERE {' AND '.join(where)} "
            "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?"
        )
        params.append(query.limit + 1)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        headers = []
        for row in rows[: query.limit]:
            try:
                headers.append(_core.listed_header(_row_to_doc(row)))
            except TetherError as exc:  # one bad row must not hide the others
                log.warning("skipping session %r in listing: %s", row[0], exc)
        cursor_row = rows[query.limit - 1] if len(rows) > query.limit else None
        return Page(
            sessions=headers,
            next_cursor=None
            if cursor_row is None
            else _core.encode_cursor(cursor_row[_UPDATED_AT], cursor_row[0]),
        )

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        with self._write() as conn:
            now = self._now()
            row = conn.execute(
                "SELECT id, version, schema_version, expires_at, lease_owner, lease_token, "
                "lease_expires_at FROM tether_sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            doc = None if row is None else dict(zip(_DELETE_COLUMNS, row, strict=True))
            if doc is not None:
                _core.check_writable(session_id, doc)
            if doc is None or not _core.is_live(doc, now):
                if doc is not None:
                    self._delete_rows(conn, session_id)  # clean up the expired one
                if expected_version is not None:
                    raise SessionNotFound(session_id)
                return False
            _core.check_delete_lease(doc, lease, force, now)
            if expected_version is not None and doc["version"] != expected_version:
                raise ConflictError(session_id, expected_version, doc["version"])
            self._delete_rows(conn, session_id)
            return True

    def _exists(self, session_id: str) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT expires_at FROM tether_sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return row is not None and _core.is_live({"expires_at": row[0]}, self._now())

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        with self._write() as conn:
            now = self._now()
            doc = self._live_doc(conn, session_id, now)
            if doc is None:
                raise SessionNotFound(session_id)
            _core.check_writable(session_id, doc)
            fields = _core.claim_fields(doc, owner, ttl, now)
            self._set_lease(conn, session_id, fields)
        return _core.lease_from_doc({**doc, **fields})

    @staticmethod
    def _set_lease(conn: sqlite3.Connection, session_id: str, fields: _core.Doc) -> None:
        # column names come from the fixed LEASE_FIELDS, never from input text
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(
            f"UPDATE tether_sessions SET {assignments} WHERE id = ?", (*fields.values(), session_id)
        )

    def _update_lease(self, lease: Lease, fields: _core.Doc | None, ttl_us: int = 0) -> Lease:
        """Check ``lease`` is current, then write ``fields`` (or extend it by ``ttl_us``)."""
        with self._write() as conn:
            now = self._now()
            doc = self._live_doc(conn, lease.session_id, now)
            if doc is None:
                raise LeaseLost(lease.session_id, "the session no longer exists")
            _core.check_lease(doc, lease, now)
            if fields is None:
                fields = {"lease_expires_at": now + ttl_us}
                lease = _core.lease_from_doc({**doc, **fields})
            self._set_lease(conn, lease.session_id, fields)
        return lease

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        return self._update_lease(lease, None, ttl)

    def _release(self, lease: Lease) -> None:
        self._update_lease(lease, _core.released_fields())

    def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, without copying them.

        An optional ability the runtime's ``fork`` uses when a store has it. The child shares
        its parent's rows (see ``_MAX_SHARES``): the fork costs the same at 10 items as at
        10,000, and later writes to either side stay invisible to the other. A parent whose
        history was compacted (renumbered from 1 in the child) or a long chain of forks is
        copied row to row by SQLite instead, never decoded. ``child.history`` is ignored;
        ``child.parent_id`` names the parent.
        """
        if child.parent_id is None:
            raise InvalidRequest("fork_session needs child.parent_id")
        parent_id = child.parent_id
        now = self._now()
        doc = _core.new_session_doc(child, now)
        child_id = doc["id"]
        with self._write() as conn:
            parent = self._live_doc(conn, parent_id, now)
            if parent is None:
                raise SessionNotFound(parent_id)
            _core.check_writable(parent_id, parent)
            if schema.items_need_upgrade(int(parent["schema_version"])):
                raise NotImplementedError("the parent's items need a schema upgrade: copy them")
            count = _core.items_kept(parent, at, "fork")
            offset = at - count  # seqs before the first kept item
            doc.update(fork_seq=at, last_seq=count, history_len=count)
            self._free_id(conn, child_id, now)
            conn.execute(_INSERT_HEADER, _doc_to_row(doc))
            parent_shares = conn.execute(_SELECT_SHARES, (parent_id,)).fetchall()
            if offset == 0 and len(parent_shares) < _MAX_SHARES:
                conn.executemany(
                    "INSERT INTO tether_item_shares (session_id, lo, hi, source_id) "
                    "VALUES (?, ?, ?, ?)",
                    [(child_id, *share) for share in _fork_shares(parent_id, parent_shares, at)],
                )
            elif offset == 0:
                sql, params = _items_query(parent_id, parent_shares, 0, "seq, data")
                conn.execute(
                    "INSERT INTO tether_items (session_id, seq, data) "
                    f"SELECT ?, seq, data FROM ({sql}) WHERE seq <= ?",
                    (child_id, *params, at),
                )
            else:  # a compacted parent owns all its rows (replace_history drops shares)
                conn.execute(
                    "INSERT INTO tether_items (session_id, seq, data) "
                    "SELECT ?, seq - ?, json_set(data, '$.seq', seq - ?) FROM tether_items "
                    "WHERE session_id = ? AND seq > ? AND seq <= ?",
                    (child_id, offset, offset, parent_id, offset, at),
                )
            conn.execute(  # the child's keys are its own (O(keyed items), not O(items))
                "INSERT INTO tether_item_keys (session_id, key, seq) SELECT ?, key, seq - ? "
                "FROM tether_item_keys WHERE session_id = ? AND seq <= ?",
                (child_id, offset, parent_id, at),
            )
            self._insert_meta(conn, child_id, doc["metadata"])
        return _core.doc_to_header(doc)

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract."""
        _core.check_restore_args(replace, expected_version)
        doc, encoded = _core.restore_doc(session)
        session_id = doc["id"]
        with self._write() as conn:
            now = self._now()
            self._free_id(conn, session_id, now, replace=replace, expected_version=expected_version)
            conn.execute(_INSERT_HEADER, _doc_to_row(doc))
            self._insert_items(conn, session_id, encoded)
            self._insert_meta(conn, session_id, doc["metadata"])

    def purge_expired(self) -> int:
        """Delete the sessions whose ``expires_at`` has passed; returns how many.

        A session stored by a newer tether is kept, expired or not: only a tether that knows
        its schema may delete it.
        """
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id FROM tether_sessions WHERE expires_at IS NOT NULL AND expires_at <= ? "
                "AND schema_version <= ?",
                (self._now(), schema.current),
            ).fetchall()
            for (session_id,) in rows:
                self._delete_rows(conn, session_id)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _create_private(path: str) -> None:
    """Create the database file (and its missing directories) readable by this user only.

    SQLite creates a new database file with the umask's mode (world-readable under the usual
    022), and its -wal and -shm files with the database file's mode. An empty file is an empty
    database, so tether creates the file itself, 0600 (directories 0700), before SQLite opens
    it; the -wal and -shm files then follow it. An existing file keeps its mode.
    """
    make_private_dirs(Path(path).parent)
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.close(fd)


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction was open: nothing to undo
        conn.execute("ROLLBACK")


class AsyncSQLiteStore(SyncBackedAsyncStore):
    """The async twin of :class:`SQLiteStore`: each call runs in a worker thread."""

    sync: SQLiteStore

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        synchronous: str = "normal",
        timeout: float = 30.0,
        clock: Clock = system_clock,
        create: bool = True,
        store: SQLiteStore | None = None,
    ) -> None:
        super().__init__(
            store
            if store is not None
            else SQLiteStore(
                path, synchronous=synchronous, timeout=timeout, clock=clock, create=create
            )
        )

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock = system_clock, create: bool = True
    ) -> AsyncSQLiteStore:
        return cls(store=SQLiteStore.from_url(url, clock=clock, create=create))
