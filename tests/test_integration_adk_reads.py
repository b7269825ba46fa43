"""What ``TetherSessionService.get_session`` reads: with ``after_timestamp`` or
``num_recent_events`` it pages back from the newest events only as far as the answer needs
(counted items, the same at 10 and 2,000 events), and gives exactly what the whole history
gives, also at tied timestamps and after an event appended out of time order."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import require_module

require_module("google.adk", "adk")

from google.adk.events.event import Event  # noqa: E402
from google.adk.sessions.base_session_service import GetSessionConfig  # noqa: E402

import tether  # noqa: E402
from tether.integrations.adk import TetherSessionService  # noqa: E402
from tether.stores.base import AsyncStore  # noqa: E402


class _Counting:
    """Counts the items a store hands back through ``load`` (its load wrapped in place, so
    the service still sees the store's own type)."""

    def __init__(self, store: AsyncStore) -> None:
        self.loaded = 0
        inner = store.load

        async def load(*args: Any, **kwargs: Any) -> Any:
            session = await inner(*args, **kwargs)
            self.loaded += len(session.items)
            return session

        store.load = load  # type: ignore[method-assign]


CONFIGS: list[dict[str, Any]] = [
    {"num_recent_events": 3},
    {"num_recent_events": 0},
    {"num_recent_events": 150},
    {"num_recent_events": 100},
    {"num_recent_events": 98},
    {"after_timestamp": "newest-5"},
    {"after_timestamp": "newest-5", "num_recent_events": 2},
    {"after_timestamp": "tie"},
    {"num_recent_events": "tie"},
    {"after_timestamp": 10_000.0},
    {"after_timestamp": 0.0, "num_recent_events": 4},
]


def _config(spec: dict[str, Any], stamps: list[float]) -> GetSessionConfig:
    newest = sorted(stamps)
    values = dict(spec)
    if values.get("after_timestamp") == "newest-5":
        values["after_timestamp"] = newest[-5]
    if values.get("after_timestamp") == "tie":
        values["after_timestamp"] = 3.0  # several events share it
    if values.get("num_recent_events") == "tie":  # the cut falls among tied events
        values["num_recent_events"] = len([t for t in stamps if t >= 3.0]) - 1
    return GetSessionConfig(**values)


async def _thread(service: TetherSessionService, stamps: list[float]) -> str:
    session = await service.create_session(app_name="app", user_id="ada")
    for stamp in stamps:
        await service.append_event(session, Event(author="user", timestamp=stamp))
    return session.id


async def _events(service: Any, sid: str, config: GetSessionConfig | None) -> list[Any]:
    got = await service.get_session(app_name="app", user_id="ada", session_id=sid, config=config)
    assert got is not None
    return [(e.timestamp, e.id) for e in got.events]


def _stamps(count: int) -> list[float]:
    """Ascending, with ties: at 3.0, at the newest end, and (for a long session) a run
    across the boundary of the first page read (the newest 100 items)."""
    stamps = [1.0, 2.0, 3.0, 3.0, 3.0, *(4.0 + i for i in range(count - 7)), 9_000.0, 9_000.0]
    if count > 200:
        stamps[count - 105 : count - 95] = [stamps[count - 105]] * 10
    return stamps


@pytest.mark.parametrize("count", [10, pytest.param(2_000, marks=pytest.mark.heavy)])
async def test_windows_equal_the_whole_history(count: int) -> None:
    async with tether.open_async_store("memory://") as store:
        service = TetherSessionService(store)
        stamps = _stamps(count)
        sid = await _thread(service, stamps)
        whole = await _events(service, sid, None)
        assert len(whole) == count
        for spec in CONFIGS:
            config = _config(spec, stamps)
            want = [e for e in whole if e[0] >= (config.after_timestamp or 0.0)]
            n = config.num_recent_events
            if n is not None:
                want = want[len(want) - n :] if n else []
            assert await _events(service, sid, config) == want, spec


@pytest.mark.heavy
async def test_windows_read_the_same_at_10_and_2000_events() -> None:
    async with tether.open_async_store("memory://") as store:
        counting = _Counting(store)
        service = TetherSessionService(store)
        costs: dict[int, list[int]] = {}
        for count in (10, 2_000):
            stamps = [float(i) for i in range(count)]
            sid = await _thread(service, stamps)
            costs[count] = []
            for config in (
                GetSessionConfig(num_recent_events=3),
                GetSessionConfig(after_timestamp=stamps[-5]),
            ):
                counting.loaded = 0
                assert len(await _events(service, sid, config)) in (3, 5)
                costs[count].append(counting.loaded)
            counting.loaded = 0
            await _events(service, sid, None)
            costs[count].append(counting.loaded)  # the whole history: grows, as it must
        assert costs[10][:2] == [10, 10], costs
        assert costs[2_000][:2] == [100, 100], costs  # one page of the newest, not 2,000
        assert costs[2_000][2] == 2_000, costs


async def test_an_event_out_of_time_order_makes_windows_read_everything() -> None:
    async with tether.open_async_store("memory://") as store:
        service = TetherSessionService(store)
        stamps = [float(i) for i in range(300)] + [0.5]  # a late event with an old time
        sid = await _thread(service, stamps)
        header = await store.load(service_tid(sid), last=0)
        assert header.state["order"] == {"ordered": False, "newest": 299.0}
        got = await _events(service, sid, GetSessionConfig(num_recent_events=2))
        assert [t for t, _ in got] == [298.0, 299.0]
        got = await _events(service, sid, GetSessionConfig(after_timestamp=0.2))
        assert [t for t, _ in got][:3] == [0.5, 1.0, 2.0]


def service_tid(sid: str) -> str:
    from tether.integrations.adk import session_tid

    return session_tid("app", "ada", sid)
