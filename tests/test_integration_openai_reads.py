"""A TetherSession's first read (a new object per request): every store gives the SDK exactly
the items it was given, in order, tether's own events left out, rows of an older tether
included; and the object it made can keep reading only what is new."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import require_module

require_module("agents", "openai-agents")

import tether  # noqa: E402
from tether.agent import stored  # noqa: E402
from tether.integrations._openai_agents_items import _sdk_items  # noqa: E402
from tether.integrations.openai_agents import TetherSession  # noqa: E402

STORES = ["memory", "sqlite", "redis", "postgres"]

# items as the SDK shapes them, some with keys tether itself uses in its rows
ITEMS: list[Any] = [
    {"role": "user", "content": "Where is order A1?"},
    {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "shipped"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It shipped.", "annotations": []}],
    },
    {"item": {"nested": True}, "seq": "not tether's", "timestamp": 3},
]
EVENT = {"role": stored.EVENT_ROLE, "type": "review_answered", "decision": "approved"}


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_a_first_read_is_every_item_as_given_without_tether_events(store_url: str) -> None:
    store = tether.open_async_store(store_url)
    try:
        await TetherSession("chat", store).add_items(ITEMS[:2])
        await store.append(TetherSession("chat", store).tether_id, [EVENT])
        await TetherSession("chat", store).add_items(ITEMS[2:])
        for _ in range(2):  # a new object per request: each a first read
            assert await TetherSession("chat", store).get_items() == ITEMS
        assert await TetherSession("chat", store).get_items(limit=2) == ITEMS[-2:]
        assert await TetherSession("chat", store, cache=False).get_items(limit=4) == ITEMS[1:]
        # the object that read once then reads only what came after, and joins it right
        session = TetherSession("chat", store)
        assert await session.get_items() == ITEMS
        await session.add_items([{"role": "user", "content": "thanks"}])
        await store.append(session.tether_id, [EVENT])
        assert await session.get_items() == [*ITEMS, {"role": "user", "content": "thanks"}]
    finally:
        await store.close()


async def test_rows_of_an_older_tether_are_read_the_general_way(tmp_path: Any) -> None:
    """A row stored before schema 3 (the item with seq and timestamp merged in) among the
    decoded rows: the one pass gives way to the general reading, with the same result."""
    store = tether.open_async_store(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        session = TetherSession("chat", store)
        await session.add_items(ITEMS[:4])
        await store.append(session.tether_id, [EVENT])
        loaded = await store.load(session.tether_id)
        records = loaded._records
        assert records is not None
        assert _sdk_items(loaded) == ITEMS[:4]
        old = records[0]
        # as tether wrote it before schema 3: the item itself, seq and timestamp merged in
        records[0] = {**old["item"], "seq": old["seq"], "timestamp": old["timestamp"]}
        assert _sdk_items(loaded) == ITEMS[:4]
        records[0] = {"seq": old["seq"], "timestamp": old["timestamp"], "item": "not a dict"}
        loaded._exact = None
        loaded._records = records
        legacy = _sdk_items(loaded)  # read as the store's own StoredItem would read it
        assert legacy[1:] == ITEMS[1:4]
        assert legacy[0] == {"item": "not a dict"}
    finally:
        await store.close()
