"""The statements of forks that share their parent's rows (SQL text, no I/O).

A fork's seqs up to ``items_from_hi`` are read from its parent (see "Forks share rows"
below); ``FORK`` starts one, ``SHAREABLE`` says whether a chain may grow, and
``LOCK_DEPENDENTS`` then ``DETACH`` give a session's forks copies of the rows it is about to
delete or rewrite. The write statements (``_sql``) refuse while a fork reads what they would
drop; the reads (``_sql_reads``) follow the chain.
"""

from __future__ import annotations

from ._sql_parts import LIVE, NEW_META, TIME_CTE, micros

# Forks share rows. A fork does not copy its parent's items: the child's row records that its
# seqs up to items_from_hi are the items of session items_from with the same seqs (the parent
# may itself read part of them from its own parent: a read follows the chain, items_depth
# long at most, each level an index range scan of the window's part there). A session's own
# rows start above items_from_hi, so a seq is found at exactly one level. Before a session's
# rows are deleted or rewritten, the forks that read them get copies (DETACH): the writes
# (``_sql``) match nothing while shared_hi (the highest seq a fork of this session
# may read) is above what they rewrite, and the store then detaches and retries under the
# row lock. A fork takes that lock too (it raises shared_hi), so no fork slips in between.
# The statements that drop a session's rows also refuse a row whose share changed since
# their snapshot (SAME_SHARE: a parent's detach gave it copies they would not see).
OLD_SHARE = (
    "(SELECT items_from_hi AS old_from_hi FROM {schema}.tether_sessions "
    "WHERE id = %(id)s::text) AS o"
)
SAME_SHARE = "s.items_from_hi IS NOT DISTINCT FROM o.old_from_hi"
MAX_DEPTH = 16
"""The longest chain of shares a fork starts (deeper, the fork copies the rows instead)."""


# fork_session: the child's row, reading its parent's rows up to %(at)s (see "Forks share
# rows"), its own copy of the parent's keys up to there, its metadata; the parent's shared_hi
# raised. Matches nothing (the store then finds out why, or copies) unless the parent is live,
# in this schema, uncompacted (its seqs start at 1, as the child's do), not too deep, at
# %(at)s within its history, and unchanged since the statement's snapshot (o.version: a
# write it waited for may have moved the keys it reads).
FORK = f"""
WITH {TIME_CTE},
p AS (
    UPDATE {{schema}}.tether_sessions AS s SET shared_hi = GREATEST(s.shared_hi, %(at)s::bigint)
    FROM t, (SELECT version AS old_version FROM {{schema}}.tether_sessions
             WHERE id = %(parent_id)s::text) AS o
    WHERE s.id = %(parent_id)s::text AND {LIVE} AND s.schema_version = %(schema)s::integer
      AND s.version = o.old_version AND s.history_len = s.last_seq
      AND %(at)s::bigint BETWEEN 0 AND s.last_seq AND s.items_depth < {MAX_DEPTH}
    RETURNING s.id, s.items_depth
),
ins AS (
    INSERT INTO {{schema}}.tether_sessions (
        id, owner, agent, status, metadata, state, options, parent_id, fork_seq, version,
        schema_version, created_at, updated_at, expires_at, last_seq, history_len,
        lease_owner, lease_token, lease_fence, lease_expires_at,
        items_from, items_from_hi, items_depth)
    SELECT %(id)s::text, %(owner)s::text, %(agent)s::text, %(status)s::text,
        %(metadata)s::json, %(state)s::json, %(options)s::json, p.id,
        %(at)s::bigint, 1, %(schema)s::integer, t.now, t.now,
        %(expires_at)s::timestamptz, %(at)s::bigint, %(at)s::bigint, NULL, NULL, 0, NULL,
        CASE WHEN %(at)s::bigint > 0 THEN p.id END,
        CASE WHEN %(at)s::bigint > 0 THEN %(at)s::bigint END,
        CASE WHEN %(at)s::bigint > 0 THEN p.items_depth + 1 ELSE 0 END
    FROM p, t
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, k.key, k.seq FROM ins, {{schema}}.tether_item_keys AS k
    WHERE k.session_id = %(parent_id)s::text AND k.seq <= %(at)s::bigint
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {NEW_META}
)
SELECT {micros("t.now")} FROM ins, t
"""

# Whether a fork of %(id)s may share its rows, by the length of its chain (see FORK).
SHAREABLE = f"""
SELECT items_depth < {MAX_DEPTH} FROM {{schema}}.tether_sessions WHERE id = %(id)s::text
"""

# Before %(id)s's rows above %(above)s are deleted or rewritten, under its row lock: lock the
# forks that read them (LOCK_DEPENDENTS, a statement of its own, so that DETACH's snapshot
# sees them as they are now), then give each its rows as its own (read through %(id)s's own
# share chain) and lower %(id)s's shared_hi to what is still shared.
LOCK_DEPENDENTS = """
SELECT id FROM {schema}.tether_sessions
WHERE items_from = %(id)s::text AND items_from_hi > %(above)s::bigint
ORDER BY id FOR UPDATE
"""
DETACH = f"""
WITH RECURSIVE d AS (
    SELECT id, items_from_hi AS hi FROM {{schema}}.tether_sessions
    WHERE items_from = %(id)s::text AND items_from_hi > %(above)s::bigint
),
r(src, hi, from_id, from_hi, depth) AS (
    SELECT s.id, (SELECT max(d.hi) FROM d), s.items_from, s.items_from_hi, 0
    FROM {{schema}}.tether_sessions AS s WHERE s.id = %(id)s::text
    UNION ALL
    SELECT s.id, LEAST(r.hi, r.from_hi), s.items_from, s.items_from_hi, r.depth + 1
    FROM r JOIN {{schema}}.tether_sessions AS s ON s.id = r.from_id
    WHERE r.from_hi > 0 AND r.depth < {MAX_DEPTH * 2}
),
copied AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT d.id, i.seq, i.data FROM r
    JOIN {{schema}}.tether_items AS i ON i.session_id = r.src AND i.seq > 0 AND i.seq <= r.hi
    JOIN d ON i.seq <= d.hi
),
cut AS (
    UPDATE {{schema}}.tether_sessions AS s
    SET items_from = NULL, items_from_hi = NULL, items_depth = 0
    FROM d WHERE s.id = d.id
),
own AS (
    UPDATE {{schema}}.tether_sessions
    SET shared_hi = LEAST(shared_hi, %(above)s::bigint) WHERE id = %(id)s::text
)
SELECT count(*) FROM d
"""
