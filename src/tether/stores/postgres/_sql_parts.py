"""The SQL fragments every PostgreSQL statement module shares (text only, no I/O).

The statements are split by concern: ``_sql_reads`` (load, listing, lookups by key),
``_sql_shares`` (forks sharing their parent's rows), ``_sql`` (the writes, and
:class:`~tether.stores.postgres._sql.Statements`, which renders them all for one schema).
"""

from __future__ import annotations

# Conventions: {schema} is the quoted schema; %(now)s is the injected clock's time or NULL for
# the server's clock (now(): the statement's transaction start, constant within one); times
# leave as integer microseconds since the epoch (_core's unit), headers as one JSON object.


def micros(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def header_json(alias: str) -> str:
    """A session header as one JSON object (never the lease token): one value to decode."""
    fields = [
        "id", "owner", "agent", "status", "metadata", "state", "options", "parent_id",
        "fork_seq", "version", "schema_version",
    ]  # fmt: skip
    parts = [f"'{name}', {alias}.{name}" for name in fields]
    parts += [
        f"'{name}', {micros(f'{alias}.{name}')}"
        for name in ("created_at", "updated_at", "expires_at")
    ]
    parts += [f"'{name}', {alias}.{name}" for name in ("last_seq", "history_len")]
    parts += [f"'lease_owner', {alias}.lease_owner", f"'lease_fence', {alias}.lease_fence"]
    parts.append(f"'lease_expires_at', {micros(f'{alias}.lease_expires_at')}")
    return f"json_build_object({', '.join(parts)})::text"


NOW = "COALESCE(%(now)s::timestamptz, now())"
TIME_CTE = (
    "t AS (SELECT c.now, to_char(c.now AT TIME ZONE 'UTC', "
    """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS iso """
    f"FROM (SELECT {NOW} AS now) AS c)"
)
LIVE = "(s.expires_at IS NULL OR s.expires_at > t.now)"
LEASE_FREE = "(s.lease_token IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= t.now)"
LEASE_HELD = "(s.lease_token = %(token)s::text AND s.lease_expires_at > t.now)"
LEASE_OK = f"(CASE WHEN %(token)s::text IS NULL THEN {LEASE_FREE} ELSE {LEASE_HELD} END)"
TTL = "%(ttl)s::bigint * interval '1 microsecond'"


def item_json(seq: str, alias: str = "i", time: str = "t") -> str:
    # seq and (if the item had none) the timestamp go in front of the item's own keys
    return (
        f"""('{{"seq":' || ({seq}) || CASE WHEN {alias}.stamp """
        f"""THEN ',"timestamp":"' || {time}.iso || '"' ELSE '' END """
        f"|| ',' || substr({alias}.data, 2))::json"
    )


# Arrays go in binary (``%b``): psycopg's text format escapes each element (a JSON item is
# full of quotes) with a regular expression; binary is the elements' bytes behind their
# lengths. A write's new items go as literals the store writes itself (``_arrays``), cheaper
# still (their parameters are ``_arrays`` lists, so ``%s`` picks its dumper).
NEW_ITEMS = (
    "unnest(%(items)s::text[], %(stamps)s::boolean[], %(item_keys)s::text[]) "
    "WITH ORDINALITY AS i(data, stamp, key, ord)"
)
# The new items of a write none of whose items has a key (a chat turn's): no keys to send, and
# no item-key CTE to run (see _sql.APPEND_PLAIN).
NEW_PLAIN_ITEMS = (
    "unnest(%(items)s::text[], %(stamps)s::boolean[]) WITH ORDINALITY AS i(data, stamp, ord)"
)
NEW_SEQ = "u.last_seq - %(n)s::bigint + i.ord"  # after the UPDATE, last_seq counts the new items
NEW_META = (
    "unnest(%(meta_keys)b::text[], %(meta_values)b::text[], %(meta_hashes)b::bigint[]) "
    "AS m(key, value, kv_hash)"
)
