"""The SQLite store's ``list`` statement: which index serves each filter, and the page.

Every listing is ordered by ``(updated_at, id)`` descending and reads one page, whatever the
number of sessions. Each filter has an index that yields that order: owner, agent (partial
indexes with ``updated_at``), metadata (``(key, value)``, then a sort of that key's matches)
and status (``(status, updated_at, id, expires_at)``, database migration 8).

There is no index on ``updated_at`` alone. Every commit moves a session's entry in each index
holding ``updated_at``, one B-tree page written per index, and the status index already gives
that order within a status (SQLite merges the statuses of an ``IN`` list in that order). A
listing with no filter at all reads the newest page of each of the eight statuses
(:data:`tether._core.STATUSES`) from the status index, which also holds ``expires_at`` so no
session row is read before the page is chosen, and merges them. Those eight reads cost more
than one read of an ``updated_at`` index would (about 1.3x for a page of 50 among 20,000
sessions); in exchange every commit writes one B-tree fewer (about 3.7 WAL pages a chat turn
instead of 4.7).

Only fixed SQL fragments are joined; every value is a bound parameter.
"""

from __future__ import annotations

from typing import Any

from .. import _core
from ._sqlite_sql import HEADER_COLUMNS

_COLUMNS = ", ".join(f"s.{c}" for c in HEADER_COLUMNS)
_ORDER = "ORDER BY s.updated_at DESC, s.id DESC"


def _bounds(query: _core.ListQuery, now: int) -> tuple[list[str], list[Any]]:
    """The conditions every listed session meets whatever the index: live, and inside the
    ``updated_at`` bounds and after the cursor. Columns of the status index alone."""
    where = ["(s.expires_at IS NULL OR s.expires_at > ?)"]
    params: list[Any] = [now]
    if query.updated_after is not None:
        where.append("s.updated_at > ?")
        params.append(query.updated_after)
    if query.updated_before is not None:
        where.append("s.updated_at < ?")
        params.append(query.updated_before)
    if query.cursor is not None:
        where.append("(s.updated_at < ? OR (s.updated_at = ? AND s.id < ?))")
        params.extend((query.cursor[0], query.cursor[0], query.cursor[1]))
    return where, params


def list_statement(query: _core.ListQuery, now: int) -> tuple[str, list[Any]]:
    """The SELECT of one page of ``query`` (``limit + 1`` headers: the extra one says a next
    page exists), and its parameters."""
    where, params = _bounds(query, now)
    if (
        query.owner is None
        and query.agent is None
        and query.statuses is None
        and not query.metadata
    ):
        return _every_status(query, where, params)
    for column, value in (("owner", query.owner), ("agent", query.agent)):
        if value is not None:
            where.append(f"s.{column} = ?")
            params.append(value)
    if query.statuses is not None:
        where.append(f"s.status IN ({', '.join('?' for _ in query.statuses)})")
        params.extend(sorted(query.statuses))
    for key, value in query.metadata:
        # IN (subquery), not a correlated EXISTS: SQLite then drives it from the
        # (key, value) index instead of probing every session.
        where.append(
            "s.id IN (SELECT session_id FROM tether_session_meta WHERE key = ? AND value = ?)"
        )
        params.extend((key, value))
    sql = f"SELECT {_COLUMNS} FROM tether_sessions s WHERE {' AND '.join(where)} {_ORDER} LIMIT ?"
    params.append(query.limit + 1)
    return sql, params


def _every_status(
    query: _core.ListQuery, where: list[str], bounds: list[Any]
) -> tuple[str, list[Any]]:
    """A page of sessions of any status, from the newest ``limit + 1`` index entries of each
    status: each part reads the status index alone (it is covering), the merge keeps the
    newest ``limit + 1`` of all, and only their rows are read."""
    statuses = sorted(_core.STATUSES)
    condition = " AND ".join(["s.status = ?", *where])
    part = (
        "SELECT * FROM (SELECT s.updated_at AS updated_at, s.id AS id FROM tether_sessions s "
        f"WHERE {condition} {_ORDER} LIMIT ?)"
    )
    params: list[Any] = []
    for status in statuses:
        params += [status, *bounds, query.limit + 1]
    newest = (
        f"SELECT id FROM ({' UNION ALL '.join(part for _ in statuses)}) "
        "ORDER BY updated_at DESC, id DESC LIMIT ?"
    )
    params.append(query.limit + 1)
    sql = f"SELECT {_COLUMNS} FROM tether_sessions s WHERE s.id IN ({newest}) {_ORDER}"
    return sql, params
