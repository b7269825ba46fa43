"""The PostgreSQL store's optional abilities that make a session out of other rows:
``fork_session`` (the parent's rows shared, see ``_sql_shares``; copied when they cannot be)
and ``restore`` (a session written exactly as given; the copying fork writes through it).

The async side is written by hand; _forks_sync.py is generated from it by tools/unasync.py.
"""

from __future__ import annotations

from ... import _core, _json
from ...errors import InvalidRequest, InvalidSessionData, StoreError
from ...models import Session, SessionHeader
from ...schema import schema
from . import _rows
from ._base_async import _AsyncPostgresBase
from ._conn_async import one, purge_locked


class _AsyncPostgresForks(_AsyncPostgresBase):
    """fork_session and restore of :class:`~tether.stores.postgres.AsyncPostgresStore`."""

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (for copying between stores); see the contract.

        Its versions, timestamps, seqs and lease fence are kept, and it is unclaimed. One
        transaction on one connection: the stored row (if any) is locked, judged and removed,
        then the session is inserted in one statement. With ``expected_version``, only over
        that version of the stored session (else ConflictError).
        """
        doc, encoded = _core.checked_restore(session, replace, expected_version)  # before any I/O
        params = _rows.restore_params(doc, encoded)
        session_id = doc["id"]
        now = self._now()
        async with self._connection("restore") as conn:
            for _ in range(3):
                async with conn.transaction():
                    found = await self._snapshot(conn, session_id, now, lock=True)
                    if _rows.judge_restore(session_id, found, replace, expected_version):
                        await purge_locked(conn, self._sql, session_id)
                    row = await one(conn, self._sql.restore, params)
                    if row is not None and row[0]:
                        return
                # a concurrent create inserted the row after the snapshot: judge it afresh
        raise StoreError(f"PostgreSQL restore of {session_id!r} kept racing concurrent writes")

    async def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, without copying them.

        An optional ability the runtime's ``fork`` uses. One statement
        (``_sql_shares.FORK``): the child's row records that its seqs up to ``at`` are its
        parent's rows (see "Forks share rows" in ``_sql_shares.py``), so the fork costs the
        same at 10 items as at 10,000; the keys of the parent's keyed items up to ``at``
        become the child's own. Later writes to either side stay invisible to the other;
        deleting, purging or rewriting the parent first gives its forks copies of what they
        read. A compacted parent (its seqs no longer start at 1: the child's are renumbered)
        or a chain of forks ``_sql_shares.MAX_DEPTH`` deep is copied instead.
        ``child.history`` is ignored; ``child.parent_id`` names the parent.
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
            **{name: _json.dumps_text(doc[name], what=name) for name in _core.JSON_FIELDS},
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
                    return await self._fork_by_copy(child, at, self._clock)
                _rows.judge_create(child_id, await self._snapshot(conn, child_id, now, False))
                # changed in between, or an expired child in the way: again, under the locks
                async with conn.transaction():
                    parent = await self._snapshot(conn, parent_id, now, lock=True)
                    if not _rows.judge_fork(parent_id, parent, at):
                        raise StoreError(f"PostgreSQL fork of {parent_id!r} kept racing writes")
                    found = await self._snapshot(conn, child_id, now, lock=True)
                    _rows.judge_create(child_id, found)
                    if found is not None:
                        await purge_locked(conn, self._sql, child_id)
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
