"""Every statement the PostgreSQL store sends, as SQL text (no I/O): the writes here, the
reads in ``_sql_reads``, the statements of forks sharing rows in ``_sql_shares``, the
fragments they share in ``_sql_parts``.

Every statement names its tables as ``{schema}.table``; :class:`Statements` renders them all
for one schema, quoted by :class:`psycopg.sql.Identifier` after ``check_schema_name``
accepted the name. Every value is a bound parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from ... import _core
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
from ._sql_parts import (
    LEASE_FREE,
    LEASE_HELD,
    LEASE_OK,
    LIVE,
    NEW_ITEMS,
    NEW_META,
    NEW_PLAIN_ITEMS,
    NEW_SEQ,
    NOW,
    TIME_CTE,
    TTL,
    item_json,
    micros,
)
from ._sql_reads import (
    EXISTS,
    ITEMS_BY_KEY,
    LOAD,
    SNAPSHOT,
    SNAPSHOT_FOR_UPDATE,
    list_statement,
)
from ._sql_shares import DETACH, FORK, LOCK_DEPENDENTS, MAX_DEPTH, OLD_SHARE, SAME_SHARE, SHAREABLE

# list_statement (_sql_reads) and MAX_DEPTH (_sql_shares) are named through this module by the
# store, its tests and docs/postgres.md, as before the statements were split.
__all__ = ["MAX_DEPTH", "Statements", "list_statement", "render"]

CREATE = f"""
WITH {TIME_CTE},
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
    SELECT ins.id, i.ord, {item_json("i.ord")}
    FROM ins, t, {NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT ins.id, i.key, i.ord FROM ins, {NEW_ITEMS} WHERE i.key IS NOT NULL
),
meta AS (
    INSERT INTO {{schema}}.tether_session_meta (session_id, key, value, kv_hash)
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {NEW_META}
)
SELECT {micros("t.now")}, t.iso FROM ins, t
"""

# The guard every data write shares: the version, a live session in the current schema (an
# older one is upgraded first, on the slow path), and the lease rules. A NULL version is a
# blind append: any version.
_WRITE_GUARD = f"""
    s.id = %(id)s::text AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
    AND s.schema_version = %(schema)s::integer AND {LIVE} AND {LEASE_OK}
"""


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
    SELECT u.id, m.key, m.value, m.kv_hash FROM upd AS u, {NEW_META}
    WHERE %(set_metadata)s::boolean
)"""

# What a commit and replace_history both do: a new version, at the statement's time, with n
# new seqs; the new items (numbered after the UPDATE's last_seq) and their keys inserted, and
# the metadata rows replaced if the metadata changes.
_BUMP = """version = s.version + 1,
        updated_at = t.now,
        last_seq = s.last_seq + %(n)s::bigint,"""
_NEW_ITEM_ROWS = f"""items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {NEW_SEQ}, {item_json(NEW_SEQ, time="u")}
    FROM upd AS u, {NEW_ITEMS}
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, {NEW_SEQ} FROM upd AS u, {NEW_ITEMS} WHERE i.key IS NOT NULL
)"""
_NEW_ROWS = f"""{_NEW_ITEM_ROWS},
{_META_CHANGES}"""

# A commit: the header updated under the write guard, its items and keys inserted, its metadata
# rows replaced if it changes the metadata. It returns what it stamped (the new version, the
# new last_seq, updated_at, the lease fields as it left them): the store's commit_stamped
# reports them with no read (_rows.commit_stamp), the plain commit reads the version alone.
COMMIT = f"""
WITH {TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        {_BUMP}
        history_len = s.history_len + %(n)s::bigint,
        {_SET_CHANGES}
    FROM t
    WHERE {_WRITE_GUARD}
    RETURNING s.id, s.version, s.last_seq, t.iso, t.now AS stamped_at,
        s.lease_owner, s.lease_fence, s.lease_expires_at
),
{_NEW_ROWS}
SELECT version, last_seq, {micros("stamped_at")}, lease_owner, lease_fence,
    {micros("lease_expires_at")}
FROM upd
"""

# A commit that changes nothing in the header (a chat turn's, an append): COMMIT without the
# changes, so without their 16 parameters (psycopg converts each one on every call, the larger
# part of a commit's client time) and without the CASE per field and the metadata CTEs on the
# server. The same guard, the same rows, the same stamp.
_APPEND_UPDATE = f"""upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        {_BUMP}
        history_len = s.history_len + %(n)s::bigint
    FROM t
    WHERE {_WRITE_GUARD}
    RETURNING s.id, s.version, s.last_seq, t.iso, t.now AS stamped_at,
        s.lease_owner, s.lease_fence, s.lease_expires_at
)"""
_STAMPED = f"""SELECT version, last_seq, {micros("stamped_at")}, lease_owner, lease_fence,
    {micros("lease_expires_at")}
FROM upd
"""
APPEND = f"""
WITH {TIME_CTE},
{_APPEND_UPDATE},
{_NEW_ITEM_ROWS}
{_STAMPED}"""

# APPEND when no new item has a key (a chat turn's): its items without the key array, and
# without the item-key CTE, which would run (and unnest the items a second time) to insert
# nothing. The same guard, the same rows, the same stamp.
APPEND_PLAIN = f"""
WITH {TIME_CTE},
{_APPEND_UPDATE},
items AS (
    INSERT INTO {{schema}}.tether_items (session_id, seq, data)
    SELECT u.id, {NEW_SEQ}, {item_json(NEW_SEQ, time="u")}
    FROM upd AS u, {NEW_PLAIN_ITEMS}
)
{_STAMPED}"""

# New seqs continue after the old last_seq, so the rows deleted and inserted never share a key.
# An item key may move from a deleted row to a new one: tether_item_keys' primary key is checked
# at the end of the statement (DEFERRABLE INITIALLY DEFERRED), when the old one is gone.
REPLACE = f"""
WITH {TIME_CTE},
upd AS (
    UPDATE {{schema}}.tether_sessions AS s SET
        {_BUMP}
        history_len = %(n)s::bigint,
        items_from = NULL, items_from_hi = NULL, items_depth = 0,
        {_SET_CHANGES}
    FROM t, {OLD_SHARE}
    WHERE {_WRITE_GUARD} AND s.shared_hi = 0 AND {SAME_SHARE}
    RETURNING s.id, s.version, s.last_seq, t.iso
),
gone AS (
    DELETE FROM {{schema}}.tether_items AS old USING upd AS u WHERE old.session_id = u.id
),
keys_gone AS (
    DELETE FROM {{schema}}.tether_item_keys AS old USING upd AS u WHERE old.session_id = u.id
),
{_NEW_ROWS}
SELECT version FROM upd
"""

# replace_tail: the items after %(after)s replaced by the new ones, numbered from after + 1, in
# one statement that touches only the suffix. Rows whose seq the new items reuse are updated
# in place, the rest past the new end deleted, the rest of the new items inserted: three
# disjoint seq ranges, so the primary key never sees two rows at once. o.old_last is read in
# the UPDATE's own snapshot; the version guard makes it the locked row's. A fork cut below its
# share (after < items_from_hi) has no own rows there: those new seqs are inserted too.
TAIL = f"""
WITH {TIME_CTE},
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
      AND s.shared_hi <= %(after)s::bigint AND {SAME_SHARE}
    RETURNING s.id, s.version, o.old_last, o.old_from_hi, t.iso
),
reused AS (
    UPDATE {{schema}}.tether_items AS old
    SET data = {item_json("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {NEW_ITEMS}
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
    SELECT u.id, %(after)s::bigint + i.ord, {item_json("%(after)s::bigint + i.ord", time="u")}
    FROM upd AS u, {NEW_ITEMS}
    WHERE %(after)s::bigint + i.ord > u.old_last
       OR %(after)s::bigint + i.ord <= COALESCE(u.old_from_hi, 0)
),
item_keys AS (
    INSERT INTO {{schema}}.tether_item_keys (session_id, key, seq)
    SELECT u.id, i.key, %(after)s::bigint + i.ord
    FROM upd AS u, {NEW_ITEMS} WHERE i.key IS NOT NULL
),
{_META_CHANGES}
SELECT version FROM upd
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
    SELECT ins.id, m.key, m.value, m.kv_hash FROM ins, {NEW_META}
)
SELECT count(*) FROM ins
"""

_CHILDREN_GONE = """
items AS (DELETE FROM {schema}.tether_items AS i USING gone AS g WHERE i.session_id = g.id),
item_keys AS (
    DELETE FROM {schema}.tether_item_keys AS k USING gone AS g WHERE k.session_id = g.id
),
meta AS (DELETE FROM {schema}.tether_session_meta AS m USING gone AS g WHERE m.session_id = g.id)
"""

DELETE = f"""
WITH t AS (SELECT {NOW} AS now),
gone AS (
    DELETE FROM {{schema}}.tether_sessions AS s USING t, {OLD_SHARE}
    WHERE s.id = %(id)s::text AND {LIVE} AND s.schema_version <= %(schema)s::integer
      AND (%(version)s::bigint IS NULL OR s.version = %(version)s::bigint)
      AND (%(force)s::boolean OR {LEASE_OK}) AND s.shared_hi = 0 AND {SAME_SHARE}
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
           WHERE expires_at IS NOT NULL AND expires_at <= {NOW}) AS o
    WHERE s.id = o.id AND s.expires_at IS NOT NULL AND s.expires_at <= {NOW}
      AND s.schema_version <= %(schema)s::integer AND s.shared_hi = 0 AND {SAME_SHARE}
    RETURNING s.id
),
{_CHILDREN_GONE}
SELECT count(*) FROM gone
"""

# The expired sessions PURGE_EXPIRED left: those some fork reads (shared_hi), or changed by a
# detach while it ran. The store purges each under its row lock, its forks detached first.
EXPIRED_LEFT = f"""
SELECT id FROM {{schema}}.tether_sessions
WHERE expires_at IS NOT NULL AND expires_at <= {NOW} AND schema_version <= %(schema)s::integer
ORDER BY id LIMIT 1000
"""

# A claim is one atomic UPDATE: it matches only a live session whose lease is free or expired
# (never one held under the same owner name: names are public, only the token acts on a live
# lease); the row lock orders racing claims, and the losers match nothing.
CLAIM = f"""
WITH t AS (SELECT {NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET
    lease_owner = %(owner)s::text,
    lease_token = %(new_token)s::text,
    lease_fence = s.lease_fence + 1,
    lease_expires_at = t.now + {TTL}
FROM t
WHERE s.id = %(id)s::text AND {LIVE} AND s.schema_version <= %(schema)s::integer
  AND {LEASE_FREE}
RETURNING s.lease_fence, {micros("s.lease_expires_at")}
"""

RENEW = f"""
WITH t AS (SELECT {NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_expires_at = t.now + {TTL}
FROM t
WHERE s.id = %(id)s::text AND {LIVE} AND {LEASE_HELD}
RETURNING s.lease_owner, s.lease_fence, {micros("s.lease_expires_at")}
"""

RELEASE = f"""
WITH t AS (SELECT {NOW} AS now)
UPDATE {{schema}}.tether_sessions AS s SET lease_token = NULL, lease_expires_at = NULL
FROM t
WHERE s.id = %(id)s::text AND {LIVE} AND {LEASE_HELD}
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
SELECT %(id)s::text, m.key, m.value, m.kv_hash FROM {NEW_META}
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
    append: bytes
    append_plain: bytes
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
            append=r(APPEND),
            append_plain=r(APPEND_PLAIN),
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
