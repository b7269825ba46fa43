"""A commit's rows: ``prepare_items`` encodes a plain item and its fields in one call, and
formats the commit's timestamp once per second (``stamp_text``); the rows and errors are those
of encoding the fields and the item apart (``row``) with the datetime's own isoformat."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from tether import KeyedItem
from tether._core import items as core_items
from tether._core.items import stamp_text
from tether._time import from_micros
from tether.errors import InvalidSessionData

NOW = 1_765_135_000_123_456


@pytest.mark.parametrize(
    "now",
    [
        0,
        1,
        999_999,
        1_000_000,
        -1,
        -1_000_001,
        NOW,
        253_402_300_799_999_999,
        -62_135_596_800_000_000,
    ],
)
def test_stamp_text_is_isoformat(now: int) -> None:
    assert stamp_text(now) == from_micros(now).isoformat(timespec="microseconds")


def test_stamp_text_across_seconds() -> None:
    rng = random.Random(7)
    moments = sorted(rng.randrange(NOW - 5_000_000, NOW + 5_000_000) for _ in range(2_000))
    for now in moments + moments[::-1]:  # the cached second moves forward and back
        assert stamp_text(now) == from_micros(now).isoformat(timespec="microseconds")


def _apart(items: list[Any], first_seq: int) -> list[tuple[int, bytes]]:
    """The rows as encoded apart: the fields' JSON, then the item's, joined."""
    stamp = from_micros(NOW).isoformat(timespec="microseconds")
    rows = []
    for offset, entry in enumerate(items):
        key, item = (entry.key, entry.item) if isinstance(entry, KeyedItem) else (None, entry)
        own = item.get("timestamp")
        fields = core_items.row_fields(
            first_seq + offset, own if isinstance(own, str) else stamp, key
        )
        rows.append(
            (first_seq + offset, core_items.join_row(orjson.dumps(fields), orjson.dumps(item)))
        )
    return rows


@pytest.mark.parametrize(
    "items",
    [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a" * 800}],
        [
            {
                "role": "u",
                "content": [{"type": "text", "text": "x", "n": 1.5, "ok": True, "z": None}],
            }
        ],
        [{"role": "u", "timestamp": "imported"}, {"role": "a", "timestamp": 5}],
        [KeyedItem("k1", {"role": "a"}), {"role": "b"}],
        [{"tuple": (1, 2)}],  # not plain: the full check encodes it
    ],
)
def test_rows_are_those_encoded_apart(items: list[Any]) -> None:
    encoded = core_items.prepare_items(items, 7, NOW)
    assert list(encoded) == _apart(items, 7)


@pytest.mark.parametrize("item", [{"content": "\ud800"}, {"n": 2**70}, {"x": float("nan")}])
def test_a_bad_item_is_refused_as_when_encoded_apart(item: dict[str, Any]) -> None:
    with pytest.raises(InvalidSessionData) as apart:
        core_items.row(core_items.row_fields(2, "t", None), item, 1)
    with pytest.raises(InvalidSessionData) as together:
        core_items.prepare_items([{"role": "ok"}, item], 1, NOW)
    assert str(together.value) == str(apart.value)
    assert "history item 1" in str(together.value)


def test_a_bad_own_timestamp_is_refused() -> None:
    with pytest.raises(InvalidSessionData):
        core_items.prepare_items([{"role": "u", "timestamp": "\ud800"}], 1, NOW)


def test_a_plain_item_is_one_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    class Counting:
        @staticmethod
        def dumps(value: object, *args: Any, **kwargs: Any) -> bytes:
            calls.append(value)
            return orjson.dumps(value, *args, **kwargs)

    monkeypatch.setattr(core_items, "orjson", Counting)
    items: list[dict[str, Any] | KeyedItem] = [
        {"role": "user", "content": "hi"},
        KeyedItem("k", {"role": "assistant"}),
    ]
    encoded = core_items.prepare_items(items, 3, NOW)
    assert len(calls) == 2  # one call per item: its fields and the item together
    assert list(encoded) == _apart(items, 3)
