"""langgraph-checkpoint-conformance (0.0.2) on tether's savers, on every built-in store.

The suite is LangGraph's own, run as shipped: ``validate`` drives every capability the saver
overrides (the five base ones and the three extended: delete_for_runs, copy_thread, prune)
and the test asserts full conformance.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .conftest import (
    drop_postgres_schema,
    require_module,
    require_server,
    wipe_redis_namespace,
    with_options,
)

require_module("langgraph.checkpoint.conformance", "langgraph")

from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402

import tether  # noqa: E402
from tether.integrations.langgraph import AsyncTetherSaver, TetherSaver  # noqa: E402

STORES = ["memory", "file", "sqlite", "redis", "postgres"]


def _url(kind: str, tmp_path: Path, cleanup: list[tuple[str, str, str]]) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "file":
        return f"file:{tmp_path / 'sessions'}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    if kind == "redis":
        url = require_server("redis")
        namespace = f"t{uuid.uuid4().hex}"
        cleanup.append(("redis", url, namespace))
        return with_options(url, namespace=namespace)
    url = require_server("postgres")
    schema = f"tether_t_{uuid.uuid4().hex}"
    cleanup.append(("postgres", url, schema))
    return with_options(url, schema=schema)


def _clean(cleanup: list[tuple[str, str, str]]) -> None:
    for kind, url, name in cleanup:
        if kind == "redis":
            wipe_redis_namespace(url, name)
        else:
            drop_postgres_schema(url, name)


@pytest.mark.parametrize("kind", STORES)
async def test_async_saver_full_conformance(kind: str, tmp_path: Path) -> None:
    cleanup: list[tuple[str, str, str]] = []
    try:

        @checkpointer_test(name=f"AsyncTetherSaver[{kind}]")
        async def factory() -> AsyncIterator[AsyncTetherSaver]:
            url = _url(kind, tmp_path / uuid.uuid4().hex, cleanup)
            async with tether.open_async_store(url) as store:
                yield AsyncTetherSaver(store)

        report = await validate(factory)
        failures = {name: r.failures for name, r in report.results.items() if r.failures}
        assert report.passed_all(), failures
        assert report.conformance_level() == "FULL", (report.conformance_level(), failures)
    finally:
        _clean(cleanup)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_sync_saver_full_conformance(kind: str, tmp_path: Path) -> None:
    """The sync saver (its async methods run the sync ones in a thread) on two stores."""
    cleanup: list[tuple[str, str, str]] = []
    try:

        @checkpointer_test(name=f"TetherSaver[{kind}]")
        async def factory() -> AsyncIterator[TetherSaver]:
            url = _url(kind, tmp_path / uuid.uuid4().hex, cleanup)
            with tether.open_store(url) as store:
                yield TetherSaver(store)

        report = await validate(factory)
        failures = {name: r.failures for name, r in report.results.items() if r.failures}
        assert report.passed_all(), failures
        assert report.conformance_level() == "FULL", (report.conformance_level(), failures)
    finally:
        _clean(cleanup)
