"""``Session.items`` builds the loaded history's views once, and still follows every edit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tether import KeyedItem, Session, StoredItem
from tether.stores.memory import MemoryStore


def _loaded() -> Session:
    with MemoryStore() as store:
        store.create(Session(id="s"))
        store.commit("s", 1, append=[KeyedItem("k", {"n": 1}), {"n": 2}, {"n": 3}])
        return store.load("s")


class _Counting(Mapping[str, Any]):
    """An item that counts how often something reads all of it (``{**item}`` does)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data, self.reads = data, 0

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self) -> Any:
        self.reads += 1
        return self.data.keys()


def test_an_unchanged_history_costs_no_rebuild_per_access() -> None:
    session = _loaded()
    counting = [_Counting(dict(s.item)) for s in session.items]
    session._items = [
        StoredItem(s.seq, s.timestamp, s.key, c)  # type: ignore[arg-type]
        for s, c in zip(session.items, counting, strict=True)
    ]
    for _ in range(5):
        assert [s.key for s in session.items] == ["k", None, None]
    assert [c.reads for c in counting] == [1, 1, 1]  # once, not once per access


def test_items_follow_every_edit_after_they_were_read() -> None:
    session = _loaded()
    first = session.items
    assert session.items == first
    assert session.items is not first
    session.history[0]["n"] = 10  # in place, after a read
    assert [(s.key, s.item) for s in session.items] == [
        ("k", {"n": 10}),
        (None, {"n": 2}),
        (None, {"n": 3}),
    ]
    session.history[0]["n"] = 1
    assert session.items == first  # edited back: the stored items again
    session.history.append({"n": 4, "seq": 4, "timestamp": "2024-01-01T00:00:00.000000+00:00"})
    assert [s.item for s in session.items][-1] == {"n": 4}
    session.history = session.history[1:]
    assert [(s.seq, s.key) for s in session.items] == [(2, None), (3, None), (4, None)]


def test_reading_items_does_not_change_equality() -> None:
    a, b = _loaded(), _loaded()
    b._items = a._items
    b.history = [dict(entry) for entry in a.history]
    b.created_at, b.updated_at = a.created_at, a.updated_at
    assert a == b
    assert a.items
    assert a == b
    assert b == a
