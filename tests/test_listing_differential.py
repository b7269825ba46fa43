"""Listing on the file, SQLite, Redis and PostgreSQL stores against the memory store, page by
page.

The stores that keep tables choose an index per filter, and a listing with no status filter
or several merges the newest page of each status from the status index (SQLite migration 8,
PostgreSQL migration 4). The memory store filters and sorts every session in Python: the
plain truth. The same random sessions (statuses, owners, agents, metadata, expiry, and
``updated_at`` ties from a clock that stands still between writes) go into each store; every
filter combination below, paged at several sizes, must list the same sessions in the same
order, with a next page exactly when there is one.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tether import Session, Store
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from .conftest import drop_postgres_schema, wipe_redis_namespace, with_options

STATUSES = ["new", "running", "hibernated", "waiting", "finished", "error", "archived"]
# near the real time: Redis expires keys on its own clock, so "expired" must mean the same there
START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "running"},
    {"status": ["running", "finished", "archived"]},
    {"status": STATUSES},
    {"owner": "owner-1"},
    {"owner": "owner-1", "status": ["new", "error"]},
    {"agent": "agent-0", "status": "waiting"},
    {"metadata": {"team": "red"}},
    {"metadata": {"team": "red"}, "status": ["new", "running"]},
    {"updated_after": START + timedelta(seconds=4)},
    {"updated_before": START + timedelta(seconds=9), "status": ["finished", "new"]},
    {"updated_after": START + timedelta(seconds=2), "updated_before": START + timedelta(seconds=8)},
]


class StandingClock:
    """A clock that moves only when told: many writes share one ``updated_at``."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _fill(store: Store, clock: StandingClock, seed: int) -> None:
    rng = random.Random(seed)
    for index in range(90):
        clock.now = START + timedelta(seconds=rng.randrange(12))  # ties on purpose
        expires = None
        if rng.random() < 0.1:  # expired by the time of listing, or not
            expires = START + timedelta(days=rng.choice([-1, 1]))
        store.create(
            Session(
                id=f"s{index:03}-{rng.randrange(1000)}",
                status=rng.choice(STATUSES),
                owner=rng.choice([None, "owner-0", "owner-1"]),
                agent=rng.choice([None, "agent-0"]),
                metadata={"team": rng.choice(["red", "blue"])} if rng.random() < 0.7 else {},
                expires_at=expires,
            )
        )
    clock.now = START + timedelta(seconds=30)


def _pages(store: Store, limit: int, filters: dict[str, Any]) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = store.list(limit=limit, cursor=cursor, **filters)
        pages.append([h.id for h in page.sessions])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 200, "the cursor does not move on"


def _compare(make: Callable[[StandingClock], Store], seed: int) -> None:
    truth_clock, clock = StandingClock(), StandingClock()
    truth = MemoryStore(clock=truth_clock)
    with make(clock) as store:
        _fill(truth, truth_clock, seed)
        _fill(store, clock, seed)
        for filters in FILTERS:
            for limit in (1, 4, 50):
                expected = _pages(truth, limit, filters)
                got = _pages(store, limit, filters)
                # a page boundary may fall differently only if the last page is empty
                assert [i for p in got for i in p] == [i for p in expected for i in p], filters
                assert all(len(p) == limit for p in got[:-1]), (filters, limit)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sqlite_lists_as_the_memory_store_does(tmp_path: Path, seed: int) -> None:
    _compare(lambda clock: SQLiteStore(tmp_path / f"{seed}.db", clock=clock), seed)


@pytest.mark.parametrize("seed", [1])
def test_the_file_store_lists_as_the_memory_store_does(tmp_path: Path, seed: int) -> None:
    from tether.stores.file import FileStore

    _compare(lambda clock: FileStore(tmp_path / "files", fsync=False, clock=clock), seed)


@pytest.mark.parametrize("seed", [1, 2])
def test_redis_lists_as_the_memory_store_does(redis_url: str, seed: int) -> None:
    from tether.stores.redis import RedisStore

    namespace = f"t{uuid.uuid4().hex}"
    url = with_options(redis_url, namespace=namespace)
    try:
        _compare(lambda clock: RedisStore.from_url(url, clock=clock), seed)
    finally:
        wipe_redis_namespace(redis_url, namespace)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    name = f"tether_t_{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(postgres_url, name)


@pytest.mark.parametrize("seed", [1, 2])
def test_postgres_lists_as_the_memory_store_does(
    postgres_url: str, pg_schema: str, seed: int
) -> None:
    from tether.stores.postgres import PostgresStore, _options

    conninfo, _ = _options.parse_url(postgres_url)
    _compare(lambda clock: PostgresStore(conninfo, schema=pg_schema, clock=clock), seed)
