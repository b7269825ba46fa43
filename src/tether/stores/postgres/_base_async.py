"""The PostgreSQL store's plumbing: its pool, its connections, and the guarded statement every
write runs (one statement; when it matches nothing, the reason read and raised, or the statement
run again under the session's row lock).

The async side is written by hand; _base_sync.py is generated from it by tools/unasync.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ... import _core
from ..._time import Clock
from ...errors import ConfigurationError, DuplicateItemKey, StoreError
from ..base import AsyncStore
from . import _connection, _options, _rows, _sql
from ._conn_async import configure, detach, migrate, one, purge_locked, write_back_upgraded

Row = tuple[Any, ...]

_KEEP_FOR = 60.0
"""Seconds the store keeps one pooled connection before handing it back to the pool at the
end of a call (and taking one again at the next): so the pool's own care of its connections
(``max_lifetime``, ``max_idle``, health checks) still reaches it."""


class _AsyncPostgresBase(AsyncStore):
    """The pool and the guarded statements of :class:`~tether.stores.postgres.AsyncPostgresStore`
    (its documented constructor)."""

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
        self._keep = pool_max_size >= 2
        """Whether calls reuse one connection taken from the pool (see :meth:`_take_kept`):
        not when the pool has one, which would leave none for a second caller."""
        self._kept: AsyncConnection[TupleRow] | None = None
        self._kept_since = 0.0
        self._kept_pid = os.getpid()
        self._kept_lock = threading.Lock()  # only ever tried, never waited for

    def __repr__(self) -> str:  # where it is, never the password
        return f"{type(self).__name__}({self._where!r}, schema={self.schema!r})"

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
        await self._discard_dead(conn)
        return await self._pool.getconn()

    async def _discard_dead(self, conn: AsyncConnection[TupleRow]) -> None:
        """Drop ``conn``, whose server closed it while it was idle (restart, failover, crash).
        The pool's other connections are likely dead too: they are checked now, so this call
        and the next ones get fresh connections instead of failing one stale socket at a time."""
        await conn.close()
        await self._pool.putconn(conn)
        await self._pool.check()

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """The connection the store keeps, when it is free, else a pooled one (the tables made
        or migrated first, on the first call); driver and pool errors become tether errors."""
        if not self._ready:
            await self._start()
        try:
            kept = await self._take_kept()
            if kept is not None:
                try:
                    yield kept
                finally:
                    await self._release_kept(kept)
                return
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

    async def _take_kept(self) -> AsyncConnection[TupleRow] | None:
        """The connection this store keeps out of its pool for its calls, or None when another
        call (a thread's, a task's) is using it: that call takes one from the pool.

        Taking a connection from psycopg_pool and giving it back costs about as much client
        CPU as sending a statement and reading its reply (docs/postgres.md), so the store keeps
        one. It is checked as the pool checks one (no round trip), handed back to the pool
        after any call that leaves it other than idle (the pool resets or discards it) and
        every ``_KEEP_FOR`` seconds. A forked child never uses its parent's."""
        if not self._keep or self._kept_pid != os.getpid():
            return None
        if not self._kept_lock.acquire(blocking=False):
            return None
        try:
            conn = self._kept
            if conn is not None and not _connection.idle_connection_alive(conn.pgconn):
                self._kept = None
                await self._discard_dead(conn)
            elif conn is not None and time.monotonic() - self._kept_since > _KEEP_FOR:
                self._kept = None
                await self._pool.putconn(conn)
            if self._kept is None:
                conn = self._kept = await self._getconn()
                self._kept_since = time.monotonic()
        except BaseException:
            self._kept_lock.release()
            raise
        return conn

    async def _release_kept(self, conn: AsyncConnection[TupleRow]) -> None:
        """After a call on the kept connection: keep it if the call left it idle, else give
        it back to the pool (which rolls back or discards it)."""
        try:
            if self._closed or conn.info.transaction_status != TransactionStatus.IDLE:
                self._kept = None
                await self._pool.putconn(conn)
        finally:
            self._kept_lock.release()

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
                    await detach(conn, self._sql, session_id, detach_above)
                if found is not None and purge:
                    await purge_locked(conn, self._sql, session_id)
                row = await one(conn, query, params)
        if row is None:
            raise StoreError(f"PostgreSQL {what} of {session_id!r} matched no row under lock")
        return row

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

    async def close(self) -> None:
        self._closed = True
        self._ready = False
        if self._kept_lock.acquire(blocking=False):  # else a call has it: it gives it back
            try:
                kept, self._kept = self._kept, None
                if kept is not None and self._kept_pid == os.getpid():
                    await self._pool.putconn(kept)
            finally:
                self._kept_lock.release()
        await self._pool.close()
