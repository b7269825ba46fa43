"""Every statement the PostgreSQL store sends, as SQL text (no I/O).

Every statement names its tables as ``{schema}.table``; :class:`Statements` renders them for
one schema, quoted by :class:`psycopg.sql.Identifier` after ``check_schema_name`` accepted
the name. Every value is a bound parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from ... import _core
from ..._time import from_micros
from ._migrations import (
    CREATE_MIGRATIONS_TABLE,
    CREATE_SCHEMA,
    MIGRATIONS,
    MIGRATIONS_APPLIED,
    MIGRATIONS_LOCK,
    RECORD_MIGRATION,
    SCHEMA_EXISTS,
)
from ._options import check_schema_name
from ._rows import json_text, kv_hash

# --- SQL -----------------------------------------------------------------------------------------
# Conventions: {schema} is the quoted schema; %(now)s is the injected clock's time or NULL for
# the server's clock (now(): the statement's transaction start, constant within one); times
# leave as integer microseconds since the epoch (_core's unit), headers as one JSON object.


def _us(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def _header_json(alias: str) -> str:
    """A session header as one JSON object (never the lease token): one value to decode."""
    fields = [
        "id", "owner", "agent", "status", "metadata", "state", "options", "parent_id",
        "fork_seq", "version", "schema_version",
    ]  # fmt: skip
    parts = [f"'{name}', {alias}.{name}" for name in fields]
    parts += [
        f"'{name}', {_us(f'{alias}.{name}')}" for name in ("created_at", "updated_at", "expires_at")
    ]
    parts += [f"'{name}', {alias}.{name}" for name in ("last_seq", "history_len")]
    parts += [f"'lease_owner', {alias}.lease_owner", f"'lease_fence', {alias}.lease_fence"]
    parts.append(f"'lease_expires_at', {_us(f'{alias}.lease_expires_at')}")
    return f"json_build_object({', '.join(parts)})::text"


_NOW = "COALESCE(%(now)s::timestamptz, now())"
_TIME_CTE = (
    "t AS (SELECT c.now, to_char(c.now AT TIME ZONE 'UTC', "
    """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS iso """
    f"FROM (SELECT {_NOW} AS now) AS c)"
)
_LIVE = "(s.expires_at IS NULL OR s.expires_at > t.now)"
_LEASE_FREE = "(s.lease_token IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= t.now)"
_LEASE_HELD = "(s.lease_token = %(token)s::text AND s.lease_expires_at > t.now)"
_LEASE_OK = f"(CASE WHEN %(token)s::text IS NULL THEN {_LEASE_FREE} ELSE {_LEASE_HELD} END)"
_TTL = "%(ttl)s::bigint * interval '1 microsecond'"


def _item(seq: str, alias: str = "i", time: str = "t") -> str:
    # seq and (if the item had none) the timestamp go in front of the item's own keys
    return (
        f"""('{{"seq":' || ({seq}) || CASE WHEN {alias}.stamp """
        f"""THEN ',"timestamp":"' || {time}.iso || '"' ELSE '' END """
        f"|| ',' || substr({alias}.data, 2))::json"
    )


_NEW_ITEMS = (
    "unnest(%(items)s::text[], %(stamps)s::boolean[], %(item_keys)s::text[]) "
    "WITH ORDINALITY AS i(data, stamp, key, ord)"
)
_NEW_SEQ = "u.last_seq - %(n)s::bigint + i.ord"  # after the UPDATE, last_seq counts the new items
_NEW_META = (
    "unnest(%(meta_keys)s::text[], %(meta_values)s::text[], %(meta_hashes)s::bigint[]) "
    "AS m(key, value, kv_hash)"
)

CREATE = f"""
WITH {_TIME_CTE},
ins AS (
    INSERT INTO {{schema}}.tether_sessions (
        id, owner, agent, status, metadata, state, options, parent_id, fork_seq, version,
        schema_version, created_at, updated_at, expires_at, last_seq, history_len,
        lease_owner, lease_token, lease_fence, lease_expires_at)
    SELECT %(id)s::text, %(owner)s::text, %(agent)s::text, %(status)s::text,
        %(metadata)s::json, %(state)s::json, %(options)s::json, %(parent_id)s::text,
        %(fork_seq)s::bigint, 1, %(schema)s::integer, t.now, t.now,
        %(expires_at)s::timestamptz, %(n)s::bigint, %(n)s::bigint, NULL, NULL, 0, NULL
    FROM t
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT ins.id, i.ord, {_item("i.ord")}
    FROM ins, t, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, i.key, i.ord FROM ins, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {_NEW_META}
)
SELECT {_us("t.now")}, t.iso FROM ins, t
"""

# The guard every data write shares: the version, a live session in the current schema (an
# older one is upgraded first, on the slow path), and the lease rules. A NULL version is a
# blind append: any version.
_WRITE_GUARD = f"""
    s.id = %(id)s::text AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
    AND s.schema_version = %(schema)s::integer AND {_LIVE} AND {_LEASE_OK}
"""


# Forks share rows. A fork does not copy its parent's items: the child's row records that its
# seqs up to items_from_hi are the items of session items_from with the same seqs (the parent
# may itself read part of them from its own parent: a read follows the chain, items_depth
# long at most, each level an index range scan of the window's part there). A session's own
# rows start above items_from_hi, so a seq is found at exactly one level. Before a session's
# rows are deleted or rewritten, the forks that read them get copies (DETACH): the write
# statements below match nothing while shared_hi (the highest seq a fork of this session
# may read) is above what they rewrite, and the store then detaches and retries under the
# row lock. A fork takes that lock too (it raises shared_hi), so no fork slips in between.
# The statements that drop a session's rows also refuse a row whose share changed since
# their snapshot (_SAME_SHARE: a parent's detach gave it copies they would not see).
_OLD_SHARE = (
    "(SELECT items_from_hi AS old_from_hi FROM {schema}.tether_sessions "
    "WHERE id = %(id)s::text) AS o"
)
_SAME_SHARE = "s.items_from_hi IS NOT DISTINCT FROM o.old_from_hi"
MAX_DEPTH = 16
"""The longest chain of shares a fork starts (deeper, the fork copies the rows instead)."""


def _changed(column: str, cast: str) -> str:
    """``column = <the new value>`` if the commit changes it, else the stored value."""
    given = f"%(set_{column})s::boolean"
    return f"{column} = CASE WHEN {given} THEN %({column})s{cast} ELSE s.{column} END"


# An application's new state keeps the stored runtime block (_core.keep_runtime_block), merged
# here, in the one statement, under the row lock of the UPDATE: no read first, and no write can
# come in between. ``->`` on a json value returns the member's stored text unchanged, and the
# new state's text is compact JSON without that key (_core refused it), so the block is
# spliced in as the last member, byte for byte, as the other stores place it.
_BLOCK = _core.RUNTIME_KEY
assert re.fullmatch(r"\w+", _BLOCK)  # a plain key: written as it is inside the literals below
_NEW_STATE = f"""state = CASE
            WHEN NOT %(set_state)s::boolean THEN s.state
            WHEN %(keep_block)s::boolean AND (s.state -> '{_BLOCK}') IS NOT NULL THEN
                (left(%(state)s::text, -1)
                 || CASE WHEN %(state)s::text = '{{}}' THEN '' ELSE ',' END
                 || '"{_BLOCK}":' || (s.state -> '{_BLOCK}')::text || '}}')::json
            ELSE %(state)s::json END"""

_SET_CHANGES = f"""{_changed("owner", "::text")},
        {_changed("agent", "::text")},
        {_changed("status", "::text")},
        {_changed("expires_at", "::timestamptz")},
        {_changed("metadata", "::json")},
        {_NEW_STATE},
        {_changed("options", "::json")}"""
_META_CHANGES = f"""meta_gone AS (
    DELETE FROM {{schema}}.tether_session_meta AS m USING upd AS u
    WHERE %(set_metadata)s::boolean AND m.session_id = u.id
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT u.id, m.key, m.value, m.kv_hash FROM upd AS u, {_NEW_META}
    WHERE %(set_metadata)s::boolean
)"""

# A commit: the header updated under the write guard, its items and keys inserted, its metadata
# rows replaced if it changes the metadata. It returns what it stamped (the new version, the
# new last_seq, updated_at, the lease fields as it left them): the store's commit_stamped
# reports them with no read (_rows.commit_stamp), the plain commit reads the version alone.
COMMIT = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = s.last_seq + %(n)s::bigint,
        history_len = s.history_len + %(n)s::bigint,
        {_SET_CHANGES}
    FROM t
    WHERE {_WRITE_GUARD}
    RETURNING s.id, s.version, s.last_seq, t.iso, t.now AS stamped_at,
        s.lease_owner, s.lease_fence, s.lease_expires_at
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {_NEW_SEQ}, {_item(_NEW_SEQ, time="u")}
    FROM upd AS u, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, {_NEW_SEQ} FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version, last_seq, {_us("stamped_at")}, lease_owner, lease_fence,
    {_us("lease_expires_at")}
FROM upd
"""

# New seqs continue after the old last_seq, so the rows deleted and inserted never share a key.
# An item key may move from a deleted row to a new one: tether_item_keys' primary key is checked
# at the end of the statement (DEFERRABLE INITIALLY DEFERRED), when the old one is gone.
REPLACE = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = s.last_seq + %(n)s::bigint,
        history_len = %(n)s::bigint,
        items_from = NULL, items_from_hi = NULL, items_depth = 0,
        {_SET_CHANGES}
    FROM t, {_OLD_SHARE}
    WHERE {_WRITE_GUARD} AND s.shared_hi = 0 AND {_SAME_SHARE}
    RETURNING s.id, s.version, s.last_seq, t.iso
),
gone AS (
    DELETE FROM {{schema}}.tether_items AS old USING upd AS u WHERE old.session_id = u.id
),
keys_gone AS (
    DELETE FROM {{schema}}.tether_item_keys AS old USING upd AS u WHERE old.session_id = u.id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {_NEW_SEQ}, {_item(_NEW_SEQ, time="u")}
    FROM upd AS u, {_NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, {_NEW_SEQ} FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
"""

# replace_tail: the items after %(after)s replaced by the new ones, numbered from after + 1, in
# one statement that touches only the suffix. Rows whose seq the new items reuse are updated
# in place, the rest past the new end deleted, the rest of the new items inserted: three
# disjoint seq ranges, so the primary key never sees two rows at once. o.old_last is read in
# the UPDATE's own snapshot; the version guard makes it the locked row's. A fork cut below its
# share (after < items_from_hi) has no own rows there: those new seqs are inserted too.
TAIL = f"""
WITH {_TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        version = s.version + 1,
        updated_at = t.now,
        last_seq = %(after)s::bigint + %(n)s::bigint,
        history_len = %(after)s::bigint - (s.last_seq - s.history_len) + %(n)s::bigint,
        items_from = CASE WHEN %(after)s::bigint = 0 THEN NULL ELSE s.items_from END,
        items_from_hi = CASE WHEN %(after)s::bigint = 0 THEN NULL
            WHEN s.items_from_hi > %(after)s::bigint THEN %(after)s::bigint
            ELSE s.items_from_hi END,
        items_depth = CASE WHEN %(after)s::bigint = 0 THEN 0 ELSE s.items_depth END,
        {_SET_CHANGES}
    FROM t, (SELECT last_seq AS old_last, items_from_hi AS old_from_hi
             FROM {{schema}}.tether_sessions WHERE id = %(id)s::text) AS o
    WHERE {_WRITE_GUARD}
      AND %(after)s::bigint BETWEEN s.last_seq - s.history_len AND s.last_seq
      AND s.shared_hi <= %(after)s::bigint AND {_SAME_SHARE}
    RETURNING s.id, s.version, o.old_last, o.old_from_hi, t.iso
),
reused AS (
    UPDATE {{schema}}.tether_items AS old
    SET data = {_item("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {_NEW_ITEMS}
    WHERE old.session_id = u.id AND old.seq = %(after)s::bigint + i.ord
),
gone AS (
    DELETE FROM {{schema}}.tether_items AS old USING upd AS u
    WHERE old.session_id = u.id AND old.seq > %(after)s::bigint + %(n)s::bigint
),
keys_gone AS (
    DELETE FROM {{schema}}.tether_item_keys AS old USING upd AS u
    WHERE old.session_id = u.id AND old.seq > %(after)s::bigint
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, %(after)s::bigint + i.ord, {_item("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {_NEW_ITEMS}
    WHERE %(after)s::bigint + i.ord > u.old_last
       OR %(after)s::bigint + i.ord <= COALESCE(u.old_from_hi, 0)
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, %(after)s::bigint + i.ord
    FROM upd AS u, {_NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
"""

# items_by_key: the header's schema version (no row: missing or expired) and the keyed rows, by
# the (session_id, key) primary key and then the items' (session_id, seq) one, at the level of
# the share chain that holds the seq (a fork's keys are its own; its rows may be its parent's).
ITEMS_BY_KEY = f"""
WITH RECURSIVE t AS (SELECT {_NOW} AS now),
s0 AS (
    SELECT s.id, s.schema_version FROM {{schema}}.tether_sessions AS s, t
    WHERE s.id = %(id)s::text AND {_LIVE}
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
        WHERE k.session_id = s0.id AND k.key = ANY(%(keys)s::text[])
        OFFSET 0  -- a fence: the filter below must not re-run the probes above
    ) AS found
    WHERE found.data IS NOT NULL
    ORDER BY found.seq)
FROM s0
"""

# restore: the session exactly as given, unclaimed. The store first removes (under the row lock)
# any row it may write over; a row inserted since then makes this insert nothing.
RESTORE = f"""
WITH ins AS (
    INSERT INTO {{schema}}.tether_sessions (
        id, owner, agent, status, metadata, state, options, parent_id, fork_seq, version,
        schema_version, created_at, updated_at, expires_at, last_seq, history_len,
        lease_owner, lease_token, lease_fence, lease_expires_at)
    VALUES (%(id)s::text, %(owner)s::text, %(agent)s::text, %(status)s::text,
        %(metadata)s::json, %(state)s::json, %(options)s::json, %(parent_id)s::text,
        %(fork_seq)s::bigint, %(version)s::bigint, %(schema_version)s::integer,
        %(created_at)s::timestamptz, %(updated_at)s::timestamptz, %(expires_at)s::timestamptz,
        %(last_seq)s::bigint, %(history_len)s::bigint, %(lease_owner)s::text, NULL,
        %(lease_fence)s::bigint, NULL)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT ins.id, i.seq, i.data::json
    FROM ins, unnest(%(seqs)s::bigint[], %(datas)s::text[]) AS i(seq, data)
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, k.key, k.seq
    FROM ins, unnest(%(key_names)s::text[], %(key_seqs)s::bigint[]) AS k(key, seq)
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {_NEW_META}
)
SELECT count(*) FROM ins
"""

# The header and the window in one statement (one snapshot, one round trip): the header row
# first (seq NULL), then one row per item. The window is a seq range: seqs are contiguous, so
# a page (``limit``: the oldest items of the window) is the range (floor, floor + limit], one
# bounded index range scan. GREATEST and LEAST ignore NULLs: a NULL ``last``, ``after`` or
# ``limit`` bounds nothing.
LOAD = f"""
WITH RECURSIVE t AS (SELECT {_NOW} AS now),
f AS (
    SELECT s.*, GREATEST(s.last_seq - s.history_len, %(after)s::bigint,
                         s.last_seq - %(last)s::bigint) AS floor
    FROM {{schema}}.tether_sessions AS s, t
    WHERE s.id = %(id)s::text AND {_LIVE}
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
SELECT NULL::bigint AS seq, {_header_json("h")} AS data FROM h
UNION ALL
SELECT i.seq, i.data::text FROM r
JOIN {{schema}}.tether_items AS i ON i.session_id = r.src AND i.seq > r.lo AND i.seq <= r.hi
ORDER BY seq NULLS FIRST
"""

# fork_session: the child's row, reading its parent's rows up to %(at)s (see "Forks share
# rows"), its own copy of the parent's keys up to there, its metadata; the parent's shared_hi
# raised. Matches nothing (the store then finds out why, or copies) unless the parent is live,
# in this schema, uncompacted (its seqs start at 1, as the child's do), not too deep, at
# %(at)s within its history, and unchanged since the statement's snapshot (o.version: a
# write it waited for may have moved the keys it reads).
FORK = f"""
WITH {_TIME_CTE},
p AS (
    UPDATE {{schema}}.tether_sessions AS s SET shared_hi = GREATEST(s.shared_hi, %(at)s::bigint)
    FROM t, (SELECT version AS old_version FROM {{schema}}.tether_sessions
             WHERE id = %(parent_id)s::text) AS o
    WHERE s.id = %(parent_id)s::text AND {_LIVE} AND s.schema_version = %(schema)s::integer
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
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {_NEW_META}
)
SELECT {_us("t.now")} FROM ins, t
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

EXISTS = f"""
SELECT EXISTS (
    SELECT 1 FROM {{schema}}.tether_sessions AS s
    WHERE s.id = %(id)s::text AND (s.expires_at IS NULL OR s.expires_at > {_NOW})
)
"""

_SNAPSHOT = f"""
WITH t AS (SELECT {_NOW} AS now)
SELECT {_header_json("s")}, s.lease_token, {_us("t.now")}
FROM {{schema}}.tether_sessions AS s, t WHERE s.id = %(id)s::text
"""
SNAPSHOT = _SNAPSHOT
SNAPSHOT_FOR_UPDATE = _SNAPSHOT + "FOR UPDATE OF s\n"

_CHILDREN_GONE = """
items AS (DELETE FROM {schema}.tether_items AS i USING gone AS g WHERE i.session_id = g.id),
item_keys AS (
    DELETE FROM {schema}.tether_item_keys AS k USING gone AS g WHERE k.session_id = g.id
),
meta AS (DELETE FROM {schema}.tether_session_meta AS m USING gone AS g WHERE m.session_id = g.id)
"""

DELETE = f"""
WITH t AS (SELECT {_NOW} AS now),
gone AS (
    DELETE FROM {{schema}}.tether_sessions AS s USING t, {_OLD_SHARE}
    WHERE s.id = %(id)s::text AND {_LIVE} AND s.schema_version <= %(schema)s::integer
      AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
      AND (%(force)s::boolean OR {_LEASE_OK}) AND s.shared_hi = 0 AND {_SAME_SHARE}
    RETURNING s.id
),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

PURGE_ONE = f"""
WITH gone AS (DELETE FROM {{schema}}.tether_sessions WHERE id = %(id)s::text RETURNING id),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

PURGE_EXPIRED = f"""
WITH gone AS (
    DELETE FROM {{schema}}.tether_sessions AS s
    USING (SELECT id, items_from_hi AS old_from_hi FROM {{schema}}.tether_sessions
           WHERE expires_at IS NOT NULL AND expires_at <= {_NOW}) AS o
    WHERE s.id = o.id AND s.expires_at IS NOT NULL AND s.expires_at <= {_NOW}
      AND s.schema_version <= %(schema)s::integer AND s.shared_hi = 0 AND {_SAME_SHARE}
    RETURNING s.id
),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

# The expired sessions PURGE_EXPIRED left: those some fork reads (shared_hi), or changed by a
# detach while it ran. The store purges each under its row lock, its forks detached first.
EXPIRED_LEFT = f"""
SELECT id FROM {{schema}}.tether_sessions
WHERE expires_at IS NOT NULL AND expires_at <= {_NOW} AND schema_version <= %(schema)s::integer
ORDER BY id LIMIT 1000
"""

# A claim is one atomic UPDATE: it matches only a live session whose lease is free or expired
# (never one held under the same owner name: names are public, only the token acts on a live
# lease); the row lock orders racing claims, and the losers match nothing.
CLAIM = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET
    lease_owner = %(owner)s::text,
    lease_token = %(new_token)s::text,
    lease_fence = s.lease_fence + 1,
    lease_expires_at = t.now + {_TTL}
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND s.schema_version <= %(schema)s::integer
  AND {_LEASE_FREE}
RETURNING s.lease_fence, {_us("s.lease_expires_at")}
"""

RENEW = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_expires_at = t.now + {_TTL}
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND {_LEASE_HELD}
RETURNING s.lease_owner, s.lease_fence, {_us("s.lease_expires_at")}
"""

RELEASE = f"""
WITH t AS (SELECT {_NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_token = NULL, lease_expires_at = NULL
FROM t
WHERE s.id = %(id)s::text AND {_LIVE} AND {_LEASE_HELD}
RETURNING s.lease_fence
"""

# Writing back a session stored by an older tether (the slow path, once per session).
UPGRADE_HEADER = """
UPDATE {schema}.tether_sessions SET
    owner = %(owner)s::text, agent = %(agent)s::text, status = %(status)s::text,
    metadata = %(metadata)s::json, state = %(state)s::json, options = %(options)s::json,
    parent_id = %(parent_id)s::text, fork_seq = %(fork_seq)s::bigint,
    expires_at = %(expires_at)s::timestamptz, schema_version = %(schema_version)s::integer
WHERE id = %(id)s::text
"""
REWRITE_META = f"""
WITH gone AS (DELETE FROM {{schema}}.tether_session_meta WHERE session_id = %(id)s::text)
INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
SELECT %(id)s::text, m.key, m.value, m.kv_hash FROM {_NEW_META}
"""
SELECT_ITEMS = """
SELECT seq, data::text FROM {schema}.tether_items WHERE session_id = %(id)s::text ORDER BY seq
"""
REWRITE_ITEMS = """
UPDATE {schema}.tether_items AS i SET data = u.data::json
FROM unnest(%(seqs)s::bigint[], %(datas)s::text[]) AS u(seq, data)
WHERE i.session_id = %(id)s::text AND i.seq = u.seq
"""


def render(template: str, schema_name: str) -> bytes:
    """``template`` with ``{schema}`` replaced by the quoted schema identifier."""
    quoted = sql.Identifier(check_schema_name(schema_name)).as_string(None)
    return template.replace("{schema}", quoted).encode()


@dataclass(frozen=True)
class Statements:
    """Every statement, rendered once for one schema (bytes: psycopg sends them as they are,
    and prepares the frequent ones on each connection)."""

    create: bytes
    commit: bytes
    replace: bytes
    tail: bytes
    items_by_key: bytes
    fork: bytes
    shareable: bytes
    lock_dependents: bytes
    detach: bytes
    expired_left: bytes
    restore: bytes
    load: bytes
    exists: bytes
    snapshot: bytes
    snapshot_for_update: bytes
    delete: bytes
    purge_one: bytes
    purge_expired: bytes
    claim: bytes
    renew: bytes
    release: bytes
    upgrade_header: bytes
    rewrite_meta: bytes
    select_items: bytes
    rewrite_items: bytes
    migrations_applied: bytes
    migrations_lock: bytes
    schema_exists: bytes
    create_schema: bytes
    create_migrations_table: bytes
    record_migration: bytes
    migrations: tuple[tuple[bytes, ...], ...]
    quoted_schema: str

    @classmethod
    def for_schema(cls, schema_name: str) -> Statements:
        def r(template: str) -> bytes:
            return render(template, schema_name)

        return cls(
            create=r(CREATE),
            commit=r(COMMIT),
            replace=r(REPLACE),
            tail=r(TAIL),
            items_by_key=r(ITEMS_BY_KEY),
            fork=r(FORK),
            shareable=r(SHAREABLE),
            lock_dependents=r(LOCK_DEPENDENTS),
            detach=r(DETACH),
            expired_left=r(EXPIRED_LEFT),
            restore=r(RESTORE),
            load=r(LOAD),
            exists=r(EXISTS),
            snapshot=r(SNAPSHOT),
            snapshot_for_update=r(SNAPSHOT_FOR_UPDATE),
            delete=r(DELETE),
            purge_one=r(PURGE_ONE),
            purge_expired=r(PURGE_EXPIRED),
            claim=r(CLAIM),
            renew=r(RENEW),
            release=r(RELEASE),
            upgrade_header=r(UPGRADE_HEADER),
            rewrite_meta=r(REWRITE_META),
            select_items=r(SELECT_ITEMS),
            rewrite_items=r(REWRITE_ITEMS),
            migrations_applied=r(MIGRATIONS_APPLIED),
            migrations_lock=r(MIGRATIONS_LOCK),
            schema_exists=r(SCHEMA_EXISTS),
            create_schema=r(CREATE_SCHEMA),
            create_migrations_table=r(CREATE_MIGRATIONS_TABLE),
            record_migration=r(RECORD_MIGRATION),
            migrations=tuple(tuple(r(s) for s in step) for step in MIGRATIONS),
            quoted_schema=sql.Identifier(schema_name).as_string(None),
        )


# --- listing -------------------------------------------------------------------------------------


def list_statement(
    statements: Statements, query: _core.ListQuery, now: datetime | None
) -> tuple[bytes, dict[str, Any]]:
    """The listing statement for a checked query: fixed fragments joined, values bound.

    Every filter has an index whose order is the listing's, so a page reads ~limit rows: owner,
    agent and one status use (column, updated_at, id); no filter uses (updated_at, id); a
    metadata filter probes (kv_hash, session_id) of the metadata table.
    """
    where = [f"(s.expires_at IS NULL OR s.expires_at > {_NOW})"]
    params: dict[str, Any] = {"now": now, "limit": query.limit + 1}
    for column, value in (("owner", query.owner), ("agent", query.agent)):
        if value is not None:
            where.append(f"s.{column} = %({column})s::text")
            params[column] = value
    if query.statuses is not None:
        statuses = sorted(query.statuses)
        if len(statuses) == 1:  # equality keeps the (status, updated_at, id) order for LIMIT
            where.append("s.status = %(status)s::text")
            params["status"] = statuses[0]
        else:
            where.append("s.status = ANY(%(statuses)s::text[])")
            params["statuses"] = statuses
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
    for index, (key, value) in enumerate(query.metadata):
        key_json = json_text(key, "metadata filter key")
        where.append(
            f"s.id IN (SELECT m.session_id FROM {{schema}}.tether_session_meta AS m "
            f"WHERE m.kv_hash = %(h{index})s::bigint AND m.key = %(k{index})s::text "
            f"AND m.value = %(v{index})s::text)"
        )
        params.update({f"h{index}": kv_hash(key_json, value), f"k{index}": key_json})
        params[f"v{index}"] = value
    text = (
        f"SELECT {_header_json('s')} FROM {{schema}}.tether_sessions AS s "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY s.updated_at DESC, s.id DESC LIMIT %(limit)s::integer"
    )
    return text.replace("{schema}", statements.quoted_schema).encode(), params
