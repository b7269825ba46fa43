"""A CLI command closes the store it opened: an open PostgreSQL pool left to the garbage
collector is torn down from one of its own worker threads, at some later moment (in a test
run: as an unraisable exception failing an unrelated test)."""

from __future__ import annotations

import gc
import uuid

import pytest
from click.testing import CliRunner

import tether
from tether.cli import cli

from .conftest import drop_postgres_schema, require_server, with_options


def _open_pools() -> list[object]:
    from psycopg_pool import ConnectionPool

    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, ConnectionPool) and not o.closed]


def test_a_command_closes_the_store_it_opened() -> None:
    base = require_server("postgres")
    schema = f"tether_tclc_{uuid.uuid4().hex[:16]}"
    url = with_options(base, schema=schema)
    try:
        with tether.Sessions(url) as sessions:
            sessions.create(session_id="quiet")
        before = _open_pools()
        for args in (["reviews"], ["show", "quiet"], ["ls"]):
            result = CliRunner().invoke(cli, ["--store", url, *args])
            assert result.exit_code == 0, (args, result.output, result.exception)
        assert _open_pools() == before
    finally:
        drop_postgres_schema(base, schema)


async def test_the_inspector_closes_the_store_it_opened() -> None:
    from tether.web.app import Inspector

    base = require_server("postgres")
    schema = f"tether_tclc_{uuid.uuid4().hex[:16]}"
    url = with_options(base, schema=schema)
    try:
        with tether.Sessions(url) as sessions:
            sessions.create(session_id="quiet")
        inspector = Inspector(url, token=None, read_only=True)
        assert (await inspector.sessions.get("quiet")).id == "quiet"
        store = inspector.sessions.store
        await inspector.close()
        with pytest.raises(tether.StoreError, match="store is closed"):
            await store.exists("quiet")
    finally:
        drop_postgres_schema(base, schema)
