"""The history ``Sessions`` hands out: shared with its cache, copied only when a caller changes
it, and never changing what the cache or another caller holds."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import AppendMessages, Session, Sessions
from tether.models import Prefix, SharedHistory
from tether.stores.memory import MemoryStore


def _msg(n: int) -> dict[str, object]:
    return {"role": "user", "content": f"m{n}"}


@pytest.fixture(params=["memory", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sessions]:
    store = (
        MemoryStore()
        if request.param == "memory"
        else tether.open_store(f"sqlite:///{tmp_path / 'h.db'}")
    )
    with Sessions(store) as made:
        yield made
    store.close()


def _contents(history: object) -> list[object]:
    return [entry["content"] for entry in history]  # type: ignore[attr-defined]


def test_a_caller_changing_its_history_changes_neither_the_cache_nor_other_callers(
    sessions: Sessions,
) -> None:
    sid = sessions.create(history=[_msg(0), _msg(1)]).id
    first = sessions.get(sid)
    second = sessions.get(sid)
    assert isinstance(first.history, SharedHistory)
    first.history.append({"role": "user", "content": "mine"})
    first.history[0] = {"role": "user", "content": "replaced"}
    del first.history[1]
    assert _contents(first.history) == ["replaced", "mine"]
    assert _contents(second.history) == ["m0", "m1"]
    assert _contents(sessions.get(sid).history) == ["m0", "m1"]
    # the cache goes on extending its own list: neither caller sees the new items
    sessions.execute(sid, AppendMessages(_msg(2)))
    assert _contents(second.history) == ["m0", "m1"]
    assert _contents(first.history) == ["replaced", "mine"]
    assert _contents(sessions.get(sid).history) == ["m0", "m1", "m2"]
    assert [entry["seq"] for entry in sessions.get(sid).history] == [1, 2, 3]


def test_a_session_returned_earlier_keeps_its_items_as_the_cache_grows(
    sessions: Sessions,
) -> None:
    sid = sessions.create(history=[_msg(0)]).id
    held = [sessions.execute(sid, AppendMessages(_msg(n))) for n in range(1, 6)]
    for turn, session in enumerate(held, 1):
        assert len(session.history) == turn + 1 == session.history_len
        assert [item.item["content"] for item in session.items] == [
            f"m{n}" for n in range(turn + 1)
        ]
        assert session.history[-1]["seq"] == session.last_seq


def test_a_session_handed_out_then_given_back_to_a_store(sessions: Sessions) -> None:
    sid = sessions.create(history=[_msg(0), _msg(1)]).id
    sessions.execute(sid, AppendMessages(_msg(2)))
    loaded = sessions.get(sid)
    assert loaded.model_dump()["history"] == list(loaded.history)
    assert json.loads(loaded.model_dump_json())["history"][2]["content"] == "m2"
    rebuilt = Session(history=loaded.history)
    assert type(rebuilt.history) is list
    assert _contents(rebuilt.history) == ["m0", "m1", "m2"]
    other = MemoryStore()
    other.restore(loaded)  # a whole history handed out is a valid export
    assert _contents(other.load(sid).history) == ["m0", "m1", "m2"]
    assert other.load(sid) == loaded


def test_shared_history_reads_like_a_list() -> None:
    base = [{"n": n} for n in range(5)]
    view = SharedHistory(base, 3)
    base.append({"n": 5})  # the list it shares grows: the view does not
    assert len(view) == 3
    assert list(view) == base[:3]
    assert view == base[:3]
    assert base[:3] == view
    assert view != base
    assert view[-1] == {"n": 2}
    assert view[1:] == [{"n": 1}, {"n": 2}]
    assert view[::-1][0] == {"n": 2}
    with pytest.raises(IndexError):
        _ = view[3]
    assert view + [{"n": 9}] == [*base[:3], {"n": 9}]  # noqa: RUF005  # __add__ itself
    assert [{"n": 9}] + view == [{"n": 9}, *base[:3]]  # noqa: RUF005  # __radd__ itself
    assert {"n": 1} in view
    assert view.index({"n": 2}) == 2
    assert copy.copy(view) == base[:3]
    copied: object = copy.deepcopy(view)
    assert type(copied) is list
    assert pickle.loads(pickle.dumps(view)) == base[:3]
    assert repr(view) == repr(base[:3])
    view.extend([{"n": 7}])
    view.sort(key=lambda entry: -entry["n"])
    assert [entry["n"] for entry in view] == [7, 2, 1, 0]
    assert [entry["n"] for entry in base] == [0, 1, 2, 3, 4, 5]  # never written through
    items = Prefix([1, 2, 3], 2)
    assert list(items) == [1, 2]
    assert items[-1] == 2
    assert items == [1, 2]


def test_cached_turns_copy_nothing_per_turn(sessions: Sessions) -> None:
    """The cache's list is extended in place turn after turn, and every session handed out
    shares it (a copy per turn is what made 100,000 items cost 20x the store's turn)."""
    sid = sessions.create(history=[_msg(n) for n in range(50)]).id
    sessions.execute(sid, AppendMessages(_msg(50)))  # the first refresh copies, once
    before = sessions.get(sid).history
    for n in range(51, 55):
        sessions.execute(sid, AppendMessages(_msg(n)))
    after = sessions.get(sid).history
    assert isinstance(before, SharedHistory)
    assert isinstance(after, SharedHistory)
    assert before._base is after._base  # one list, grown in place
    assert len(before) == 51
    assert len(after) == 55


def test_a_session_recreated_under_the_same_id_is_never_merged_with_the_old(
    tmp_path: Path,
) -> None:
    store = tether.open_store(f"sqlite:///{tmp_path / 'r.db'}")
    with Sessions(store) as sessions:
        sid = sessions.create(history=[_msg(0), _msg(1)]).id
        sessions.get(sid)  # cached: seqs 1-2
        other = Sessions(store, cache_size=0)
        other.delete(sid)
        other.create(session_id=sid, history=[_msg(7), _msg(8), _msg(9)])
        assert _contents(sessions.get(sid).history) == ["m7", "m8", "m9"]
    store.close()


def test_an_injected_session_factory_builds_what_create_stores(tmp_path: Path) -> None:
    made: list[dict[str, object]] = []

    def tenant_sessions(**fields: Any) -> Session:
        made.append(fields)
        metadata = {"tenant": "acme", **fields.pop("metadata")}
        return Session(**fields, metadata=metadata, status=tether.SessionStatus.RUNNING)

    with Sessions(MemoryStore(), session_factory=tenant_sessions) as sessions:
        created = sessions.create("support", session_id="s1", metadata={"channel": "web"})
        assert created.metadata == {"tenant": "acme", "channel": "web"}
        assert created.status == tether.SessionStatus.RUNNING
        assert sessions.get("s1").metadata == created.metadata
        assert made[0]["id"] == "s1"
        assert made[0]["agent"] == "support"
        # fork copies the parent: the factory builds new sessions only
        assert sessions.fork("s1", "s2").metadata == created.metadata
        assert len(made) == 1

    def not_a_session(**_: Any) -> Any:
        return {"not": "a session"}

    with (
        Sessions(MemoryStore(), session_factory=not_a_session) as bad,
        pytest.raises(tether.InvalidRequest, match=r"not a tether\.Session"),
    ):
        bad.create()
    with Sessions(MemoryStore()) as default:  # the default: create's arguments as given
        assert default.create(owner="ada").owner == "ada"
