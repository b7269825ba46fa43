"""How a loaded Session is built (``_core.readable_session`` / ``make_session`` /
``construct_trusted``): the faster paths give exactly what the plain ones gave, and the
pydantic internals they set directly still mean what pydantic means by them."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import tether
from tether import Session, SessionHeader, _core
from tether._time import from_micros
from tether.errors import CorruptSession
from tether.models import SessionStatus, StoredItem

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _reference_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """``fields_from_doc`` as it was written before it was made faster."""
    fields = dict(doc)
    fields.pop("lease_token", None)
    fields["status"] = SessionStatus(doc["status"])
    for name in ("created_at", "updated_at", "expires_at", "lease_expires_at"):
        value = doc.get(name)
        fields[name] = None if value is None else _EPOCH + timedelta(microseconds=value)
    if "lease_fence" in fields:
        fields["lease_fence"] = fields.pop("lease_fence")
    return fields


def _doc(**changes: Any) -> dict[str, Any]:
    doc = _core.new_session_doc(
        Session(owner="o", agent="a", metadata={"k": [1]}, state={"s": 1}), 1_700_000_000_000_000
    )
    doc.update(changes)
    return doc


@pytest.mark.parametrize("status", [s.value for s in SessionStatus])
@pytest.mark.parametrize(
    "times",
    [
        {},
        {"expires_at": 1_900_000_000_000_001, "lease_expires_at": 1_800_000_000_000_000},
        {"created_at": 0, "updated_at": -1},  # the epoch and before it
        {"updated_at": 253_402_300_799_999_999},  # the last microsecond a datetime holds
    ],
)
def test_fields_from_doc_gives_what_it_gave(status: str, times: dict[str, int]) -> None:
    doc = _doc(status=status, lease_owner="w", lease_token="secret", lease_fence=4, **times)
    fields = _core.fields_from_doc(doc)
    expected = _reference_fields(doc)
    assert list(fields) == list(expected)  # the models' field order
    assert fields == expected
    assert {name: type(value) for name, value in fields.items()} == {
        name: type(value) for name, value in expected.items()
    }
    assert type(fields["status"]) is SessionStatus
    assert "lease_token" not in fields


def test_a_status_member_is_read_as_itself() -> None:
    fields = _core.fields_from_doc(_doc(status=SessionStatus.WAITING))
    assert fields["status"] is SessionStatus.WAITING


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"status": "bogus"}, ValueError),
        ({"status": ["running"]}, ValueError),  # unhashable: the Enum's own error
        ({"created_at": "yesterday"}, TypeError),
        ({"updated_at": [1]}, TypeError),  # unhashable: never looked up in the cache
        ({"expires_at": 10**30}, OverflowError),
    ],
)
def test_an_unreadable_header_raises_what_it_raised(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    doc = _doc(**changes)
    with pytest.raises(error) as new:
        _core.fields_from_doc(doc)
    with pytest.raises(error) as old:
        _reference_fields(doc)
    assert str(new.value) == str(old.value)
    with pytest.raises(CorruptSession, match="its header cannot be read"):
        _core.readable_session(doc, [])


def test_times_are_equal_values_whether_cached_or_not() -> None:
    first = _core.fields_from_doc(_doc(updated_at=1_750_000_000_123_456))["updated_at"]
    again = _core.fields_from_doc(_doc(updated_at=1_750_000_000_123_456))["updated_at"]
    assert first == again == from_micros(1_750_000_000_123_456)
    assert first.tzinfo is timezone.utc
    assert type(first) is datetime
    assert from_micros(-1) == _EPOCH - timedelta(microseconds=1)


def _reference_view(record: dict[str, Any]) -> dict[str, Any]:
    if "role" in record or not isinstance(record.get("item"), dict):
        item = {k: v for k, v in record.items() if k not in ("seq", "timestamp")}
    else:
        item = record["item"]
    return {**item, "seq": record["seq"], "timestamp": record["timestamp"]}


def test_history_view_gives_what_it_gave() -> None:
    records: list[dict[str, Any]] = [
        {"seq": 1, "timestamp": "t1", "item": {"role": "user", "content": "hi"}},
        {"seq": 2, "timestamp": "t2", "key": "k", "item": {"type": "call", "timestamp": "own"}},
        {"seq": 3, "timestamp": "t3", "item": {"seq": "its own", "z": 1, "a": 2}},
        {"seq": 4, "timestamp": "t4", "role": "assistant", "content": "legacy"},
        {"seq": 5, "timestamp": "t5", "item": OrderedDict(b=1, a=2)},
    ]
    history = _core.history_view("s", records)
    expected = [_reference_view(record) for record in records]
    assert history == expected
    for got, want in zip(history, expected, strict=True):
        assert list(got) == list(want)  # same keys in the same order
        assert type(got) is dict
    assert history[0] is not records[0]["item"]  # copies: the caller may change them
    history[0]["content"] = "changed"
    assert records[0]["item"]["content"] == "hi"


def test_history_view_of_an_unreadable_row_is_a_corrupt_session() -> None:
    for bad in ({"seq": 1, "item": {}}, None, "text"):
        with pytest.raises(CorruptSession, match="a history item cannot be read"):
            _core.history_view("s", [bad])  # type: ignore[list-item]


def test_item_views_in_one_pass_give_both_views_as_they_were() -> None:
    records: list[dict[str, Any]] = [
        {"seq": 1, "timestamp": "t1", "item": {"role": "user", "content": "hi"}},
        {"seq": 2, "timestamp": "t2", "key": "k", "item": {"type": "call", "timestamp": "own"}},
        {"seq": 3, "timestamp": "t3", "item": {"seq": "its own", "z": 1, "a": 2}},
        {"seq": 4, "timestamp": "t4", "role": "assistant", "content": "legacy"},
        {"seq": 5, "timestamp": "t5", "item": OrderedDict(b=1, a=2)},
    ]
    history, items = _core.item_views("s", records)
    assert history == [_reference_view(record) for record in records]
    assert [list(entry) for entry in history] == [list(_reference_view(r)) for r in records]
    assert all(type(entry) is dict for entry in history)
    assert items == tether.models.stored_from_records("s", records)
    assert items[1].key == "k"
    assert items[3] == StoredItem(4, "t4", None, {"role": "assistant", "content": "legacy"})
    assert history[0] is not items[0].item  # the history entry is a copy: editing it ...
    history[0]["content"] = "changed"
    assert items[0].item["content"] == "hi"  # ... leaves the stored item as it was
    for bad in ({"seq": 1, "item": {}}, None, "text"):
        with pytest.raises(CorruptSession, match="a history item cannot be read"):
            _core.item_views("s", [bad])  # type: ignore[list-item]


def test_items_views_give_what_they_gave() -> None:
    rows = [{"seq": 1, "timestamp": "t", "key": "k", "item": {"role": "user", "x": [1]}}]
    session = _core.make_session(_doc(last_seq=1, history_len=1), rows)
    assert session.items == [StoredItem(1, "t", "k", {"role": "user", "x": [1]})]
    session.history[0]["x"] = [2]  # an edit in place is seen: the item follows the history
    assert session.items[0].item == {"role": "user", "x": [2]}
    assert session.items[0].key == "k"


def test_make_session_sets_its_rows_as_pydantic_would() -> None:
    rows = [{"seq": 1, "timestamp": "t", "item": {"role": "user"}}]
    doc = _doc(last_seq=1, history_len=1)
    fast = _core.make_session(doc, rows)
    slow = Session.model_construct(**_core.fields_from_doc(doc), history=[])
    slow._records = rows
    assert fast.__pydantic_private__ is not None
    assert slow.__pydantic_private__ is not None
    assert list(fast.__pydantic_private__) == list(slow.__pydantic_private__)
    assert fast._records is rows  # read back through pydantic's own attribute access
    assert fast.stored_schema_version == fast.schema_version
    assert fast.items == [StoredItem(1, "t", None, {"role": "user"})]
    assert fast._records is None  # decoded once, then dropped, as before


def test_construct_trusted_instances_share_no_mutable_state() -> None:
    one = _core.make_session(_doc(), [])
    two = _core.make_session(_doc(), [])
    assert one.__pydantic_fields_set__ == set(Session.model_fields)
    assert one.__pydantic_fields_set__ is not two.__pydantic_fields_set__
    assert one.__pydantic_private__ is not two.__pydantic_private__
    one._stored_schema_version = 1
    assert two.stored_schema_version == two.schema_version
    one.owner = "changed"  # validate_assignment still runs on a constructed instance
    assert two.owner == "o"
    with pytest.raises(ValueError, match="status"):
        one.status = "bogus"  # type: ignore[assignment]


def test_construct_trusted_private_on_both_paths() -> None:
    rows: list[dict[str, Any]] = []
    partial = _core.construct_trusted(Session, {"id": "only-an-id"}, {"_records": rows})
    assert partial._records is rows
    assert partial.version == 0
    with pytest.raises(TypeError, match="no private attribute"):
        _core.construct_trusted(
            Session, _core.fields_from_doc(_doc()) | {"history": []}, {"_nope": 1}
        )
    with pytest.raises(TypeError, match="no private attribute"):
        _core.construct_trusted(SessionHeader, _core.fields_from_doc(_doc()), {"_records": []})


def test_an_older_schema_is_read_and_remembered() -> None:
    doc = _doc(schema_version=2)
    session = _core.readable_session(doc, [])
    assert session.schema_version == tether.schema.schema.current
    assert session.stored_schema_version == 2


def test_trusted_json_fields_are_deep_copies_of_the_json_fields() -> None:
    header = Session(metadata={"k": [1]}, state={"s": {"n": 1}}, options={"model": "m"})
    copied = _core.trusted_json_fields(header)
    assert tuple(copied) == _core.JSON_FIELDS  # every JSON field, in the models' order
    assert copied == {name: getattr(header, name) for name in _core.JSON_FIELDS}
    copied["metadata"]["k"].append(2)
    copied["state"]["s"]["n"] = 2
    assert header.metadata == {"k": [1]}
    assert header.state == {"s": {"n": 1}}
    with pytest.raises(TypeError):  # not JSON: refused, never copied as something else
        _core.trusted_json_fields(Session.model_construct(metadata={"k": object()}))
