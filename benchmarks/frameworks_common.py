"""What the three framework benchmarks share: timing, servers, isolation, sizes on disk.

Imported by ``benchmarks/frameworks.py`` and its sections (``frameworks_agents.py``,
``frameworks_langgraph.py``, ``frameworks_adk.py``); not run by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import statistics
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import server_turns
from chat_turn import interleave

Json = dict[str, Any]
T = TypeVar("T")

REDIS_URL = server_turns.REDIS_URL
POSTGRES_URL = server_turns.POSTGRES_URL

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "Json",
    "Loop",
    "Servers",
    "interleave",
    "pg_schema_bytes",
    "sqlite_bytes",
    "summarize",
    "text",
]

_WORDS = (
    "the",
    "agent",
    "reads",
    "history",
    "calls",
    "a",
    "tool",
    "waits",
    "for",
    "an",
    "answer",
    "and",
    "writes",
    "what",
    "it",
    "decided",
    "so",
    "next",
    "turn",
    "starts",
    "where",
    "this",
    "one",
    "stopped",
    "user",
    "asked",
    "about",
    "order",
    "refund",
    "shipping",
    "invoice",
    "account",
    "password",
    "reset",
    "meeting",
    "schedule",
    "report",
    "summary",
    "draft",
    "email",
    "customer",
    "support",
    "ticket",
    "priority",
    "status",
    "pending",
    "approved",
    "denied",
    "because",
    "policy",
    "says",
    "within",
    "days",
    "after",
    "receipt",
    "please",
    "confirm",
    "address",
    "phone",
    "number",
    "total",
    "amount",
    "currency",
    "euro",
    "dollar",
)


@functools.lru_cache(maxsize=4096)
def text(turn: int, size: int) -> str:
    """About ``size`` characters of words drawn at random (seeded by ``turn``): different for
    every turn and compressible like prose, not like one sentence repeated (PostgreSQL
    compresses large values, so repeated text would flatter whoever stores more copies)."""
    rng = random.Random(turn * 7919 + size)
    words = [f"[turn {turn}]"]
    length = len(words[0])
    while length < size:
        words.append(rng.choice(_WORDS))
        length += len(words[-1]) + 1
    return " ".join(words)[:size]


def summarize(samples_ns: Sequence[int]) -> Json:
    """Median, p95 and mean of a list of nanosecond samples, in microseconds."""
    ordered = sorted(samples_ns)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "median_us": statistics.median(ordered) / 1000,
        "p95_us": p95 / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "count": len(ordered),
    }


class Loop:
    """One event loop kept for a whole section: every async system runs its calls on it, so
    no system pays for starting a loop and all pay the same ``run_until_complete``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(coro)
        except BaseException:
            # interrupted (SIGTERM, ^C) or failed mid-gather: cancel what is still running, so
            # no task keeps a transaction open while its schema is being dropped
            self._cancel_pending()
            raise

    def _cancel_pending(self) -> None:
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def close_all(self, closers: Iterable[Callable[[], Coroutine[Any, Any, object]]]) -> None:
        """Run every closer, then close the loop. A closer that fails (its connection died
        with the server, or with a task cancelled above) does not keep the others from
        running, nor hide the error that ended the section."""
        for close in closers:
            try:
                self.loop.run_until_complete(close())
            except (Exception, asyncio.CancelledError) as exc:
                print(f"note: closing a system failed: {type(exc).__name__}: {exc}")
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class Servers:
    """The local Redis and PostgreSQL, each benchmark system in a namespace of its own: a
    PostgreSQL schema or a Redis key prefix, all dropped by :meth:`cleanup` (never anything
    else on the server)."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.redis_ok = self._probe("redis")
        self.postgres_ok = self._probe("postgres")
        self._schemas: list[str] = []
        self._prefixes: list[str] = []
        self._tether_urls: list[str] = []

    def _probe(self, kind: str) -> bool:
        why = server_turns.available(kind)
        if why is not None:
            self.notes.append(f"{kind} systems skipped: {why}")
            print(f"note: {self.notes[-1]}")
        return why is None

    def tether_url(self, kind: str) -> str:
        """A tether store URL in a fresh Redis namespace / PostgreSQL schema."""
        url = server_turns.tether_url(kind)
        self._tether_urls.append(url)
        return url

    def schema(self) -> str:
        """A new, empty PostgreSQL schema for one system (its name is ours: hex only)."""
        import psycopg
        from psycopg import sql

        name = f"bench_fw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self._schemas.append(name)
        return name

    def redis_prefix(self) -> str:
        """A Redis key prefix of one system's own (hex only: safe in a SCAN pattern)."""
        prefix = f"bench-fw-{uuid.uuid4().hex[:12]}"
        self._prefixes.append(prefix)
        return prefix

    def cleanup(self) -> None:
        for url in self._tether_urls:
            with contextlib.suppress(Exception):  # a server that went away has nothing left
                server_turns.cleanup(url)
        if self._schemas:
            import psycopg
            from psycopg import sql

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                # never wait forever on a lock: a schema left behind is named, not hung on
                conn.execute("SET lock_timeout = '20s'")
                for name in self._schemas:
                    try:
                        conn.execute(
                            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                        )
                    except psycopg.errors.LockNotAvailable:
                        print(f"note: schema {name} was left behind (locked); drop it by hand")
        if self._prefixes:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for prefix in self._prefixes:
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.delete(key)
            client.close()
        self._tether_urls.clear()
        self._schemas.clear()
        self._prefixes.clear()


@contextlib.contextmanager
def servers(notes: list[str]) -> Iterator[Servers]:
    """:class:`Servers` for one section, cleaned up on the way out (errors included)."""
    held = Servers(notes)
    try:
        yield held
    finally:
        held.cleanup()


def pg_schema_bytes(schema: str) -> int:
    """Every table of ``schema`` with its indexes and TOAST (``pg_total_relation_size``)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def sqlite_bytes(path: Path) -> int:
    """The database file plus its WAL, after a ``wal_checkpoint(TRUNCATE)`` (from a second
    connection: what a reader of the directory would see at rest)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
