"""The PostgreSQL store: sessions shared by many processes and machines.

The async side is written by hand; store_sync.py is generated from it by tools/unasync.py.

Tables, in the store's schema (``public`` unless the URL says ``?schema=``):

* ``tether_sessions``: one row per session header; ``metadata`` / ``state`` / ``options`` are
  ``json`` columns (exact text: JSONB would refuse ``\\u0000``, which the contract stores);
  times are ``timestamptz`` (microseconds); the lease is four columns, its token never leaves
  the server except to the holder.
* ``tether_items``: one row per history item, keyed ``(session_id, seq)``; a commit inserts
  its items and never touches an earlier row.
* ``tether_session_meta``: one row per top-level metadata key, indexed by a hash of (key,
  canonical value), so ``list(metadata=...)`` is an index probe with JSON equality.
* indexes ``(updated_at, id)`` and ``(owner | agent | status, updated_at, id)``: every listing
  filter reads its page in index order; cursors are ``(updated_at, id)``.

One round trip per commit: the commit is a single statement (``postgres._sql.COMMIT``):
a guarded ``UPDATE ... WHERE id AND version AND schema AND live AND lease ... RETURNING`` whose
returned ``last_seq`` numbers the items inserted by the next CTE, plus the metadata rows. It
runs on an autocommit connection, so the statement is its own transaction: no BEGIN, no
COMMIT, no read first. Only when it matches nothing does the store read the row to say why
(not found, conflict, lease lost, claimed, newer schema), or, for a session stored by an older
tether, upgrade it under a row lock and apply the commit in that transaction. ``load`` is one
statement too (the header row, then the window's rows, from one snapshot), and so are claims.

Migrations of the database are numbered (``postgres._migrations.MIGRATIONS``) and recorded in
``tether_schema_migrations``; the first use of a store applies the missing ones in one
transaction under ``pg_advisory_xact_lock``, so processes starting together wait for one
another instead of racing. An up-to-date schema costs one query and takes no lock.

Time is the server's ``now()`` unless a ``clock`` is given, which then stamps every write.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ... import _core
from ..._time import Clock, from_micros
from ...errors import (
    ConfigurationError,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionData,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ...models import Lease, Page, Session, SessionHeader, StoredItem
from ...schema import schema
from ..base import AsyncStore, CheckedItems, CheckedKeys
from . import _connection, _options, _rows, _sql
from ._conn_async import all_rows, configure, migrate, one, write_back_upgraded

__all__ = ["AsyncPostgresStore"]

log = logging.getLogger("tether.stores.postgres")

Row = tuple[Any, ...]


class AsyncPostgresStore(AsyncStore):
    """Sessions in PostgreSQL (psycopg 3 and a connection pool).

    ``conninfo`` is a libpq URL or ``key=value`` string; tether's own options are keyword
    arguments here and URL options in :meth:`from_url`. The pool opens on first use (or on
    :meth:`open`), when the store's tables are created or migrated; :meth:`close` closes it.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        schema: str = _options.DEFAULT_SCHEMA,
        clock: Clock | None = None,
        pool_min_size: int = _options.DEFAULT_POOL_MIN_SIZE,
        pool_max_size: int = _options.DEFAULT_POOL_MAX_SIZE,
        pool_timeout: float = _options.DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self.schema = _options.check_schema_name(schema)
        if pool_max_size < 1 or not 0 <= pool_min_size <= pool_max_size:
            raise ConfigurationError(
                f"pool sizes must satisfy 0 <= pool_min_size <= pool_max_size and "
                f"pool_max_size >= 1, not {pool_min_size} and {pool_max_size}"
            )
        if not pool_timeout > 0:
            raise ConfigurationError(f"pool_timeout must be > 0 seconds, not {pool_timeout!r}")
        self._clock = clock
        self._where = _options.describe(conninfo)
        self._conninfo = conninfo
        self._kwargs = _options.connection_kwargs(conninfo)
        self._timeout = float(pool_timeout)
        self._sql = _sql.Statements.for_schema(self.schema)
        self._pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
            conninfo,
            kwargs=self._kwargs,
            min_size=pool_min_size,
            max_size=pool_max_size,
            timeout=self._timeout,
            # A lost connection is replaced on demand, not by retrying in the background for
            # minutes: the first call after the server is back connects at once.
            reconnect_timeout=0.0,
            configure=configure,
            name=f"tether:{self._where}/{self.schema}",
            open=False,
        )
        self._ready = False
        self._closed = False
        self._start_lock = asyncio.Lock()

    def __repr__(self) -> str:  # where it is, never the password
        return f"{type(self).__name__}({self._where!r}, schema={self.schema!r})"

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> AsyncPostgresStore:
        """``postgresql://user:password@host:port/dbname?schema=app&sslmode=require``.

        tether's options: ``schema`` (default ``public``), ``pool_min_size`` (1),
        ``pool_max_size`` (10), ``pool_timeout`` (seconds, 5). Every other option is a libpq
        connection parameter and is passed on; anything else raises ConfigurationError.
        """
        conninfo, options = _options.parse_url(url)
        return cls(conninfo, clock=clock, **options)

    # --- plumbing ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool and create or migrate the tables now instead of on first use."""
        await self._start()

    async def _start(self) -> None:
        async with self._start_lock:
            if self._ready:
                return
            if self._closed:
                raise StoreError("this PostgreSQL store is closed; open a new one")
            # The first connection is made here, not by the pool: a URL the server refuses (no
            # such database, a wrong password) is one ConfigurationError at once, instead of
            # the pool retrying in the background, logging each attempt, until pool_timeout.
            try:
                conn = await AsyncConnection.connect(self._conninfo, **self._kwargs)
            except psycopg.Error as exc:
                raise _connection.connect_error(exc, self._where, self._conninfo) from exc
            try:
                await self._migrate(conn)
            except psycopg.Error as exc:
                raise _connection.driver_error(exc, self._where, "open") from exc
            finally:
                await conn.close()
            await self._pool.open(wait=False)
            self._ready = True

    async def _getconn(self) -> AsyncConnection[TupleRow]:
        conn = await self._pool.getconn()
        if _connection.idle_connection_alive(conn.pgconn):  # no round trip
            return conn
        # The server closed this idle connection (restart, failover, crash), so the others
        # in the pool are likely dead too: drop them all now, and this call and the next ones
        # get fresh connections instead of failing one stale socket at a time.
        await conn.close()
        await self._pool.putconn(conn)
        await self._pool.check()
        return await self._pool.getconn()

    @asynccontextmanager
    async def _connect(self, what: str) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A pooled connection; driver and pool errors become tether errors."""
        try:
            conn = await self._getconn()
            try:
                yield conn
            finally:
                await self._pool.putconn(conn)
        except PoolTimeout as exc:
            raise _connection.pool_timeout_error(self._where, self._timeout) from exc
        except PoolClosed as exc:
            raise StoreError("this PostgreSQL store is closed; open a new one") from exc
        except psycopg.Error as exc:
            raise _connection.driver_error(exc, self._where, what) from exc

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[AsyncConnection[TupleRow]]:
        if not self._ready:
            await self._start()
        async with self._connect(what) as conn:
            yield conn

    async def _migrate(self, conn: AsyncConnection[TupleRow]) -> None:
        await migrate(conn, self._sql, self.schema, self._where)

    def _now(self) -> datetime | None:
        """The injected clock's time, or None: the statement then uses the server's now()."""
        if self._clock is None:
            return None
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigurationError("the store's clock must return timezone-aware datetimes")
        return now

    async def _fetch(self, what: str, query: bytes, params: Mapping[str, Any]) -> Row | None:
        async with self._connection(what) as conn:
            return await one(conn, query, params)

    async def _snapshot(
        self, conn: AsyncConnection[TupleRow], session_id: str, now: datetime | None, lock: bool
    ) -> _rows.Found:
        query = self._sql.snapshot_for_update if lock else self._sql.snapshot
        row = await one(conn, query, {"id": session_id, "now": now})
        return _rows.decode_found(session_id, row)

    async def _guarded(
        self,
        what: str,
        query: bytes,
        params: Mapping[str, Any],
        judge: Callable[[_rows.Found], None],
        *,
        upgrade: bool = False,
        upgrade_items: bool = False,
        purge: bool = False,
        detach_above: int | None = None,
    ) -> Row:
        """Run a guarded statement; when it matches nothing, find out why and raise that.

        The success path is the one statement. On failure, ``judge`` reads the session as it
        is and raises the error that explains the miss. If nothing does (the session changed
        in between, or an older tether stored it), the statement runs again in a transaction
        that holds the session's row lock, after upgrading it (``upgrade``; its items too with
        ``upgrade_items``), giving the forks that read its rows above ``detach_above`` their
        own copies (a statement that rewrites them refuses while a fork reads them), or
        removing an expired one (``purge``).
        """
        row = await self._fetch(what, query, params)
        if row is not None:
            return row
        session_id = params["id"]
        async with self._connection(what) as conn:
            judge(await self._snapshot(conn, session_id, params["now"], lock=False))
            async with conn.transaction():
                found = await self._snapshot(conn, session_id, params["now"], lock=True)
                judge(found)
                if found is not None and upgrade and _core.needs_upgrade(found[0]):
                    await write_back_upgraded(conn, self._sql, found[0], upgrade_items)
                if found is not None and detach_above is not None:
                    await self._detach(conn, session_id, detach_above)
                if found is not None and purge:
                    await self._purge_locked(conn, session_id)
                row = await one(conn, query, params)
        if row is None:
            raise StoreError(f"PostgreSQL {what} of {session_id!r} matched no row under lock")
        return row

    async def _detach(self, conn: AsyncConnection[TupleRow], session_id: str, above: int) -> None:
        """Give the forks that read ``session_id``'s rows above seq ``above`` copies of their
        own, and lower its ``shared_hi`` to ``above``. The caller holds its row lock (no new
        fork can start); the forks' rows are locked first, in a statement of their own, so the
        copy reads them as they are now (see "Forks share rows" in ``_sql.py``)."""
        params = {"id": session_id, "above": above}
        await conn.execute(self._sql.lock_dependents, params)
        await conn.execute(self._sql.detach, params)

    async def _purge_locked(self, conn: AsyncConnection[TupleRow], session_id: str) -> None:
        """Delete a session whose row lock the caller holds, its forks detached first."""
        await self._detach(conn, session_id, 0)
        await conn.execute(self._sql.purge_one, {"id": session_id})

    # --- the contract --------------------------------------------------------------------------

    async def _create(self, session: Session) -> Session:
        doc = _core.new_session_doc(session, 0)  # checks; the times come from the statement
        for name in ("owner", "agent"):
            _rows.check_text(name, doc[name], InvalidSessionData)
        texts, stamps, keys = _rows.encode_new_items(session.history)
        if any(key is not None for key in keys):
            raise InvalidSessionData(
                "create stores plain items; append keyed items (KeyedItem) with commit or append"
            )
        session_id = doc["id"]
        params = {
            "id": session_id,
            "now": self._now(),
            **{name: doc[name] for name in ("owner", "agent", "status", "parent_id", "fork_seq")},
            **{name: _rows.json_text(doc[name], name) for name in _core.JSON_FIELDS},
            "schema": schema.current,
            "expires_at": _rows.as_time(doc["expires_at"]),
            "n": len(texts),
            "items": texts,
            "stamps": stamps,
            "item_keys": keys,
            **_rows.metadata_rows(doc["metadata"]),
        }
        row = await self._guarded(
            "create",
            self._sql.create,
            params,
            lambda found: _rows.judge_create(session_id, found),
            purge=True,
        )
        now, iso = int(row[0]), str(row[1])
        doc.update(created_at=now, updated_at=now, last_seq=len(texts), history_len=len(texts))
        return _core.make_session(doc, _rows.stored_items(texts, stamps, 1, iso))

    async def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        params = {
            "id": session_id,
            "now": self._now(),
            "last": last,
            "after": after,
            "limit": limit,
            "schema": schema.current,
        }
        async with self._connection("load") as conn:
            rows = await all_rows(conn, self._sql.load, params)
        if not rows:
            raise SessionNotFound(session_id)
        doc = _rows.decode_header(session_id, rows[0][1])
        history = _core.decode_items(session_id, [row[1] for row in rows[1:]])
        return _core.readable_session(doc, history)

    async def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        _, row = await self._commit_items(session_id, expected_version, items, changes, lease)
        return int(row[0])

    async def _commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> _core.CommitStamp:
        """See the contract: the same one statement, whose row says what it stamped."""
        params, row = await self._commit_items(session_id, expected_version, items, changes, lease)
        return _rows.commit_stamp(params, row)

    async def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        """See the contract: the commit statement with no version to compare (NULL)."""
        _, row = await self._commit_items(session_id, None, items, {}, lease)
        return int(row[0])

    async def _commit_items(
        self,
        session_id: str,
        expected_version: int | None,
        items: CheckedItems,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> tuple[dict[str, Any], Row]:
        """The commit statement (see COMMIT): its parameters and the row it returned."""
        for name in ("owner", "agent"):
            _rows.check_text(name, changes.get(name), InvalidRequest)
        params = _rows.write_params(session_id, expected_version, lease, items, self._now())
        params.update(_rows.changes_params(changes))
        try:
            row = await self._commit_row(session_id, expected_version, lease, params)
        except StoreError as exc:
            if not _rows.cannot_merge_block(params, exc):
                raise
            # PostgreSQL's json operators decode the stored state's strings, and one holding
            # "\u0000" cannot be decoded: that state keeps its block the slow way. Read it,
            # merge here, and write with the version check (a write in between conflicts).
            stored = await self._load(session_id, last=0, after=None, limit=None)
            merged = _core.keep_runtime_block(changes, stored.state)
            params.update(state=_rows.json_text(merged["state"], "state"), keep_block=False)
            row = await self._commit_row(session_id, expected_version, lease, params)
        return params, row

    async def _commit_row(
        self,
        session_id: str,
        expected_version: int | None,
        lease: Lease | None,
        params: dict[str, Any],
    ) -> Row:
        return await self._keyed_write(
            "commit",
            self._sql.commit,
            params,
            lambda found: _rows.judge_write(session_id, found, expected_version, lease),
            upgrade_items=True,  # replace_history skips this: it drops the old items anyway
        )

    async def _keyed_write(
        self,
        what: str,
        query: bytes,
        params: dict[str, Any],
        judge: Callable[[_rows.Found], None],
        *,
        upgrade_items: bool = False,
        detach_above: int | None = None,
    ) -> Row:
        """A guarded write (see ``_guarded``) whose new items may carry keys: a key the
        session holds fails the statement on tether_item_keys' primary key (nothing written),
        and becomes DuplicateItemKey naming it."""
        try:
            return await self._guarded(
                what,
                query,
                params,
                judge,
                upgrade=True,
                upgrade_items=upgrade_items,
                detach_above=detach_above,
            )
        except StoreError as exc:
            if not _rows.is_duplicate_key(exc):
                raise
        keys = [key for key in params["item_keys"] if key is not None]
        taken = await self._items_by_key(params["id"], keys)
        raise DuplicateItemKey(params["id"], next(iter(taken), keys[0])) from None

    async def _replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """See the contract: one statement touching only the suffix (see TAIL)."""
        for name in ("owner", "agent"):
            _rows.check_text(name, changes.get(name), InvalidRequest)
        params = _rows.write_params(session_id, expected_version, lease, items, self._now())
        params.update(_rows.changes_params(changes), after=after)
        row = await self._keyed_write(
            "replace_tail",
            self._sql.tail,
            params,
            lambda found: _rows.judge_tail(session_id, found, expected_version, lease, after),
            detach_above=after,
        )
        return int(row[0])

    async def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        """See the contract: primary-key lookups only, whatever the history's length."""
        row = await self._fetch(
            "items_by_key",
            self._sql.items_by_key,
            {"id": session_id, "keys": keys, "now": self._now()},
        )
        if row is None:
            raise SessionNotFound(session_id)
        schema.check(session_id, int(row[0]))
        return _core.keyed_items(session_id, row[1])

    async def _replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        for name in ("owner", "agent"):
            _rows.check_text(name, changes.get(name), InvalidRequest)
        params = _rows.write_params(session_id, expected_version, lease, items, self._now())
        params.update(_rows.changes_params(changes))
        row = await self._keyed_write(
            "replace_history",
            self._sql.replace,
            params,
            lambda found: _rows.judge_write(session_id, found, expected_version, lease),
            detach_above=0,
        )
        return int(row[0])

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract.

        Its versions, timestamps, seqs and lease fence are kept, and it is unclaimed. One
        transaction on one connection: the stored row (if any) is locked, judged and removed,
        then the session is inserted in one statement. With ``expected_version``, only over
        that version of the stored session (else ConflictError).
        """
        _core.check_restore_args(replace, expected_version)
        doc, encoded = _core.restore_doc(session)  # raises before any I/O
        params = _rows.restore_params(doc, encoded)
        session_id = doc["id"]
        now = self._now()
        async with self._connection("restore") as conn:
            for _ in range(3):
                async with conn.transaction():
                    found = await self._snapshot(conn, session_id, now, lock=True)
                    if _rows.judge_restore(session_id, found, replace, expected_version):
                        await self._purge_locked(conn, session_id)
                    row = await one(conn, self._sql.restore, params)
                    if row is not None and row[0]:
                        return
                # a concurrent create inserted the row after the snapshot: judge it afresh
        raise StoreError(f"PostgreSQL restore of {session_id!r} kept racing concurrent writes")

    async def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, without copying them.

        An optional ability the runtime's ``fork`` uses. One statement (``_sql.FORK``): the
        child's row records that its seqs up to ``at`` are its parent's rows (see "Forks share
        rows" in ``_sql.py``), so the fork costs the same at 10 items as at 10,000; the keys
        of the parent's keyed items up to ``at`` become the child's own. Later writes to
        either side stay invisible to the other; deleting, purging or rewriting the parent
        first gives its forks copies of what they read. A compacted parent (its seqs no
        longer start at 1: the child's are renumbered) or a chain of forks
        ``_sql.MAX_DEPTH`` deep is copied instead. ``child.history`` is ignored;
        ``child.parent_id`` names the parent.
        """
        if child.parent_id is None:
            raise InvalidRequest("fork_session needs child.parent_id")
        parent_id = child.parent_id
        doc = _core.new_session_doc(child, 0)  # checks; the times come from the statement
        for name in ("owner", "agent"):
            _rows.check_text(name, doc[name], InvalidSessionData)
        child_id = doc["id"]
        now = self._now()
        params = {
            "id": child_id,
            "parent_id": parent_id,
            "at": at,
            "now": now,
            **{name: doc[name] for name in ("owner", "agent", "status")},
            **{name: _rows.json_text(doc[name], name) for name in _core.JSON_FIELDS},
            "schema": schema.current,
            "expires_at": _rows.as_time(doc["expires_at"]),
            **_rows.metadata_rows(doc["metadata"]),
        }
        row = await self._fetch("fork", self._sql.fork, params)
        if row is None:
            async with self._connection("fork") as conn:
                parent = await self._snapshot(conn, parent_id, now, lock=False)
                depth = await one(conn, self._sql.shareable, {"id": parent_id})
                too_deep = depth is not None and not depth[0]
                if not _rows.judge_fork(parent_id, parent, at) or too_deep:
                    return await self._fork_by_copy(child, at)
                _rows.judge_create(child_id, await self._snapshot(conn, child_id, now, False))
                # changed in between, or an expired child in the way: again, under the locks
                async with conn.transaction():
                    parent = await self._snapshot(conn, parent_id, now, lock=True)
                    if not _rows.judge_fork(parent_id, parent, at):
                        raise StoreError(f"PostgreSQL fork of {parent_id!r} kept racing writes")
                    found = await self._snapshot(conn, child_id, now, lock=True)
                    _rows.judge_create(child_id, found)
                    if found is not None:
                        await self._purge_locked(conn, child_id)
                    row = await one(conn, self._sql.fork, params)
            if row is None:
                raise StoreError(f"PostgreSQL fork of {parent_id!r} matched no row under lock")
        created = int(row[0])
        doc.update(
            parent_id=parent_id,
            fork_seq=at,
            created_at=created,
            updated_at=created,
            last_seq=at,
            history_len=at,
        )
        return _core.doc_to_header(doc)

    async def _fork_by_copy(self, child: Session, at: int) -> SessionHeader:
        """A fork that copies: the parent's items up to ``at``, numbered from 1 in the child
        (keys, commit timestamps and item objects kept), written by ``restore``."""
        parent_id = str(child.parent_id)
        parent = await self._load(parent_id, last=None, after=None, limit=None)
        count = _core.items_kept(_core.header_to_doc(parent), at, "fork")
        items = [
            StoredItem(seq=seq, timestamp=item.timestamp, key=item.key, item=item.item)
            for seq, item in enumerate(parent.items[:count], 1)
        ]
        stamp = datetime.now(timezone.utc) if self._clock is None else self._clock()
        made = child.model_copy(
            update={
                "parent_id": parent_id,
                "fork_seq": at,
                "version": 1,
                "created_at": stamp,
                "updated_at": stamp,
                "last_seq": count,
                "history_len": count,
                "history": [
                    {**item.item, "seq": item.seq, "timestamp": item.timestamp} for item in items
                ],
            }
        )
        made._items = items
        await self.restore(made)
        return made.header

    async def _list_page(self, query: _core.ListQuery) -> Page:
        statement, params = _sql.list_statement(self._sql, query, self._now())
        async with self._connection("list") as conn:
            rows = await all_rows(conn, statement, params)
        headers = []
        for (text,) in rows[: query.limit]:
            try:
                doc = _rows.decode_header("(listed)", text)
                headers.append(_core.listed_header(doc))
            except TetherError as exc:  # one bad row must not hide the others
                log.warning("skipping a session in a listing: %s", exc)
        if len(rows) <= query.limit:
            return Page(sessions=headers, next_cursor=None)
        # the cursor is the last row of this page, even if that row could not be shown
        tail = _rows.cursor_fields(rows[query.limit - 1][0])
        return Page(sessions=headers, next_cursor=_core.encode_cursor(*tail))

    async def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        now = self._now()
        params = {
            "id": session_id,
            "now": now,
            "version": expected_version,
            "schema": schema.current,
            "token": None if lease is None else lease.token,
            "force": force,
        }
        row = await self._fetch("delete", self._sql.delete, params)
        if row is not None and row[0]:
            return True
        # Nothing deleted: the session is missing, expired, claimed, at another version,
        # newer, or some fork reads its rows (they are detached under the row lock below).
        async with self._connection("delete") as conn:
            found = await self._snapshot(conn, session_id, now, lock=False)
            if found is not None:
                _rows.judge_delete(session_id, found, expected_version, lease, force)
                # expired (clean it up), or changed since the DELETE: decide under the row lock
                async with conn.transaction():
                    found = await self._snapshot(conn, session_id, now, lock=True)
                    if found is not None:
                        _rows.judge_delete(session_id, found, expected_version, lease, force)
                        await self._purge_locked(conn, session_id)
                        if _core.is_live(*found):
                            return True
        if expected_version is not None:
            raise SessionNotFound(session_id)
        return False

    async def _exists(self, session_id: str) -> bool:
        row = await self._fetch("exists", self._sql.exists, {"id": session_id, "now": self._now()})
        return bool(row is not None and row[0])

    async def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        _rows.check_text("owner", owner, InvalidRequest)
        token = secrets.token_hex(16)
        params = {
            "id": session_id,
            "now": self._now(),
            "owner": owner,
            "new_token": token,
            "ttl": ttl,
            "schema": schema.current,
        }
        row = await self._guarded(
            "claim",
            self._sql.claim,
            params,
            lambda found: _rows.judge_claim(session_id, found, owner),
        )
        return Lease(
            session_id=session_id,
            owner=owner,
            token=token,
            fence=int(row[0]),
            expires_at=from_micros(int(row[1])),
        )

    async def _lease_write(self, what: str, query: bytes, lease: Lease, ttl_us: int = 0) -> Row:
        params = {"id": lease.session_id, "now": self._now(), "token": lease.token, "ttl": ttl_us}
        return await self._guarded(
            what, query, params, lambda found: _rows.judge_lease(lease, found)
        )

    async def _renew(self, lease: Lease, ttl: int) -> Lease:
        row = await self._lease_write("renew", self._sql.renew, lease, ttl)
        return lease.model_copy(update={"expires_at": from_micros(int(row[2]))})

    async def _release(self, lease: Lease) -> None:
        await self._lease_write("release", self._sql.release, lease)

    async def purge_expired(self) -> int:
        """Delete the sessions whose ``expires_at`` has passed; returns how many.

        Expired sessions already behave as missing; this reclaims their rows (the partial
        index on ``expires_at`` finds them without a scan). Run it now and then.
        """
        now = self._now()
        params = {"now": now, "schema": schema.current}
        row = await self._fetch("purge_expired", self._sql.purge_expired, params)
        purged = int(row[0]) if row is not None else 0
        # What the statement left: sessions some fork reads, each purged under its row lock
        # once its forks have their own copies.
        async with self._connection("purge_expired") as conn:
            for (session_id,) in await all_rows(conn, self._sql.expired_left, params):
                async with conn.transaction():
                    found = await self._snapshot(conn, session_id, now, lock=True)
                    if found is None or _core.is_live(*found):
                        continue
                    if int(found[0]["schema_version"]) > schema.current:
                        continue
                    await self._purge_locked(conn, session_id)
                    purged += 1
        return purged

    async def close(self) -> None:
        self._closed = True
        self._ready = False
        await self._pool.close()
