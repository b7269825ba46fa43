"""The PostgreSQL store's reads (SQL text, no I/O): a session and its window (``LOAD``),
items by key, existence, the header snapshot a failed write is judged by, and listings.

Every read of items follows the chain of shares of a fork (see "Forks share rows" in
``_sql_shares``): a seq is read at the one level of the chain that holds it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import _core, _json
from ..._time import from_micros
from ._rows import kv_hash
from ._sql_parts import LIVE, NOW, header_json, micros
from ._sql_shares import MAX_DEPTH

if TYPE_CHECKING:  # _sql renders these statements, and imports this module to do so
    from ._sql import Statements

# The header and the window in one statement (one snapshot, one round trip): the header row
# first (seq NULL), then one row per item. The window is a seq range: seqs are contiguous, so
# a page (``limit``: the oldest items of the window) is the range (floor, floor + limit], one
# bounded index range scan. GREATEST and LEAST ignore NULLs: a NULL ``last``, ``after`` or
# ``limit`` bounds nothing.
LOAD = f"""
WITH RECURSIVE t AS (SELECT {NOW} AS now),
f AS (
    SELECT s.*, GREATEST(s.last_seq - s.history_len, %(after)s::bigint,
                         s.last_seq - %(last)s::bigint) AS floor
    FROM {{schema}}.tether_sessions AS s, t
    WHERE s.id = %(id)s::text AND {LIVE}
),
h AS (SELECT f.*, LEAST(f.last_seq, f.floor + %(limit)s::bigint) AS ceiling FROM f),
r(src, lo, hi, from_id, from_hi, depth) AS (
    SELECT h.id, h.floor, h.ceiling, h.items_from, h.items_from_hi, 0 FROM h
    WHERE h.schema_version <= %(schema)s::integer AND h.ceiling > h.floor
    UNION ALL
    SELECT s.id, r.lo, LEAST(r.hi, r.from_hi), s.items_from, s.items_from_hi, r.depth + 1
    FROM r JOIN {{schema}}.tether_sessions AS s ON s.id = r.from_id
    WHERE r.from_hi > r.lo AND r.depth < {MAX_DEPTH * 2}
)
SELECT NULL::bigint AS seq, {header_json("h")} AS data FROM h
UNION ALL
SELECT i.seq, i.data FROM r CROSS JOIN LATERAL (
    -- one bounded index range scan per level of the chain: a join on the recursive r may
    -- be planned as a scan of the whole table, and OFFSET 0 keeps this from being flattened
    -- into one
    SELECT i.seq, i.data::text AS data FROM {{schema}}.tether_items AS i
    WHERE i.session_id = r.src AND i.seq > r.lo AND i.seq <= r.hi
    OFFSET 0
) AS i
ORDER BY seq NULLS FIRST
"""


# items_by_key: the header's schema version (no row: missing or expired) and the keyed rows, by
# the (session_id, key) primary key and then the items' (session_id, seq) one, at the level of
# the share chain that holds the seq (a fork's keys are its own; its rows may be its parent's).
ITEMS_BY_KEY = f"""
WITH RECURSIVE t AS (SELECT {NOW} AS now),
s0 AS (
    SELECT s.id, s.schema_version FROM {{schema}}.tether_sessions AS s, t
    WHERE s.id = %(id)s::text AND {LIVE}
),
r(src, hi, depth) AS (
    SELECT s0.id, NULL::bigint, 0 FROM s0
    UNION ALL
    SELECT s.items_from, LEAST(r.hi, s.items_from_hi), r.depth + 1
    FROM r JOIN {{schema}}.tether_sessions AS s ON s.id = r.src
    WHERE s.items_from IS NOT NULL AND r.depth < {MAX_DEPTH * 2}
)
SELECT s0.schema_version, ARRAY(
    SELECT found.data::text FROM (
        SELECT k.seq, COALESCE(
            -- the session's own row: one primary-key probe (r is not even computed)
            (SELECT i.data FROM {{schema}}.tether_items AS i
             WHERE i.session_id = s0.id AND i.seq = k.seq),
            -- else a row it shares, at the nearest level of the chain that holds the seq
            (SELECT i.data FROM r JOIN {{schema}}.tether_items AS i
                ON i.session_id = r.src AND i.seq = k.seq
             WHERE r.depth > 0 AND k.seq <= r.hi ORDER BY r.depth LIMIT 1)
        ) AS data
        FROM {{schema}}.tether_item_keys AS k
        WHERE k.session_id = s0.id AND k.key = ANY(%(keys)b::text[])
        OFFSET 0  -- a fence: the filter below must not re-run the probes above
    ) AS found
    WHERE found.data IS NOT NULL
    ORDER BY found.seq)
FROM s0
"""


EXISTS = f"""
SELECT EXISTS (
    SELECT 1 FROM {{schema}}.tether_sessions AS s
    WHERE s.id = %(id)s::text AND (s.expires_at IS NULL OR s.expires_at > {NOW})
)
"""

_SNAPSHOT = f"""
WITH t AS (SELECT {NOW} AS now)
SELECT {header_json("s")}, s.lease_token, {micros("t.now")}
FROM {{schema}}.tether_sessions AS s, t WHERE s.id = %(id)s::text
"""
SNAPSHOT = _SNAPSHOT
SNAPSHOT_FOR_UPDATE = _SNAPSHOT + "FOR UPDATE OF s\n"


def list_statement(
    statements: Statements, query: _core.ListQuery, now: datetime | None
) -> tuple[bytes, dict[str, Any]]:
    """The listing statement for a checked query: fixed fragments joined, values bound.

    Every filter has an index whose order is the listing's, so a page reads ~limit rows: owner
    and agent use their partial (column, updated_at, id) indexes, a metadata filter probes
    (kv_hash, session_id) of the metadata table, one status (status, updated_at, id). There is
    no index on (updated_at, id) alone (migration 4): a commit rewrote an entry in it, and
    PostgreSQL writes one in every index of a row an update moves. Several statuses, or none,
    read the newest page of each status from the status index and merge them
    (:func:`_every_status`): ``status = ANY(...)`` would read every session of those statuses
    and sort them.
    """
    where = [f"(s.expires_at IS NULL OR s.expires_at > {NOW})"]
    params: dict[str, Any] = {"now": now, "limit": query.limit + 1}
    if query.updated_after is not None:
        where.append("s.updated_at > %(updated_after)s::timestamptz")
        params["updated_after"] = from_micros(query.updated_after)
    if query.updated_before is not None:
        where.append("s.updated_at < %(updated_before)s::timestamptz")
        params["updated_before"] = from_micros(query.updated_before)
    if query.cursor is not None:
        where.append("(s.updated_at, s.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::text)")
        params["cursor_at"] = from_micros(query.cursor[0])
        params["cursor_id"] = query.cursor[1]
    statuses = sorted(query.statuses if query.statuses is not None else _core.STATUSES)
    narrowed = query.owner is not None or query.agent is not None or bool(query.metadata)
    if not narrowed and len(statuses) > 1:
        return _every_status(statements, statuses, where, params)
    for column, value in (("owner", query.owner), ("agent", query.agent)):
        if value is not None:
            where.append(f"s.{column} = %({column})s::text")
            params[column] = value
    if query.statuses is not None:
        if len(statuses) == 1:  # equality keeps the (status, updated_at, id) order for LIMIT
            where.append("s.status = %(status)s::text")
            params["status"] = statuses[0]
        else:
            where.append("s.status = ANY(%(statuses)s::text[])")
            params["statuses"] = statuses
    for index, (key, value) in enumerate(query.metadata):
        key_json = _json.dumps_text(key, what="metadata filter key")
        where.append(
            f"s.id IN (SELECT m.session_id FROM {{schema}}.tether_session_meta AS m "
            f"WHERE m.kv_hash = %(h{index})s::bigint AND m.key = %(k{index})s::text "
            f"AND m.value = %(v{index})s::text)"
        )
        params.update({f"h{index}": kv_hash(key_json, value), f"k{index}": key_json})
        params[f"v{index}"] = value
    text = (
        f"SELECT {header_json('s')} FROM {{schema}}.tether_sessions AS s "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY s.updated_at DESC, s.id DESC LIMIT %(limit)s::integer"
    )
    return text.replace("{schema}", statements.quoted_schema).encode(), params


def _every_status(
    statements: Statements, statuses: list[str], where: list[str], params: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """A page over several statuses: the newest ``limit + 1`` sessions of each, read in the
    status index's order (each part a bounded index scan), merged, the newest ``limit + 1`` of
    all kept; only their headers are built."""
    parts = []
    for index, status in enumerate(statuses):
        condition = " AND ".join([f"s.status = %(st{index})s::text", *where])
        parts.append(
            f"(SELECT s.updated_at, s.id FROM {{schema}}.tether_sessions AS s WHERE {condition} "
            "ORDER BY s.updated_at DESC, s.id DESC LIMIT %(limit)s::integer)"
        )
        params[f"st{index}"] = status
    # the headers of the page's rows by primary key, one by one (LIMIT 1 keeps the lateral
    # subquery a per-row index lookup: joined flat, the planner may hash the whole table)
    text = (
        "SELECT h.header FROM ("
        f"SELECT t.updated_at, t.id FROM ({' UNION ALL '.join(parts)}) AS t "
        "ORDER BY t.updated_at DESC, t.id DESC LIMIT %(limit)s::integer) AS p, "
        f"LATERAL (SELECT {header_json('s')} AS header FROM {{schema}}.tether_sessions AS s "
        "WHERE s.id = p.id LIMIT 1) AS h "
        "ORDER BY p.updated_at DESC, p.id DESC"
    )
    return text.replace("{schema}", statements.quoted_schema).encode(), params
