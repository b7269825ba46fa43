"""TetherSession keeps the items it read: the next get_items reads only what came after them,
and never returns what someone else's write changed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.conftest import require_module

require_module("agents", "openai-agents")

import tether  # noqa: E402
from tether.integrations.openai_agents import TetherSession  # noqa: E402


def _user(text: str) -> Any:
    return {"role": "user", "content": text}


def _texts(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


@pytest.fixture
def store() -> tether.AsyncStore:
    return tether.open_async_store("memory://")


def _count_loads(store: tether.AsyncStore) -> Counter[str]:
    """How each load of ``store`` was asked for: "whole", "after", "last" (patched instance)."""
    counts: Counter[str] = Counter()
    load = store.load

    async def counted(session_id: str, **window: Any) -> tether.Session:
        if window.get("after") is not None:
            counts["after"] += 1
        else:
            counts["whole" if window.get("last") is None else "last"] += 1
        return await load(session_id, **window)

    store.load = counted  # type: ignore[method-assign]
    return counts


async def test_a_turn_reads_only_what_is_new(store: tether.AsyncStore) -> None:
    session = TetherSession("chat", store)
    await session.add_items([_user(f"m{n}") for n in range(6)])
    assert _texts(await session.get_items()) == [f"m{n}" for n in range(6)]
    loads = _count_loads(store)
    for turn in range(3):
        await session.add_items([_user(f"u{turn}"), _user(f"a{turn}")])
        got = await session.get_items()
        assert _texts(got)[-2:] == [f"u{turn}", f"a{turn}"]
        assert len(got) == 8 + 2 * turn
    assert loads == {"after": 3}  # never the whole history again
    assert _texts(await session.get_items(limit=2)) == ["u2", "a2"]
    assert _texts(await TetherSession("chat", store).get_items()) == _texts(
        await session.get_items()
    )


async def test_a_runner_turn_appends_twice_and_still_reads_only_what_is_new(
    store: tether.AsyncStore,
) -> None:
    # Runner.run saves the input, then the model's output: two appends before the next read
    session = TetherSession("chat", store)
    await session.add_items([_user("m0"), _user("m1")])
    assert _texts(await session.get_items()) == ["m0", "m1"]
    loads = _count_loads(store)
    for turn in range(3):
        await session.add_items([_user(f"u{turn}")])
        await session.add_items([_user(f"a{turn}"), _user(f"b{turn}")])
        got = await session.get_items()
        assert _texts(got)[-3:] == [f"u{turn}", f"a{turn}", f"b{turn}"]
        assert len(got) == 2 + 3 * (turn + 1)
    assert loads == {"after": 3}
    assert _texts(await TetherSession("chat", store).get_items()) == _texts(
        await session.get_items()
    )


async def test_another_writer_between_my_two_appends_means_a_whole_read(
    store: tether.AsyncStore,
) -> None:
    mine, theirs = TetherSession("chat", store), TetherSession("chat", store)
    await mine.add_items([_user("a")])
    assert _texts(await mine.get_items()) == ["a"]
    loads = _count_loads(store)
    await mine.add_items([_user("b")])
    await theirs.add_items([_user("X")])
    await mine.add_items([_user("c")])
    assert _texts(await mine.get_items()) == ["a", "b", "X", "c"]
    assert loads["whole"] == 1
    # their pop and add between my appends: the seqs after mine are not mine
    await mine.add_items([_user("d")])
    assert await theirs.pop_item() is not None
    await theirs.add_items([_user("Y")])
    await mine.add_items([_user("e")])
    assert _texts(await mine.get_items()) == _texts(await TetherSession("chat", store).get_items())


async def test_another_writer_means_a_whole_read(store: tether.AsyncStore) -> None:
    mine, theirs = TetherSession("chat", store), TetherSession("chat", store)
    await mine.add_items([_user("a"), _user("b"), _user("c")])
    assert _texts(await mine.get_items()) == ["a", "b", "c"]
    # pop then add: the same seqs, other items (what came after my last seq is nothing)
    assert _texts([await theirs.pop_item(), await theirs.pop_item()]) == ["c", "b"]
    await theirs.add_items([_user("B"), _user("C")])
    assert _texts(await mine.get_items()) == ["a", "B", "C"]
    # their write between my read and my append: my append is not the only write
    await theirs.add_items([_user("D")])
    await mine.add_items([_user("E")])
    assert _texts(await mine.get_items()) == ["a", "B", "C", "D", "E"]
    await theirs.clear_session()
    assert await mine.get_items() == []
    await mine.add_items([_user("F")])
    assert _texts(await mine.get_items()) == ["F"]


async def test_a_session_deleted_and_created_again(store: tether.AsyncStore) -> None:
    session = TetherSession("chat", store)
    await session.add_items([_user("old")])
    assert _texts(await session.get_items()) == ["old"]
    await store.delete(session.tether_id)
    assert await session.get_items() == []
    await TetherSession("chat", store).add_items([_user("new")])
    assert _texts(await session.get_items()) == ["new"]


async def test_without_the_cache_every_call_reads_and_returns_new_dicts(
    store: tether.AsyncStore,
) -> None:
    session = TetherSession("chat", store, cache=False)
    await session.add_items([_user("a")])
    first: list[Any] = await session.get_items()
    first[0]["content"] = "changed by the caller"
    loads = _count_loads(store)
    assert _texts(await session.get_items()) == ["a"]
    assert loads == {"whole": 1}
