"""The SQLite store's tables: their numbered migrations and the runner's hold on them.

Migrations of the database itself (not of session documents: see :mod:`tether.schema`): each
step is applied once, in order, and recorded in ``tether_schema_migrations``, by the one
migration runner (:mod:`tether.stores._migration_runner`) under SQLite's write lock
(``BEGIN IMMEDIATE``): two processes opening an old database at once never both migrate it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Final

__all__ = ["MIGRATIONS", "SQLiteMigrator"]

# tether_sessions' columns after its id: those of migration 1, then the leases' (migration 2)
_HEADER_V1 = (
    "owner TEXT",
    "agent TEXT",
    "status TEXT NOT NULL",
    "metadata TEXT NOT NULL",
    "state TEXT NOT NULL",
    "options TEXT NOT NULL",
    "parent_id TEXT",
    "fork_seq INTEGER",
    "version INTEGER NOT NULL",
    "schema_version INTEGER NOT NULL",
    "created_at INTEGER NOT NULL",
    "updated_at INTEGER NOT NULL",
    "expires_at INTEGER",
    "last_seq INTEGER NOT NULL",
    "history_len INTEGER NOT NULL",
)
_LEASES = (
    "lease_owner TEXT",
    "lease_token TEXT",
    "lease_fence INTEGER NOT NULL DEFAULT 0",
    "lease_expires_at INTEGER",
)
_SESSION_COLUMNS = ", ".join(["id", *(c.split()[0] for c in (*_HEADER_V1, *_LEASES))])

MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (
        f"CREATE TABLE tether_sessions (id TEXT PRIMARY KEY NOT NULL, {', '.join(_HEADER_V1)})",
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
        *(f"ALTER TABLE tether_sessions ADD COLUMN {column}" for column in _LEASES),
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
    (  # 6: fewer B-trees written per commit. Item rows keyed by k = (num << 32) + seq, num
        # a session's number (its rowid): one B-tree, where a (session_id, seq) primary key
        # was a table and an index, each written on every commit. The status index without
        # updated_at, which every commit moved: a status filter reads its sessions and sorts.
        "CREATE TABLE tether_sessions_6 (num INTEGER PRIMARY KEY "
        "CHECK (num > 0 AND num < 2147483648), id TEXT NOT NULL UNIQUE, "
        f"{', '.join((*_HEADER_V1, *_LEASES))})",
        f"INSERT INTO tether_sessions_6 ({_SESSION_COLUMNS}) "
        f"SELECT {_SESSION_COLUMNS} FROM tether_sessions ORDER BY rowid",
        """CREATE TABLE tether_items_6 (
            k INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL CHECK (seq > 0 AND seq < 4294967296),
            data TEXT NOT NULL
        )""",
        "INSERT INTO tether_items_6 (k, session_id, seq, data) "
        "SELECT (s.num << 32) + i.seq, i.session_id, i.seq, i.data "
        "FROM tether_items i JOIN tether_sessions_6 s ON s.id = i.session_id",
        "DROP TABLE tether_items",
        "ALTER TABLE tether_items_6 RENAME TO tether_items",
        "DROP TABLE tether_sessions",  # and its indexes, made again below
        "ALTER TABLE tether_sessions_6 RENAME TO tether_sessions",
        "CREATE INDEX tether_sessions_updated ON tether_sessions (updated_at, id)",
        "CREATE INDEX tether_sessions_owner ON tether_sessions (owner, updated_at, id) "
        "WHERE owner IS NOT NULL",
        "CREATE INDEX tether_sessions_agent ON tether_sessions (agent, updated_at, id) "
        "WHERE agent IS NOT NULL",
        "CREATE INDEX tether_sessions_status ON tether_sessions (status)",
        """CREATE INDEX tether_sessions_expires ON tether_sessions (expires_at)
            WHERE expires_at IS NOT NULL""",
    ),
    (  # 7: the status index ordered by updated_at again. Without it a status filter (and the
        # runtime's default listing, every status but archived) read all of its sessions and
        # sorted them: the newest 50 of 100,000 took ~120 ms instead of ~8. Keeping it costs
        # one index page moved per commit; listing in O(page) is the contract's promise.
        "DROP INDEX tether_sessions_status",
        "CREATE INDEX tether_sessions_status ON tether_sessions (status, updated_at, id)",
    ),
    (  # 8: one index moved per commit fewer. The status index gives the updated_at order
        # within each of the eight statuses, and with expires_at it answers a listing without
        # a status filter too (the newest page of each status, merged: _sqlite_listing), so
        # the index on updated_at alone, one more B-tree page written per commit, goes.
        "DROP INDEX tether_sessions_updated",
        "DROP INDEX tether_sessions_status",
        "CREATE INDEX tether_sessions_status "
        "ON tether_sessions (status, updated_at, id, expires_at)",
    ),
)

_CREATE_RECORD = (
    "CREATE TABLE IF NOT EXISTS tether_schema_migrations "
    "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
)
_APPLIED = "SELECT max(version) FROM tether_schema_migrations"
_RECORD = "INSERT INTO tether_schema_migrations (version, applied_at) VALUES (?, ?)"


class SQLiteMigrator:
    """The runner's :class:`~tether.stores._migration_runner.Migrator` on one SQLite
    connection: ``write`` is the store's write transaction (``BEGIN IMMEDIATE``, the
    database's write lock, so it is also the migration lock), ``now`` its clock in µs."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
        now: Callable[[], int],
        steps: Sequence[Sequence[str]] = MIGRATIONS,
    ) -> None:
        self._conn = conn
        self._write = write
        self._now = now
        self._steps = steps
        self.where = f"database {path!r}"
        self.target = len(steps)

    def applied(self) -> int | None:
        try:
            row = self._conn.execute(_APPLIED).fetchone()
        except sqlite3.OperationalError:
            return None  # no record table yet: a new database, or one older than it
        return int(row[0] or 0)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._write():
            self._conn.execute(_CREATE_RECORD)
            yield

    def apply(self, version: int) -> None:
        for statement in self._steps[version - 1]:
            self._conn.execute(statement)

    def record(self, version: int) -> None:
        self._conn.execute(_RECORD, (version, self._now()))
