"""A fork holds the parent's items exactly (same keys, same item objects) on every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import KeyedItem, Session
from tether.stores.kv_memory import DictKVBackend
from tether.stores.kv_sync import KVStore

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "postgres", "kv-memory"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tether.Sessions]:
    kind = request.param
    cleanup = None
    if kind == "kv-memory":
        store: object = KVStore(DictKVBackend())
    else:
        if kind == "memory":
            url = "memory://"
        elif kind == "file":
            url = f"file:{tmp_path / 'sessions'}"
        elif kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'sessions.db'}"
        elif kind == "redis":
            base, namespace = require_server("redis"), f"t{uuid.uuid4().hex}"
            url = with_options(base, namespace=namespace)
            cleanup = lambda: wipe_redis_namespace(base, namespace)  # noqa: E731
        else:
            base, schema = require_server("postgres"), f"tether_t_{uuid.uuid4().hex}"
            url = with_options(base, schema=schema)
            cleanup = lambda: drop_postgres_schema(base, schema)  # noqa: E731
        store = tether.open_store(url)
    with tether.Sessions(store) as opened:  # type: ignore[arg-type]
        yield opened
    if cleanup is not None:
        cleanup()


ITEMS: list[Mapping[str, Any] | KeyedItem] = [
    KeyedItem("evt-1", {"type": "message", "text": "hi"}),
    {"role": "user", "content": "plain"},
    KeyedItem("evt-2", {"type": "event", "seq": 99, "timestamp": 1733500000.5}),  # its own
    {"role": "assistant", "content": "imported", "timestamp": "2024-01-02T03:04:05.000006+00:00"},
    KeyedItem("evt-3", {"type": "after the fork point"}),
]


def test_a_fork_keeps_keys_and_exact_items_on_every_store(sessions: tether.Sessions) -> None:
    store = sessions.store
    store.create(Session(id="parent", history=[]))
    store.append("parent", ITEMS)
    parent = store.load("parent")
    child = sessions.fork("parent", "child", at=4)
    assert child.header == store.load("child").header  # the returned child is the stored one
    for view in (child, store.load("child")):
        assert [(i.seq, i.key, i.item) for i in view.items] == [
            (i.seq, i.key, i.item) for i in parent.items[:4]
        ]
        # nothing of tether's merged into the items (no "timestamp" gained, own seq kept)
        assert view.items[1].item == {"role": "user", "content": "plain"}
        assert view.items[2].item == {"type": "event", "seq": 99, "timestamp": 1733500000.5}
        assert view.items[3].timestamp == "2024-01-02T03:04:05.000006+00:00"
        # the parent's commit times are kept: shared rows (fork_session) or restore()
        assert [i.timestamp for i in view.items] == [i.timestamp for i in parent.items[:4]]
    assert set(store.items_by_key("child", ["evt-1", "evt-2", "evt-3"])) == {"evt-1", "evt-2"}
    store.append("child", [KeyedItem("evt-3", {"type": "the child's own"})])  # a free key there
