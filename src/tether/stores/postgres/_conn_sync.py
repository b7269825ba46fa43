# generated from src/tether/stores/postgres/_conn_async.py by tools/unasync.py, do not edit
"""The PostgreSQL store's work on one connection: single statements, the migration of its
tables, the write-back of a session stored by an older tether, and the steps under a session's
row lock that give its forks their own rows before its rows are rewritten or deleted.

The pool and the guarded statements are the store's (``_base_async.py``).

The sync side.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg import Connection, errors
from psycopg.rows import TupleRow

from ... import _core, _json
from ...errors import StoreError
from ...schema import schema
from .. import _migration_runner as runner
from . import _arrays, _migrations, _options, _rows
from ._connection import SAFE_SEARCH_PATH
from ._sql import Statements

Row = tuple[Any, ...]


def one(
    conn: Connection[TupleRow], query: bytes, params: Mapping[str, Any] | None = None
) -> Row | None:
    cursor = conn.execute(query, params)
    return cursor.fetchone()


def all_rows(
    conn: Connection[TupleRow], query: bytes, params: Mapping[str, Any] | None = None
) -> list[Row]:
    cursor = conn.execute(query, params)
    return cursor.fetchall()


def configure(conn: Connection[TupleRow]) -> None:
    """Every pooled connection resolves names through pg_catalog only (see SAFE_SEARCH_PATH)
    and sends the new items' arrays as literals (``_arrays``)."""
    _arrays.register(conn.adapters)
    conn.execute(SAFE_SEARCH_PATH)


def migrate(conn: Connection[TupleRow], sql: Statements, schema_name: str, where: str) -> None:
    """Bring ``schema_name``'s tables to the last migration (see ``_migrations``), by the
    one migration runner (:mod:`tether.stores._migration_runner`)."""
    if conn.info.server_version < _options.MIN_SERVER_VERSION:
        raise StoreError(
            f"PostgreSQL at {where} is version {conn.info.server_version}; tether "
            "needs PostgreSQL 14 or newer"
        )
    runner.migrate(_PgMigrator(conn, sql, schema_name, where))


class _PgMigrator:
    """The runner's migrator on one autocommit connection: the lock is
    ``pg_advisory_xact_lock`` on a hash of the schema name, taken in the transaction that
    applies the steps, so it is released when that transaction ends, however it ends."""

    def __init__(
        self, conn: Connection[TupleRow], sql: Statements, schema_name: str, where: str
    ) -> None:
        self._conn = conn
        self._sql = sql
        self._schema_name = schema_name
        self.target = len(sql.migrations)
        self.where = f"schema {schema_name!r} at {where}"

    def applied(self) -> int | None:
        try:
            row = one(self._conn, self._sql.migrations_applied)
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            return None  # a new schema (or one older than the record): created under the lock
        return int(row[0] or 0) if row is not None else 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        conn, sql = self._conn, self._sql
        key = _migrations.lock_key(self._schema_name)
        with conn.transaction():
            # One migrator per schema at a time, across processes and machines.
            conn.execute(sql.migrations_lock, {"key": key})
            row = one(conn, sql.schema_exists, {"name": self._schema_name})
            if row is None or not row[0]:
                conn.execute(sql.create_schema)
            conn.execute(sql.create_migrations_table)
            yield

    def apply(self, version: int) -> None:
        for statement in self._sql.migrations[version - 1]:
            self._conn.execute(statement)

    def record(self, version: int) -> None:
        self._conn.execute(self._sql.record_migration, {"v": version})


def write_back_upgraded(
    conn: Connection[TupleRow], sql: Statements, doc: _core.Doc, items: bool
) -> None:
    """Rewrite a session stored by an older tether in the current schema (once)."""
    old = int(doc["schema_version"])
    session_id = doc["id"]
    new = _core.upgrade_doc(doc)
    conn.execute(
        sql.upgrade_header,
        {
            "id": session_id,
            **{name: new[name] for name in ("owner", "agent", "status", "parent_id")},
            **{
                name: _json.dumps_text(new[name], what=name)
                for name in ("metadata", "state", "options")
            },
            "fork_seq": new["fork_seq"],
            "expires_at": _rows.as_time(new["expires_at"]),
            "schema_version": new["schema_version"],
        },
    )
    conn.execute(sql.rewrite_meta, {"id": session_id, **_rows.metadata_rows(new["metadata"])})
    if items and schema.items_need_upgrade(old):
        rows = all_rows(conn, sql.select_items, {"id": session_id})
        upgraded = _core.upgrade_items(_core.decode_items(session_id, [r[1] for r in rows]), old)
        conn.execute(
            sql.rewrite_items,
            {
                "id": session_id,
                "seqs": [r[0] for r in rows],
                "datas": [_core.encode_item(item).decode() for item in upgraded],
            },
        )


def detach(conn: Connection[TupleRow], sql: Statements, session_id: str, above: int) -> None:
    """Give the forks that read ``session_id``'s rows above seq ``above`` copies of their
    own, and lower its ``shared_hi`` to ``above``. The caller holds its row lock (no new
    fork can start); the forks' rows are locked first, in a statement of their own, so the
    copy reads them as they are now (see "Forks share rows" in ``_sql_shares.py``)."""
    params = {"id": session_id, "above": above}
    conn.execute(sql.lock_dependents, params)
    conn.execute(sql.detach, params)


def purge_locked(conn: Connection[TupleRow], sql: Statements, session_id: str) -> None:
    """Delete a session whose row lock the caller holds, its forks detached first."""
    detach(conn, sql, session_id, 0)
    conn.execute(sql.purge_one, {"id": session_id})
