"""A pytest plugin that runs LangGraph's own graph tests (from its sdist) on tether's savers.

Loaded with ``-p langgraph_plugin`` (this folder on ``PYTHONPATH``) from the root of the
langgraph sdist. When the sdist's ``tests/conftest.py`` is registered, and before pytest reads
its fixtures, the plugin replaces its ``sync_checkpointer`` / ``async_checkpointer`` fixtures
by ones parametrized with tether's savers: ``tether_<store>`` (a :class:`TetherSaver`) and
``tether_<store>_aio`` (an :class:`AsyncTetherSaver`). Every test that takes a checkpointer
then runs on tether: interrupts, resume, time travel, subgraphs, durability modes, delta
channels.

``TETHER_LANGGRAPH_STORES`` picks the stores (comma-separated: ``memory``, ``sqlite``,
``postgres``, ``redis``; default ``sqlite,postgres``). Every test gets a fresh SQLite file, or
its own PostgreSQL schema / Redis namespace, removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest

import tether
from tether.integrations.langgraph import AsyncTetherSaver, TetherSaver

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STORES = [
    s.strip() for s in os.environ.get("TETHER_LANGGRAPH_STORES", "sqlite,postgres").split(",")
]


@contextlib.contextmanager
def _url(kind: str) -> Iterator[str]:
    """A fresh store URL of this kind, and its removal afterwards."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tether-lg-") as folder:
            yield f"sqlite:///{folder}/sessions.db"
    elif kind == "redis":
        namespace = f"t{secrets.token_hex(6)}"
        try:
            yield f"{REDIS_URL}?namespace={namespace}"
        finally:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                client.delete(key)
            client.close()
    elif kind == "postgres":
        schema = f"tether_lg_{secrets.token_hex(6)}"
        try:
            yield f"{POSTGRES_URL}?schema={schema}"
        finally:
            import psycopg
            from psycopg import sql

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    else:
        raise pytest.UsageError(f"TETHER_LANGGRAPH_STORES: unknown store {kind!r}")


@pytest.fixture(params=[f"tether_{kind}" for kind in STORES])
def sync_checkpointer(request: pytest.FixtureRequest) -> Iterator[TetherSaver]:
    with _url(request.param.removeprefix("tether_")) as url, tether.open_store(url) as store:
        yield TetherSaver(store)


@pytest.fixture(params=[f"tether_{kind}_aio" for kind in STORES])
async def async_checkpointer(request: pytest.FixtureRequest) -> AsyncIterator[AsyncTetherSaver]:
    kind = request.param.removeprefix("tether_").removesuffix("_aio")
    with _url(kind) as url:
        async with tether.open_async_store(url) as store:
            yield AsyncTetherSaver(store)
        await asyncio.sleep(0)


# LangGraph's tests that time a stream against 0.1 s windows of wall clock: on a loaded 2-core
# machine they fail now and then with LangGraph's own savers too. They must still pass, but
# may take up to two more tries (pytest-rerunfailures); every other test gets one try.
TIMING_TESTS = frozenset(
    {
        "test_stream_buffering_single_node",
        "test_stream_subgraphs_during_execution",
        "test_imp_nested",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.name.split("[")[0] in TIMING_TESTS:
            item.add_marker(pytest.mark.flaky(reruns=2))


@pytest.hookimpl(tryfirst=True)
def pytest_plugin_registered(plugin: Any, manager: Any) -> None:
    """Swap the sdist conftest's checkpointer fixtures before pytest parses them."""
    if (
        isinstance(plugin, ModuleType)
        and plugin.__name__ in ("tests.conftest", "conftest")
        and hasattr(plugin, "sync_checkpointer")
    ):
        setattr(plugin, "sync_checkpointer", sync_checkpointer)  # noqa: B010 - a module's
        setattr(plugin, "async_checkpointer", async_checkpointer)  # noqa: B010 - fixtures
