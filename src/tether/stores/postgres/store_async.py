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

This module holds the contract's methods; the class builds on ``_forks_async``
(``fork_session``, ``restore``), which builds on ``_base_async`` (the pool, the connections,
the guarded statement and its slow path).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ... import _core, _json
from ..._time import Clock, from_micros
from ...errors import (
    InvalidRequest,
    InvalidSessionData,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ...models import Lease, Page, Session, StoredItem
from ...schema import schema
from .._adding_async import _AsyncAddingStore
from .._writes import Write
from ..base import CheckedKeys
from . import _options, _rows, _sql
from ._conn_async import all_rows, purge_locked
from ._forks_async import _AsyncPostgresForks

__all__ = ["AsyncPostgresStore"]

log = logging.getLogger("tether.stores.postgres")

Row = tuple[Any, ...]


class AsyncPostgresStore(_AsyncAddingStore, _AsyncPostgresForks):
    """Sessions in PostgreSQL (psycopg 3 and a connection pool).

    ``conninfo`` is a libpq URL or ``key=value`` string; tether's own options are keyword
    arguments here and URL options in :meth:`from_url`. The pool opens on first use (or on
    :meth:`open`), when the store's tables are created or migrated; :meth:`close` closes it.
    """

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> AsyncPostgresStore:
        """``postgresql://user:password@host:port/dbname?schema=app&sslmode=require``.

        tether's options: ``schema`` (default ``public``), ``pool_min_size`` (1),
        ``pool_max_size`` (10), ``pool_timeout`` (seconds, 5). Every other option is a libpq
        connection parameter and is passed on; anything else raises ConfigurationError.
        """
        conninfo, options = _options.parse_url(url)
        return cls(conninfo, clock=clock, **options)

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
            **{name: _json.dumps_text(doc[name], what=name) for name in _core.JSON_FIELDS},
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

    async def _add(self, write: Write) -> _rows.CommitRow:
        """See the contract: the commit statement (see COMMIT, or APPEND when the header does
        not change, APPEND_PLAIN when no new item has a key either; with no version to compare,
        NULL, for a blind append), whose row says what it stamped."""
        if write.changes:
            params = _rows.header_write_params(
                write.session_id,
                write.expected_version,
                write.lease,
                write.items,
                changes=write.changes,
                now=self._now(),
            )
        else:  # the statement without header changes takes none of their parameters
            params = _rows.write_params(
                write.session_id, write.expected_version, write.lease, write.items, self._now()
            )
        try:
            row = await self._commit_row(write, params)
        except StoreError as exc:
            if not _rows.cannot_merge_block(params, exc):
                raise
            # PostgreSQL's json operators decode the stored state's strings, and one holding
            # "\u0000" cannot be decoded: that state keeps its block the slow way. Read it,
            # merge here, and write with the version check (a write in between conflicts).
            stored = await self._load(write.session_id, last=0, after=None, limit=None)
            merged = _core.keep_runtime_block(write.changes, stored.state)
            params.update(state=_json.dumps_text(merged["state"], what="state"), keep_block=False)
            row = await self._commit_row(write, params)
        return _rows.CommitRow(params, row)

    async def _commit_row(self, write: Write, params: dict[str, Any]) -> Row:
        if write.changes:
            query = self._sql.commit
        elif any(key is not None for key in params["item_keys"]):
            query = self._sql.append
        else:  # no key to insert: the statement without the item-key CTE
            query = self._sql.append_plain
        return await self._keyed_write(
            "commit",
            query,
            params,
            lambda found: _rows.judge_write(
                write.session_id, found, write.expected_version, write.lease
            ),
            upgrade_items=True,  # replace_history skips this: it drops the old items anyway
        )

    async def _replace_after(self, write: Write, after: int) -> int:
        """See the contract: one statement touching only the suffix (see TAIL)."""
        session_id, expected_version, items, changes, lease = write
        params = _rows.header_write_params(
            session_id, expected_version, lease, items, changes=changes, now=self._now()
        )
        params["after"] = after
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

    async def _replace_all(self, write: Write) -> int:
        session_id, expected_version, items, changes, lease = write
        params = _rows.header_write_params(
            session_id, expected_version, lease, items, changes=changes, now=self._now()
        )
        row = await self._keyed_write(
            "replace_history",
            self._sql.replace,
            params,
            lambda found: _rows.judge_write(session_id, found, expected_version, lease),
            detach_above=0,
        )
        return int(row[0])

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
                        await purge_locked(conn, self._sql, session_id)
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
        return _core.granted_lease(session_id, owner, token, row[0], row[1])

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
                    await purge_locked(conn, self._sql, session_id)
                    purged += 1
        return purged
