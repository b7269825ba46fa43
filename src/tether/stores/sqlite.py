"""The SQLite store: the embedded default. One file, no server, safe across processes.

Layout: one row per session header (``tether_sessions``, each with its number ``num``), one
row per history item (``tether_items``, keyed by the one integer ``(num << 32) + seq``: see
``_sqlite_sql``), and one row per top-level metadata key (``tether_session_meta``) so that
metadata filters use an index. WAL mode, a busy timeout, and every write inside ``BEGIN
IMMEDIATE``: the version check and the write happen under one database write lock, so two
processes can never both commit from the same version.

Durability: ``synchronous=normal`` (the default) survives the process being killed at any
moment; ``synchronous=full`` also survives power loss, at the cost of an fsync per commit.

The store is this module; the rest is split by concern: ``_sqlite_migrations`` (the tables'
numbered migrations, run by ``_migration_runner``), ``_sqlite_sql`` (the statements, header
rows, and how forks share rows) and ``_sqlite_rows`` (the work on rows inside a transaction).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .. import _core
from .._time import Clock, now_micros, system_clock
from .._urls import as_choice, as_float, parse_store_url, redact
from ..errors import (
    ConflictError,
    InvalidRequest,
    LeaseLost,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ..models import Lease, Page, Session, SessionHeader, StoredItem
from ..schema import schema
from . import _sqlite_rows as db
from ._adding_sync import _AddingStore
from ._arguments import RawWindow
from ._migration_runner import migrate
from ._private import make_private_dirs, open_regular
from ._sqlite_listing import list_statement
from ._sqlite_migrations import SQLiteMigrator
from ._sqlite_sql import (
    BASE,
    DELETE_COLUMNS,
    INSERT_HEADER,
    LOAD_HEADER,
    MAX_SHARES,
    SELECT_SHARES,
    UPDATED_AT,
    doc_to_row,
    fork_shares,
    in_range,
    items_query,
    row_to_doc,
)
from ._writes import DocAdded, Write
from .base import CheckedKeys, Store, SyncBackedAsyncStore

if TYPE_CHECKING:
    from typing_extensions import Unpack  # pydantic's dependency; Python 3.11 has it in typing

__all__ = ["DEFAULT_PATH", "AsyncSQLiteStore", "SQLiteStore"]

DEFAULT_PATH = Path(".tether") / "sessions.db"

log = logging.getLogger(__name__)


class SQLiteStore(_AddingStore):
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
        # Write transactions begun here, counted under the lock, for _change_mark: a write to
        # one session by its id (up to _MARK_SESSIONS ids, then counted anew from a new
        # _epoch), any other in _epoch
        self._epoch = 0
        self._writes: dict[str, int] = {}
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            # a mistyped path must leave no empty database behind, then report "no sessions"
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
            self._cursor = self._conn.cursor()  # BEGIN, COMMIT, change marks: no new cursor
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
        # WAL on a new file takes an exclusive lock, which bypasses the busy handler: retried
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
        # the one runner (stores/_migration_runner.py); SQLite's write lock is its lock
        migrate(SQLiteMigrator(self._conn, self.path, self._write, self._now))

    def _now(self) -> int:
        return now_micros(self._clock)

    def _transaction(self, begin: str, what: str, session_id: str | None = None) -> _Transaction:
        """One transaction on the shared connection; driver errors become StoreError."""
        return _Transaction(self, begin, what, session_id)

    def _write(
        self, session_id: str | None = None
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction, under the database write lock from its first statement;
        ``session_id`` if it changes what a load of that one session returns and nothing else
        (it then moves that session's change mark alone)."""
        return _Transaction(self, "BEGIN IMMEDIATE", "write", session_id)

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction: every SELECT inside sees the same snapshot."""
        return self._transaction("BEGIN", "read")

    def _create(self, session: Session) -> Session:
        now = self._now()
        doc = _core.new_session_doc(session, now)
        encoded = _core.prepare_items(session.history, 1, now)
        doc["last_seq"] = doc["history_len"] = len(encoded)
        row = doc_to_row(doc)
        session_id = doc["id"]
        with self._write(session_id) as conn:  # that id alone: a new session, or one expired
            db.free_id(conn, session_id, now)
            num = db.insert_header(conn, row)
            db.insert_items(conn, session_id, encoded, num)
            db.insert_meta(conn, session_id, doc["metadata"])
        return _core.make_session(doc, _core.decode_items(session_id, [d for _, d in encoded]))

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        current, rows = self._window(session_id, last, after, limit, raw=False)
        return _core.readable_session(current, rows)

    def _load_raw(self, session_id: str, **window: int | None) -> RawWindow | None:
        """The optional undecoded load (the contract's, its window ``last`` / ``after`` /
        ``limit`` passed on as given), unless a subclass changes loads."""
        if not self._loads_unchanged():
            return None
        return self._window(session_id, *map(window.get, ("last", "after", "limit")), raw=True)

    def _loads_unchanged(self) -> bool:
        """Whether loads are this class's: a subclass that changes them is offered no shortcut
        past them (the undecoded load, the change mark), so nothing it adds is skipped."""
        cls = type(self)
        return cls._load is SQLiteStore._load and cls.load is Store.load

    def _change_mark(self, session_id: str) -> tuple[tuple[int, int], int] | None:
        """``PRAGMA data_version`` (moved by any other connection's commit, in any process)
        and the count of writes to no one session, then that of ``session_id``'s, read
        under the lock (no file I/O in WAL mode). None while another thread holds the
        connection (the caller reads rather than wait, perhaps on an event loop) or loads are
        not this class's."""
        if not self._loads_unchanged():
            return None
        lock = self._lock
        if not lock.acquire(False):  # not blocking (positional: half the cost of the keyword)
            return None
        try:
            version: int = self._cursor.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None  # the caller's read reports what is wrong
        finally:
            lock.release()
        return (version, self._epoch), self._writes.get(session_id, 0)

    def _window(
        self, session_id: str, last: int | None, after: int | None, limit: int | None, *, raw: bool
    ) -> tuple[_core.Doc, list[Any]]:
        """The live header document and the window's rows: decoded, or ``raw`` (seq, bytes)."""
        now = self._now()
        # header and items in one read transaction: one snapshot
        with self._read() as conn:
            row = conn.execute(LOAD_HEADER, (session_id,)).fetchone()
            current = None if row is None else row_to_doc(row[:-1])
            if current is None or not _core.is_live(current, now):
                raise SessionNotFound(session_id)
            floor = _core.window_floor(current, last, after)
            count = current["last_seq"] - floor
            if limit is not None:
                count = min(count, limit)
            if count <= 0:
                return current, []
            read = db.read_raw if raw else db.read_items
            return current, read(conn, session_id, floor, count, shared=bool(row[-1]))

    def _add(self, write: Write) -> DocAdded:
        """The write (``expected_version`` None: a blind append); its header fields and rows."""
        session_id, expected_version, items, changes, lease = write
        with self._write(session_id):
            conn = self._cursor  # the kept cursor: every commit is one, each cursor ~1 µs
            now = self._now()
            doc, num = db.committable(conn, session_id, expected_version, lease, now)
            encoded = _core.prepare_items(items, doc["last_seq"] + 1, now)
            new = _core.apply_commit(doc, changes, len(encoded), now)
            db.insert_items(conn, session_id, encoded, num)
            db.update_header(conn, new, changes, num)
        return DocAdded(new, encoded)

    _adds_encoded = _add  # given _core.EncodedNewItems, prepare_items takes them as they are

    def _replace_all(self, write: Write) -> int:
        return self._rewrite(write, None)

    def _replace_after(self, write: Write, after: int) -> int:
        return self._rewrite(write, after)

    def _rewrite(self, write: Write, after: int | None) -> int:
        """Replace the items after seq ``after`` (None: the whole history, the new items
        numbered on from ``last_seq``) with ``write.items``; the new version."""
        session_id, expected_version, items, changes, lease = write
        with self._write() as conn:
            now = self._now()
            doc, num = db.writable(conn, session_id, expected_version, lease, now)
            if after is None:
                encoded = _core.prepare_items(items, doc["last_seq"] + 1, now)
                new = _core.apply_replace(doc, len(encoded), now, changes)
                db.drop_items(conn, session_id)
            else:
                _core.items_kept(doc, after, "replace_tail")  # raises if after is outside it
                encoded = _core.prepare_items(items, after + 1, now)
                new = _core.apply_tail(doc, changes, after, len(encoded), now)
                db.drop_tail(conn, session_id, after)
            db.insert_items(conn, session_id, encoded, num)
            db.update_header(conn, new, changes, num)
        return int(new["version"])

    def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        wanted = keys
        with self._read() as conn:
            doc = db.live_doc(conn, session_id, self._now())
            if doc is None:
                raise SessionNotFound(session_id)
            _core.check_writable(session_id, doc)
            if not wanted:
                return {}
            raw = db.rows_by_key(conn, session_id, wanted)
        return _core.keyed_items(session_id, raw)

    def _list_page(self, query: _core.ListQuery) -> Page:
        sql, params = list_statement(query, self._now())
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        headers = []
        for row in rows[: query.limit]:
            try:
                headers.append(_core.listed_header(row_to_doc(row)))
            except TetherError as exc:  # one bad row must not hide the others
                log.warning("skipping session %r in listing: %s", row[0], exc)
        cursor_row = rows[query.limit - 1] if len(rows) > query.limit else None
        return Page(
            sessions=headers,
            next_cursor=None
            if cursor_row is None
            else _core.encode_cursor(cursor_row[UPDATED_AT], cursor_row[0]),
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
            doc = None if row is None else dict(zip(DELETE_COLUMNS, row, strict=True))
            if doc is not None:
                _core.check_writable(session_id, doc)
            if doc is None or not _core.is_live(doc, now):
                if doc is not None:
                    db.delete_rows(conn, session_id)  # clean up the expired one
                if expected_version is not None:
                    raise SessionNotFound(session_id)
                return False
            _core.check_delete_lease(doc, lease, force, now)
            if expected_version is not None and doc["version"] != expected_version:
                raise ConflictError(session_id, expected_version, doc["version"])
            db.delete_rows(conn, session_id)
            return True

    def _exists(self, session_id: str) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT expires_at FROM tether_sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return row is not None and _core.is_live({"expires_at": row[0]}, self._now())

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        with self._write(session_id) as conn:
            now = self._now()
            doc = db.live_doc(conn, session_id, now)
            if doc is None:
                raise SessionNotFound(session_id)
            _core.check_writable(session_id, doc)
            fields = _core.claim_fields(doc, owner, ttl, now)
            db.set_lease(conn, session_id, fields)
        return _core.lease_from_doc({**doc, **fields})

    def _update_lease(self, lease: Lease, fields: _core.Doc | None, ttl_us: int = 0) -> Lease:
        """Check ``lease`` is current, then write ``fields`` (or extend it by ``ttl_us``)."""
        with self._write(lease.session_id) as conn:
            now = self._now()
            doc = db.live_doc(conn, lease.session_id, now)
            if doc is None:
                raise LeaseLost(lease.session_id, "the session no longer exists")
            _core.check_lease(doc, lease, now)
            if fields is None:
                fields = {"lease_expires_at": now + ttl_us}
                lease = _core.lease_from_doc({**doc, **fields})
            db.set_lease(conn, lease.session_id, fields)
        return lease

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        return self._update_lease(lease, None, ttl)

    def _release(self, lease: Lease) -> None:
        self._update_lease(lease, _core.released_fields())

    def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, without copying them.

        An optional ability the runtime's ``fork`` uses when a store has it. The child shares
        its parent's rows (see ``MAX_SHARES``): the fork costs the same at 10 items as at
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
        with self._write(child_id) as conn:  # the parent reads as it did
            parent = db.live_doc(conn, parent_id, now)
            if parent is None:
                raise SessionNotFound(parent_id)
            _core.check_writable(parent_id, parent)
            if schema.items_need_upgrade(int(parent["schema_version"])):
                raise NotImplementedError("the parent's items need a schema upgrade: copy them")
            count = _core.items_kept(parent, at, "fork")
            offset = at - count  # seqs before the first kept item
            doc.update(fork_seq=at, last_seq=count, history_len=count)
            db.free_id(conn, child_id, now)
            conn.execute(INSERT_HEADER, doc_to_row(doc))
            parent_shares = conn.execute(SELECT_SHARES, (parent_id,)).fetchall()
            if offset == 0 and len(parent_shares) < MAX_SHARES:
                conn.executemany(
                    "INSERT INTO tether_item_shares (session_id, lo, hi, source_id) "
                    "VALUES (?, ?, ?, ?)",
                    [(child_id, *share) for share in fork_shares(parent_id, parent_shares, at)],
                )
            elif offset == 0:
                sql, params = items_query(parent_id, parent_shares, 0, "seq, data", limit=at)
                conn.execute(
                    "INSERT INTO tether_items (k, session_id, seq, data) "
                    f"SELECT {BASE} + seq, ?, seq, data FROM ({sql})",
                    (child_id, child_id, *params),
                )
            else:  # a compacted parent owns all its rows (replace_history drops shares)
                where, kept = in_range(parent_id, offset, at)
                conn.execute(
                    "INSERT INTO tether_items (k, session_id, seq, data) "
                    f"SELECT {BASE} + seq - ?, ?, seq - ?, json_set(data, '$.seq', seq - ?) "
                    f"FROM tether_items WHERE {where}",
                    (child_id, offset, child_id, offset, offset, *kept),
                )
            conn.execute(  # the child's keys are its own (O(keyed items), not O(items))
                "INSERT INTO tether_item_keys (session_id, key, seq) SELECT ?, key, seq - ? "
                "FROM tether_item_keys WHERE session_id = ? AND seq <= ?",
                (child_id, offset, parent_id, at),
            )
            db.insert_meta(conn, child_id, doc["metadata"])
        return _core.doc_to_header(doc)

    def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract."""
        doc, encoded = _core.checked_restore(session, replace, expected_version)
        with self._write() as conn:
            session_id, now = doc["id"], self._now()
            db.free_id(conn, session_id, now, replace=replace, expected_version=expected_version)
            num = db.insert_header(conn, doc_to_row(doc))
            db.insert_items(conn, session_id, encoded, num)
            db.insert_meta(conn, session_id, doc["metadata"])

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
                db.delete_rows(conn, session_id)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_MARK_SESSIONS = 65_536  # sessions whose writes are counted one by one; then a new epoch


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


class _Transaction:
    """:meth:`SQLiteStore._transaction`: under the store's lock, ``begin``, the body, then
    COMMIT; on any failure a rollback, a driver error raised as StoreError. A class, not a
    ``@contextmanager`` generator: every write is one, and the generator cost ~1 µs more."""

    __slots__ = ("_begin", "_session_id", "_store", "_what")

    def __init__(self, store: SQLiteStore, begin: str, what: str, session_id: str | None) -> None:
        self._store, self._begin, self._what = store, begin, what
        self._session_id = session_id

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._lock.acquire()
        if self._begin != "BEGIN":  # a write, counted before it can change anything
            session_id = self._session_id
            if session_id is None:
                store._epoch += 1
            else:
                writes = store._writes
                count = writes.get(session_id)
                if count is None:
                    count = 0
                    if len(writes) >= _MARK_SESSIONS:  # full: every count starts again
                        writes.clear()
                        store._epoch += 1
                writes[session_id] = count + 1
        try:
            store._cursor.execute(self._begin)
        except BaseException as exc:
            self._fail(exc)
            raise
        return store._conn

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        store = self._store
        if exc is None:
            try:
                store._cursor.execute("COMMIT")
            except BaseException as failure:
                self._fail(failure)
                raise
            store._lock.release()
        else:
            self._fail(exc)  # a body's other exception goes on as it was

    def _fail(self, exc: BaseException) -> None:
        """Roll back and release the lock; a driver error ``exc`` is raised as StoreError."""
        store = self._store
        try:
            _rollback(store._conn)
        finally:
            store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"SQLite {self._what} on {store.path!r} failed: {exc}") from exc


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction was open: nothing to undo
        conn.execute("ROLLBACK")


class SQLiteOptions(TypedDict, total=False):
    """:class:`SQLiteStore`'s keyword options, for the stores built on it."""

    synchronous: str
    timeout: float
    clock: Clock
    create: bool


class AsyncSQLiteStore(SyncBackedAsyncStore):
    """The async twin of :class:`SQLiteStore`: each call runs in a worker thread."""

    sync: SQLiteStore

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        store: SQLiteStore | None = None,
        **options: Unpack[SQLiteOptions],
    ) -> None:
        """``path`` and ``options`` as for :class:`SQLiteStore`; or ``store``, one already open."""
        super().__init__(store if store is not None else SQLiteStore(path, **options))

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock = system_clock, create: bool = True
    ) -> AsyncSQLiteStore:
        return cls(store=SQLiteStore.from_url(url, clock=clock, create=create))
