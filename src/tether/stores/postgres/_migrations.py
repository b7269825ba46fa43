"""Migrations of the PostgreSQL store's tables (not of session documents; see
:mod:`tether.schema`), as SQL text, and the advisory lock that serializes them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

# --- migrations of the database (not of session documents) ---------------------------------------
# Applied in order, each once, recorded in {schema}.tether_schema_migrations, all in one
# transaction under pg_advisory_xact_lock (see the store's _migrate). Never CREATE INDEX
# CONCURRENTLY here: it cannot run inside a transaction. Text columns that are compared or
# sorted use the "C" collation: bytewise, fast, and the same order as Python's str.

MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (  # 1: sessions with leases, items, the metadata index
        """CREATE TABLE {schema}.tether_sessions (
            id text COLLATE "C" PRIMARY KEY,
            owner text COLLATE "C",
            agent text COLLATE "C",
            status text COLLATE "C" NOT NULL,
            metadata json NOT NULL,
            state json NOT NULL,
            options json NOT NULL,
            parent_id text COLLATE "C",
            fork_seq bigint,
            version bigint NOT NULL,
            schema_version integer NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            expires_at timestamptz,
            last_seq bigint NOT NULL,
            history_len bigint NOT NULL,
            lease_owner text,
            lease_token text,
            lease_fence bigint NOT NULL DEFAULT 0,
            lease_expires_at timestamptz
        )""",
        """CREATE TABLE {schema}.tether_items (
            session_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            data json NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        """CREATE TABLE {schema}.tether_session_meta (
            session_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value text COLLATE "C" NOT NULL,
            kv_hash bigint NOT NULL
        )""",
        "CREATE INDEX tether_session_meta_session ON {schema}.tether_session_meta (session_id)",
        "CREATE INDEX tether_session_meta_kv ON {schema}.tether_session_meta (kv_hash, session_id)",
        "CREATE INDEX tether_sessions_updated ON {schema}.tether_sessions (updated_at, id)",
        "CREATE INDEX tether_sessions_owner ON {schema}.tether_sessions (owner, updated_at, id)",
        "CREATE INDEX tether_sessions_agent ON {schema}.tether_sessions (agent, updated_at, id)",
        "CREATE INDEX tether_sessions_status ON {schema}.tether_sessions (status, updated_at, id)",
        """CREATE INDEX tether_sessions_expires ON {schema}.tether_sessions (expires_at)
            WHERE expires_at IS NOT NULL""",
    ),
    (  # 2: keyed history items (KeyedItem): key -> seq, unique within a session. Checked at
        # the end of each statement, so one statement may move a key from a row it deletes
        # to a row it inserts (replace_history, replace_tail).
        """CREATE TABLE {schema}.tether_item_keys (
            session_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            CONSTRAINT tether_item_keys_pkey PRIMARY KEY (session_id, key)
                DEFERRABLE INITIALLY DEFERRED
        )""",
        "CREATE INDEX tether_item_keys_seq ON {schema}.tether_item_keys (session_id, seq)",
    ),
    (  # 3: forks share their parent's rows instead of copying them (see "Forks share rows"
        # in _sql_shares.py): a child's seqs up to items_from_hi are the rows of items_from
        # (read through its own share, if it has one); shared_hi is the highest seq of this
        # session's rows a fork may read, so a write below it detaches the forks first;
        # items_depth bounds the chain a read follows. ADD COLUMN with a constant default
        # rewrites no rows.
        'ALTER TABLE {schema}.tether_sessions ADD COLUMN items_from text COLLATE "C", '
        "ADD COLUMN items_from_hi bigint, ADD COLUMN shared_hi bigint NOT NULL DEFAULT 0, "
        "ADD COLUMN items_depth integer NOT NULL DEFAULT 0",
        "CREATE INDEX tether_sessions_items_from ON {schema}.tether_sessions "
        "(items_from, items_from_hi) WHERE items_from IS NOT NULL",
    ),
    (  # 4: fewer index entries per commit. Every commit changes updated_at, an indexed
        # column, so PostgreSQL cannot update the row in place (HOT) and writes an entry in
        # every index of the table. The index on (updated_at, id) alone goes (a listing with
        # no status, or several, merges each status's page from the status index instead);
        # owner and agent are indexed only where set, as SQLite's are.
        "DROP INDEX {schema}.tether_sessions_updated",
        "DROP INDEX {schema}.tether_sessions_owner",
        "CREATE INDEX tether_sessions_owner ON {schema}.tether_sessions (owner, updated_at, id) "
        "WHERE owner IS NOT NULL",
        "DROP INDEX {schema}.tether_sessions_agent",
        "CREATE INDEX tether_sessions_agent ON {schema}.tether_sessions (agent, updated_at, id) "
        "WHERE agent IS NOT NULL",
    ),
)

MIGRATIONS_APPLIED = "SELECT max(version) FROM {schema}.tether_schema_migrations"
MIGRATIONS_LOCK = "SELECT pg_advisory_xact_lock(%(key)s::bigint)"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(name)s::text)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {schema}.tether_schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
RECORD_MIGRATION = "INSERT INTO {schema}.tether_schema_migrations (version) VALUES (%(v)s::integer)"


def lock_key(schema_name: str) -> int:
    """The advisory lock that serializes migrations of one schema, as a signed 64-bit key."""
    digest = hashlib.blake2b(f"tether-migrations:{schema_name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)
