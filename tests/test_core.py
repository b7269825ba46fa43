"""The no-I/O rules in ``tether._core`` and ``tether.schema``, exercised without any store."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import tether
from tether import (
    CorruptSession,
    InvalidRequest,
    InvalidSessionData,
    InvalidSessionId,
    Session,
    SessionHeader,
    SessionStatus,
    TetherError,
    UnsupportedSchemaVersion,
    _core,
    _json,
)
from tether._time import from_micros, to_micros
from tether.schema import CURRENT_SCHEMA_VERSION, SchemaRegistry, schema

UTC = dt.timezone.utc
T0 = to_micros(dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
CHANGEABLE = ["agent", "expires_at", "metadata", "options", "owner", "state", "status"]


def make_doc(session_id: str = "s1", updated_at: int = T0, **fields: Any) -> _core.Doc:
    """A complete header document, as a store would hold it."""
    doc: _core.Doc = {
        "id": session_id,
        "owner": None,
        "agent": None,
        "status": "new",
        "metadata": {},
        "state": {},
        "options": {},
        "parent_id": None,
        "fork_seq": None,
        "version": 1,
        "schema_version": CURRENT_SCHEMA_VERSION,
        "created_at": T0,
        "updated_at": updated_at,
        "expires_at": None,
        "last_seq": 0,
        "history_len": 0,
    }
    unknown = set(fields) - set(doc)
    assert not unknown, unknown
    doc.update(fields)
    return doc


# --- normalize_changes -------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [None, {}])
def test_normalize_changes_empty(changes: dict[str, Any] | None) -> None:
    assert _core.normalize_changes(changes) == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"owner": "ada"}, {"owner": "ada"}),
        ({"owner": None}, {"owner": None}),
        ({"agent": "support"}, {"agent": "support"}),
        ({"agent": None}, {"agent": None}),
        ({"status": SessionStatus.RUNNING}, {"status": "running"}),
        ({"status": "waiting"}, {"status": "waiting"}),
        ({"status": SessionStatus.ARCHIVED}, {"status": "archived"}),
        (
            {"expires_at": dt.datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC)},
            {"expires_at": T0 + 7},
        ),
        (
            # another offset, the same instant
            {
                "expires_at": dt.datetime(
                    2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))
                )
            },
            {"expires_at": T0},
        ),
        ({"expires_at": None}, {"expires_at": None}),
        ({"metadata": {"a": [1, {"b": None}]}}, {"metadata": {"a": [1, {"b": None}]}}),
        ({"state": {}}, {"state": {}}),
        ({"options": {"model": "m", "t": (1, 2)}}, {"options": {"model": "m", "t": [1, 2]}}),
    ],
)
def test_normalize_changes_accepts_each_field(
    changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = _core.normalize_changes(changes)
    assert out == expected
    if "status" in out:
        assert type(out["status"]) is str
    if out.get("expires_at") is not None:
        assert type(out["expires_at"]) is int


def test_normalize_changes_all_fields_at_once() -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=UTC)
    out = _core.normalize_changes(
        {
            "owner": "o",
            "agent": "a",
            "status": SessionStatus.FINISHED,
            "expires_at": expires,
            "metadata": {"m": 1},
            "state": {"s": 2},
            "options": {"o": 3},
        }
    )
    assert sorted(out) == CHANGEABLE
    assert out["status"] == "finished"
    assert from_micros(out["expires_at"]) == expires


@pytest.mark.parametrize("name", ["version", "history", "id", "last_seq", "created_at", "bogus"])
def test_normalize_changes_rejects_unknown_fields(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _core.normalize_changes({name: 1, "owner": "ok"})
    message = str(info.value)
    assert repr(name) in message
    assert str(CHANGEABLE) in message


def test_normalize_changes_rejects_naive_expires_at() -> None:
    with pytest.raises(InvalidRequest, match=r"expires_at.*naive"):
        _core.normalize_changes({"expires_at": dt.datetime(2030, 1, 1)})


@pytest.mark.parametrize("value", [T0, "2030-01-01T00:00:00+00:00", dt.date(2030, 1, 1)])
def test_normalize_changes_rejects_non_datetime_expires_at(value: object) -> None:
    with pytest.raises(InvalidRequest, match="expires_at"):
        _core.normalize_changes({"expires_at": value})


@pytest.mark.parametrize(
    "changes",
    [{"owner": 5}, {"owner": b"ada"}, {"agent": ["x"]}, {"agent": 1.0}],
)
def test_normalize_changes_rejects_non_str_owner_and_agent(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="must be a str or None"):
        _core.normalize_changes(changes)


@pytest.mark.parametrize("status", ["bogus", "NEW", None, 1])
def test_normalize_changes_rejects_unknown_status(status: object) -> None:
    with pytest.raises(InvalidRequest, match="is not one of"):
        _core.normalize_changes({"status": status})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"metadata": None}, "metadata must be a JSON object"),
        ({"state": [1, 2]}, "state must be a JSON object"),
        ({"options": "x"}, "options must be a JSON object"),
        ({"state": {"k": float("nan")}}, "state.k is NaN"),
        ({"metadata": {"when": dt.datetime(2024, 1, 1, tzinfo=UTC)}}, "metadata is not plain"),
    ],
)
def test_normalize_changes_rejects_non_json_objects(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSessionData, match=re.escape(fragment)):
        _core.normalize_changes(changes)


def test_normalize_changes_returns_copies() -> None:
    metadata: dict[str, Any] = {"tags": ["a"], "nested": {"k": 1}}
    state = {"counter": 1}
    out = _core.normalize_changes({"metadata": metadata, "state": state})
    metadata["tags"].append("b")
    metadata["nested"]["k"] = 2
    metadata["new"] = True
    state["counter"] = 99
    assert out == {"metadata": {"tags": ["a"], "nested": {"k": 1}}, "state": {"counter": 1}}


# --- prepare_items -----------------------------------------------------------------------------

NOW = T0 + 123_456
ISO_UTC_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


def _decoded(encoded: list[_core.EncodedItem]) -> list[dict[str, Any]]:
    return [_json.loads(data) for _, data in encoded]


def test_prepare_items_numbers_from_first_seq_and_stamps() -> None:
    items = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    encoded = _core.prepare_items(items, 7, NOW)
    assert [seq for seq, _ in encoded] == [7, 8]
    decoded = _decoded(encoded)
    assert [row["seq"] for row in decoded] == [7, 8]
    assert [row["item"] for row in decoded] == items  # the item as given, beside seq/timestamp
    for item in decoded:
        stamp = item["timestamp"]
        assert ISO_UTC_MICROS.fullmatch(stamp), stamp
        parsed = dt.datetime.fromisoformat(stamp)
        assert parsed.utcoffset() == dt.timedelta(0)
        assert to_micros(parsed) == NOW


def test_prepare_items_timestamp_keeps_zero_microseconds() -> None:
    (item,) = _decoded(_core.prepare_items([{"role": "user"}], 1, T0))
    assert item["timestamp"] == "2024-05-01T12:00:00.000000+00:00"


def test_prepare_items_keeps_given_timestamp_and_extra_keys() -> None:
    items: list[dict[str, Any]] = [
        {"role": "tool", "timestamp": "2020-01-01T00:00:00Z", "tool_call_id": "c1", "x": [1]},
        {"role": "user", "timestamp": None},
    ]
    first, second = _decoded(_core.prepare_items(items, 1, NOW))
    assert first == {"seq": 1, "timestamp": "2020-01-01T00:00:00Z", "item": items[0]}
    assert second["item"] == {"role": "user", "timestamp": None}  # kept exactly
    assert to_micros(dt.datetime.fromisoformat(second["timestamp"])) == NOW


def test_prepare_items_keeps_a_caller_seq_inside_the_item() -> None:
    (row,) = _decoded(_core.prepare_items([{"role": "user", "seq": 99}], 3, NOW))
    assert row["seq"] == 3
    assert row["item"] == {"role": "user", "seq": 99}


def test_prepare_items_takes_any_json_object_and_keys() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    event = {"id": "e1", "timestamp": 1712.5, "author": "user"}
    rows = _decoded(_core.prepare_items([call, tether.KeyedItem("e1", event), {}], 1, NOW))
    assert [row["item"] for row in rows] == [call, event, {}]
    assert [row.get("key") for row in rows] == [None, "e1", None]
    assert to_micros(dt.datetime.fromisoformat(rows[1]["timestamp"])) == NOW  # not a str


def test_prepare_items_does_not_mutate_caller_dicts() -> None:
    items: list[dict[str, Any]] = [
        {"role": "user", "content": {"parts": ["a"]}},
        {"role": "assistant"},
    ]
    snapshot = copy.deepcopy(items)
    _core.prepare_items(items, 1, NOW)
    assert items == snapshot
    assert "seq" not in items[0]
    assert "timestamp" not in items[1]


def test_prepare_items_accepts_empty_and_generators() -> None:
    assert _core.prepare_items([], 1, NOW) == []
    encoded = _core.prepare_items(({"role": r} for r in ("user", "assistant")), 4, NOW)
    assert [seq for seq, _ in encoded] == [4, 5]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([{"role": "user"}, ["role", "user"]], "history item 1 is a"),
        ([{"role": "user"}, "hello"], "history item 1 is a"),
        ([None], "history item 0 is a"),
        ([{"role": "user"}, {"role": b"user"}], "history item 1 is not plain JSON"),
        ([tether.KeyedItem("k", {}), tether.KeyedItem("k", {})], "already has an item with key"),
        ([tether.KeyedItem("", {})], "history item 0: key is empty"),
        ([tether.KeyedItem("a\x00b", {})], "contains a NUL"),
        ([tether.KeyedItem(5, {})], "history item 0: key must be a str"),  # type: ignore[arg-type]
        ([tether.KeyedItem("k" * 257, {})], "the limit is 256"),
        ([tether.KeyedItem("k", "not a dict")], "history item 0 is a"),  # type: ignore[arg-type]
        ([{"role": "user", "x": float("inf")}], "history item 0.x is NaN"),
        ([{"role": "user"}, {"role": "u", "x": {1, 2}}], "history item 1 is not plain JSON"),
        ({"role": "user", "content": "a single dict"}, "must be a list of item dicts"),
        ("hello", "must be a list of item dicts"),
        (b"hello", "must be a list of item dicts"),
    ],
)
def test_prepare_items_refuses_bad_items(items: Any, fragment: str) -> None:
    # InvalidSessionData, or DuplicateItemKey: both are InvalidRequest
    with pytest.raises(InvalidRequest, match=re.escape(fragment)):
        _core.prepare_items(items, 1, NOW)


# --- window ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seqs", "last", "after", "expected"),
    [
        ([], None, None, []),
        ([], 3, None, []),
        ([], None, 3, []),
        ([], 0, 0, []),
        ([1, 2, 3, 4, 5], None, None, [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], 2, None, [4, 5]),
        ([1, 2, 3, 4, 5], 0, None, []),
        ([1, 2, 3, 4, 5], 5, None, [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], 50, None, [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], None, 0, [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], None, 3, [4, 5]),
        ([1, 2, 3, 4, 5], None, 5, []),
        ([1, 2, 3, 4, 5], None, 99, []),
        ([1, 2, 3, 4, 5], 3, 1, [3, 4, 5]),  # last is the tighter bound
        ([1, 2, 3, 4, 5], 3, 4, [5]),  # after is the tighter bound
        ([1, 2, 3, 4, 5], 0, 0, []),
        ([10, 11, 12], None, 10, [11, 12]),  # after replace_history seqs start later
        ([10, 11, 12], None, 9, [10, 11, 12]),
        ([10, 11, 12], 1, 0, [12]),
        ([2, 4, 6, 8], None, 5, [6, 8]),  # not contiguous: never assumed
        ([2, 4, 6, 8], None, 4, [6, 8]),
        ([2, 4, 6, 8], None, 1, [2, 4, 6, 8]),
        ([2, 4, 6, 8], 1, None, [8]),
        ([7], None, 6, [7]),
        ([7], None, 7, []),
        ([7], 1, 7, []),
    ],
)
def test_window(seqs: list[int], last: int | None, after: int | None, expected: list[int]) -> None:
    assert seqs[_core.window(seqs, last, after)] == expected


@pytest.mark.parametrize(
    ("last", "after"), [(-1, None), (None, -1), (True, None), (None, False), (1.0, None)]
)
def test_check_window_rejects(last: Any, after: Any) -> None:
    with pytest.raises(InvalidRequest):
        _core.check_window(last, after)


def test_check_window_accepts() -> None:
    _core.check_window(None, None)
    _core.check_window(0, 0)
    _core.check_window(10, 3)


# --- cursors -----------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("updated_at", "session_id"),
    [
        (T0, "s1"),
        (0, "a"),
        (to_micros(_core.MAX_TIME) - 1, "A.b_c:d-9"),
        (5, "x" * 128),
        (1, "01a1fcd1-c767-7000"),
    ],
)
def test_cursor_round_trip(updated_at: int, session_id: str) -> None:
    cursor = _core.encode_cursor(updated_at, session_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), cursor  # url-safe, no padding
    assert _core.decode_cursor(cursor) == (updated_at, session_id)


@pytest.mark.parametrize("updated_at", [-5, 2**62, 2**63, to_micros(_core.MAX_TIME) + 1])
def test_cursor_with_a_time_no_session_can_have_is_refused(updated_at: int) -> None:
    # a forged cursor must never reach a store's query (a SQL BIGINT, a Redis score)
    with pytest.raises(InvalidRequest, match="not a cursor this store returned"):
        _core.decode_cursor(_core.encode_cursor(updated_at, "s1"))


GOOD_CURSOR = _core.encode_cursor(1_700_000_000_123_456, "abc-1:x")

BAD_CURSORS = {
    "reversed": GOOD_CURSOR[::-1],
    "upper": GOOD_CURSOR.upper(),
    "first-char": "X" + GOOD_CURSOR[1:],
    "drop-first": GOOD_CURSOR[1:],
    "truncated-1": GOOD_CURSOR[:-1],
    "truncated-4": GOOD_CURSOR[:-4],
    "truncated-half": GOOD_CURSOR[: len(GOOD_CURSOR) // 2],
    "one-char": GOOD_CURSOR[:1],
    "empty": "",
    "not-base64": "!!!!",
    "words": "not a cursor",
    "non-ascii": "é",
    "json-object": _b64(b'{"a": 1, "b": 2}'),
    "json-one": _b64(b"[1]"),
    "json-three": _b64(b'[1, "a", 2]'),
    "json-string": _b64(b'"ab"'),
    "json-null": _b64(b"null"),
    "float-ts": _b64(b'[1.5, "a"]'),
    "str-ts": _b64(b'["1", "a"]'),
    "bool-ts": _b64(b'[true, "a"]'),
    "false-ts": _b64(b'[false, "a"]'),
    "int-id": _b64(b"[1, 5]"),
    "null-id": _b64(b"[1, null]"),
    "dotdot-id": _b64(b'[1, "../x"]'),
    "slash-id": _b64(b'[1, "a/b"]'),
    "empty-id": _b64(b'[1, ""]'),
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_bad_cursor_raises_invalid_request(cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor") as info:
        _core.decode_cursor(cursor)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TetherError)


def test_bad_cursor_message_says_what_to_pass() -> None:
    with pytest.raises(InvalidRequest, match="next_cursor"):
        _core.decode_cursor("!!!!")


def test_non_str_cursor_raises_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        _core.decode_cursor(12345)  # type: ignore[arg-type]


# --- build_list_query --------------------------------------------------------------------------


def test_build_list_query_defaults() -> None:
    query = _core.build_list_query()
    assert query == _core.ListQuery()
    assert query.limit == _core.DEFAULT_PAGE_SIZE == 50
    assert query.statuses is None
    assert query.metadata == ()
    assert query.cursor is None


@pytest.mark.parametrize("limit", [1, 2, 999, 1000])
def test_build_list_query_limit_in_bounds(limit: int) -> None:
    assert _core.build_list_query(limit=limit).limit == limit


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**9, True, False, 1.0, "10", None])
def test_build_list_query_limit_out_of_bounds(limit: Any) -> None:
    with pytest.raises(InvalidRequest, match="limit must be an int from 1 to 1000"):
        _core.build_list_query(limit=limit)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("new", {"new"}),
        (SessionStatus.ERROR, {"error"}),
        (["new", SessionStatus.RUNNING], {"new", "running"}),
        (("waiting", "waiting"), {"waiting"}),
        ({SessionStatus.FINISHED, "archived"}, {"finished", "archived"}),
        (frozenset({"suspended"}), {"suspended"}),
    ],
)
def test_build_list_query_status(status: Any, expected: set[str]) -> None:
    statuses = _core.build_list_query(status=status).statuses
    assert statuses == frozenset(expected)
    assert all(type(s) is str for s in statuses or ())


@pytest.mark.parametrize("status", ["bogus", "NEW", ["new", "bogus"], [SessionStatus.NEW, ""]])
def test_build_list_query_invalid_status(status: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        _core.build_list_query(status=status)
    # the message lists the valid statuses
    for valid in SessionStatus:
        assert repr(valid.value) in str(info.value)


def test_build_list_query_canonicalizes_metadata() -> None:
    query = _core.build_list_query(metadata={"b": {"y": 1, "x": [2, None]}, "a": "t"})
    assert query.metadata == (("a", '"t"'), ("b", '{"x":[2,null],"y":1}'))
    other = _core.build_list_query(metadata={"a": "t", "b": {"x": [2, None], "y": 1}})
    assert other.metadata == query.metadata


def test_build_list_query_rejects_bad_metadata() -> None:
    with pytest.raises(InvalidRequest, match="metadata filter keys must be str"):
        _core.build_list_query(metadata={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(InvalidSessionData, match="metadata filter 'k'"):
        _core.build_list_query(metadata={"k": float("nan")})
    with pytest.raises(InvalidSessionData, match="metadata filter 'k'"):
        _core.build_list_query(metadata={"k": {1, 2}})


def test_build_list_query_datetimes() -> None:
    after = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    before = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    query = _core.build_list_query(updated_after=after, updated_before=before)
    assert query.updated_after == T0
    assert query.updated_before == T0 + 3600 * 1_000_000


@pytest.mark.parametrize("name", ["updated_after", "updated_before"])
def test_build_list_query_rejects_naive_datetimes(name: str) -> None:
    kwargs: dict[str, Any] = {name: dt.datetime(2024, 1, 1)}
    with pytest.raises(InvalidRequest, match="naive"):
        _core.build_list_query(**kwargs)


def test_build_list_query_decodes_cursor() -> None:
    query = _core.build_list_query(cursor=_core.encode_cursor(T0, "s9"), owner="o", agent="a")
    assert query.cursor == (T0, "s9")
    assert (query.owner, query.agent) == ("o", "a")
    with pytest.raises(InvalidRequest):
        _core.build_list_query(cursor="garbage!")


BAD_TYPED_ARGUMENTS: dict[str, Callable[[], object]] = {
    "list-status-mixed-types": lambda: _core.build_list_query(status=["bogus", 5]),  # type: ignore[list-item]
    "list-status-int": lambda: _core.build_list_query(status=5),  # type: ignore[arg-type]
    "list-status-unhashable": lambda: _core.build_list_query(status=[["new"]]),  # type: ignore[list-item]
    "list-updated-after-int": lambda: _core.build_list_query(updated_after=T0),  # type: ignore[arg-type]
    "commit-status-unhashable": lambda: _core.normalize_changes({"status": ["new"]}),
}


@pytest.mark.parametrize("call", BAD_TYPED_ARGUMENTS.values(), ids=BAD_TYPED_ARGUMENTS.keys())
def test_wrongly_typed_list_and_commit_arguments_raise_invalid_request(
    call: Callable[[], object],
) -> None:
    with pytest.raises(InvalidRequest):
        call()


# --- ListQuery.matches and .page ---------------------------------------------------------------


def test_matches_expiry() -> None:
    query = _core.ListQuery()
    assert query.matches(make_doc(expires_at=None), T0)
    assert query.matches(make_doc(expires_at=T0 + 1), T0)
    assert not query.matches(make_doc(expires_at=T0), T0)
    assert not query.matches(make_doc(expires_at=T0 - 1), T0)


def test_matches_owner_agent_status() -> None:
    doc = make_doc(owner="ada", agent="support", status="running")
    assert _core.build_list_query(owner="ada").matches(doc, T0)
    assert not _core.build_list_query(owner="bob").matches(doc, T0)
    assert _core.build_list_query(agent="support").matches(doc, T0)
    assert not _core.build_list_query(agent="other").matches(doc, T0)
    assert _core.build_list_query(status=["new", "running"]).matches(doc, T0)
    assert not _core.build_list_query(status="new").matches(doc, T0)
    assert not _core.build_list_query(owner="ada", agent="other").matches(doc, T0)


def test_matches_updated_bounds_are_exclusive() -> None:
    doc = make_doc(updated_at=T0)
    at = from_micros(T0)
    step = dt.timedelta(microseconds=1)
    assert _core.build_list_query(updated_after=at - step).matches(doc, T0)
    assert not _core.build_list_query(updated_after=at).matches(doc, T0)
    assert _core.build_list_query(updated_before=at + step).matches(doc, T0)
    assert not _core.build_list_query(updated_before=at).matches(doc, T0)


def test_matches_metadata() -> None:
    doc = make_doc(metadata={"channel": "web", "n": 1, "tags": {"b": 2, "a": 1}, "flag": True})
    q = _core.build_list_query
    assert q(metadata={"channel": "web"}).matches(doc, T0)
    assert q(metadata={"channel": "web", "n": 1}).matches(doc, T0)
    assert q(metadata={"tags": {"a": 1, "b": 2}}).matches(doc, T0)  # key order is irrelevant
    assert not q(metadata={"channel": "sms"}).matches(doc, T0)
    assert not q(metadata={"missing": None}).matches(doc, T0)
    assert not q(metadata={"n": 1.0}).matches(doc, T0)
    assert not q(metadata={"n": True}).matches(doc, T0)
    assert not q(metadata={"n": "1"}).matches(doc, T0)
    assert not q(metadata={"flag": 1}).matches(doc, T0)
    assert not q(metadata={"tags": {"a": 1}}).matches(doc, T0)  # whole values, not subsets


def test_matches_cursor_excludes_everything_up_to_it() -> None:
    query = _core.build_list_query(cursor=_core.encode_cursor(T0, "m"))
    assert query.matches(make_doc("l", T0), T0)  # same time, smaller id: after it
    assert not query.matches(make_doc("m", T0), T0)  # the cursor's own session
    assert not query.matches(make_doc("n", T0), T0)
    assert query.matches(make_doc("z", T0 - 1), T0)  # older: after it
    assert not query.matches(make_doc("a", T0 + 1), T0)  # newer: already returned


DOCS = [
    make_doc("a", T0 + 100),
    make_doc("b", T0 + 300),
    make_doc("c", T0 + 200),
    make_doc("d", T0 + 300),
    make_doc("e", T0 + 300),
    make_doc("f", T0 + 50, status="finished"),
    make_doc("g", T0 + 999, expires_at=T0 + 1),
]
EXPECTED_ORDER = ["e", "d", "b", "c", "a", "f"]  # updated_at desc, then id desc


def test_page_orders_newest_first_with_id_ties() -> None:
    now = T0 + 10
    page = _core.build_list_query().page(list(reversed(DOCS)), now)
    assert [h.id for h in page.sessions] == EXPECTED_ORDER
    assert page.next_cursor is None
    first = page.sessions[0]
    assert isinstance(first, SessionHeader)
    assert first.status is SessionStatus.NEW
    assert first.updated_at == from_micros(T0 + 300)


def test_page_filters_before_cutting() -> None:
    page = _core.build_list_query(status="finished", limit=1).page(DOCS, T0 + 10)
    assert [h.id for h in page.sessions] == ["f"]
    assert page.next_cursor is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 6, 7])
def test_page_cursor_continuation(limit: int) -> None:
    now = T0 + 10
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = _core.build_list_query(limit=limit, cursor=cursor).page(DOCS, now)
        pages += 1
        assert len(page.sessions) <= limit
        seen.extend(h.id for h in page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(page.sessions) == limit
        tail = next(d for d in DOCS if d["id"] == seen[-1])
        assert _core.decode_cursor(cursor) == (tail["updated_at"], tail["id"])
        assert pages < 10
    assert seen == EXPECTED_ORDER
    # a page that is exactly full is the last one: no empty trailing page
    assert pages == -(-len(EXPECTED_ORDER) // limit)


def test_page_of_nothing() -> None:
    page = _core.build_list_query().page([], T0)
    assert page.sessions == []
    assert page.next_cursor is None


# --- apply_commit / apply_replace --------------------------------------------------------------


def test_apply_commit_arithmetic_and_no_mutation() -> None:
    doc = make_doc(version=3, last_seq=10, history_len=4, owner="ada", metadata={"k": [1]})
    snapshot = copy.deepcopy(doc)
    new = _core.apply_commit(doc, {"owner": "bob", "status": "running"}, 3, T0 + 500)
    assert doc == snapshot
    assert new is not doc
    assert new["version"] == 4
    assert new["last_seq"] == 13
    assert new["history_len"] == 7
    assert new["updated_at"] == T0 + 500
    assert new["created_at"] == doc["created_at"]
    assert new["owner"] == "bob"
    assert new["status"] == "running"
    assert new["metadata"] == {"k": [1]}
    assert new["schema_version"] == schema.current


def test_apply_commit_without_items() -> None:
    doc = make_doc(version=7, last_seq=5, history_len=5)
    new = _core.apply_commit(doc, {}, 0, T0 + 1)
    assert (new["version"], new["last_seq"], new["history_len"]) == (8, 5, 5)
    assert new["updated_at"] == T0 + 1


def test_apply_replace_arithmetic_and_no_mutation() -> None:
    doc = make_doc(version=2, last_seq=10, history_len=4)
    snapshot = copy.deepcopy(doc)
    new = _core.apply_replace(doc, 2, T0 + 600)
    assert doc == snapshot
    assert new["version"] == 3
    assert new["last_seq"] == 12  # fresh seqs continue after the old last_seq
    assert new["history_len"] == 2
    assert new["updated_at"] == T0 + 600
    emptied = _core.apply_replace(doc, 0, T0 + 700)
    assert (emptied["version"], emptied["last_seq"], emptied["history_len"]) == (3, 10, 0)
    # first_seq of the header is last_seq + 1 for an empty history
    header = _core.doc_to_header(emptied)
    assert header.first_seq == 11
    assert _core.doc_to_header(new).first_seq == 11


# --- SchemaRegistry ----------------------------------------------------------------------------


def _trail(tag: int) -> Callable[[_core.Doc], _core.Doc]:
    def step(doc: _core.Doc) -> _core.Doc:
        doc.setdefault("trail", []).append(tag)
        return doc

    return step


def test_global_schema_is_version_3_with_migrations_from_1_and_2() -> None:
    assert schema.current == CURRENT_SCHEMA_VERSION == 3
    upgraded = schema.upgrade_header({"id": "s", "schema_version": 1, "metadata": {}})
    assert upgraded["schema_version"] == 3
    assert upgraded["lease_fence"] == 0
    assert upgraded["lease_owner"] is None
    # schema 2 rows were the item with seq / timestamp merged in; schema 3 keeps them beside
    old = {"role": "user", "content": "hi", "seq": 4, "timestamp": "t"}
    new = {"seq": 4, "timestamp": "t", "item": {"role": "user", "content": "hi"}}
    assert schema.upgrade_item(dict(old), 2) == new
    assert schema.upgrade_item(dict(old), 1) == new
    assert schema.upgrade_item(dict(new), 2) == new  # an already upgraded row is left alone


def test_header_migrations_are_chained_in_order() -> None:
    registry = SchemaRegistry(current=3)
    step1 = registry.header_migration(from_version=1)(_trail(1))
    registry.header_migration(from_version=2)(_trail(2))
    assert registry.header_migrations[1] is step1

    doc = registry.upgrade_header({"id": "s", "schema_version": 1})
    assert doc == {"id": "s", "schema_version": 3, "trail": [1, 2]}
    doc = registry.upgrade_header({"id": "s", "schema_version": 2})
    assert doc == {"id": "s", "schema_version": 3, "trail": [2]}
    doc = registry.upgrade_header({"id": "s", "schema_version": 3})
    assert doc == {"id": "s", "schema_version": 3}


def test_a_migration_sees_the_output_of_the_previous_one() -> None:
    registry = SchemaRegistry(current=3)

    @registry.header_migration(from_version=1)
    def rename(doc: _core.Doc) -> _core.Doc:
        doc["agent"] = doc.pop("agent_name")
        return doc

    @registry.header_migration(from_version=2)
    def upper(doc: _core.Doc) -> _core.Doc:
        return {**doc, "agent": doc["agent"].upper()}

    doc = registry.upgrade_header({"id": "s", "schema_version": 1, "agent_name": "bot"})
    assert doc == {"id": "s", "schema_version": 3, "agent": "BOT"}


def test_missing_migration_steps_are_no_ops() -> None:
    registry = SchemaRegistry(current=3)
    registry.header_migration(from_version=2)(_trail(2))
    assert registry.upgrade_header({"id": "s", "schema_version": 1}) == {
        "id": "s",
        "schema_version": 3,
        "trail": [2],
    }
    bare = SchemaRegistry(current=3)
    assert bare.upgrade_header({"id": "s", "schema_version": 1, "x": 1}) == {
        "id": "s",
        "schema_version": 3,
        "x": 1,
    }


@pytest.mark.parametrize("found", [4, 99])
def test_newer_schema_version_is_unsupported(found: int) -> None:
    registry = SchemaRegistry(current=3)
    registry.header_migration(from_version=1)(_trail(1))
    with pytest.raises(UnsupportedSchemaVersion) as info:
        registry.upgrade_header({"id": "s7", "schema_version": found})
    assert (info.value.found, info.value.supported, info.value.session_id) == (found, 3, "s7")
    with pytest.raises(UnsupportedSchemaVersion):
        registry.check("s7", found)


@pytest.mark.parametrize("doc", [{"id": "s", "schema_version": 0}, {"id": "s"}])
def test_version_zero_is_corrupt(doc: _core.Doc) -> None:
    registry = SchemaRegistry(current=3)
    with pytest.raises(CorruptSession) as info:
        registry.upgrade_header(doc)
    assert info.value.session_id == "s"
    assert "schema version 0" in str(info.value)


def test_check_accepts_every_supported_version() -> None:
    registry = SchemaRegistry(current=3)
    for version in (1, 2, 3):
        registry.check("s", version)
    with pytest.raises(CorruptSession):
        registry.check("s", -1)


def test_items_need_upgrade() -> None:
    registry = SchemaRegistry(current=3)
    assert not registry.items_need_upgrade(1)
    registry.item_migration(from_version=2)(_trail(2))
    assert registry.items_need_upgrade(1)
    assert registry.items_need_upgrade(2)
    assert not registry.items_need_upgrade(3)

    only_first = SchemaRegistry(current=3)
    only_first.item_migration(from_version=1)(_trail(1))
    assert only_first.items_need_upgrade(1)
    assert not only_first.items_need_upgrade(2)


def test_upgrade_item_applies_steps_in_order_from_its_version() -> None:
    registry = SchemaRegistry(current=3)
    registry.item_migration(from_version=1)(_trail(1))
    registry.item_migration(from_version=2)(_trail(2))
    assert registry.upgrade_item({"role": "user"}, 1) == {"role": "user", "trail": [1, 2]}
    assert registry.upgrade_item({"role": "user"}, 2) == {"role": "user", "trail": [2]}
    assert registry.upgrade_item({"role": "user"}, 3) == {"role": "user"}


def test_header_and_item_migrations_are_separate() -> None:
    registry = SchemaRegistry(current=2)
    registry.item_migration(from_version=1)(_trail(1))
    assert registry.upgrade_header({"id": "s", "schema_version": 1}) == {
        "id": "s",
        "schema_version": 2,
    }
    assert not registry.header_migrations
    assert not SchemaRegistry().item_migrations  # instances do not share dicts


def test_empty_status_list_is_refused_not_a_silent_match_nothing() -> None:
    with pytest.raises(InvalidRequest, match="None for any status"):
        _core.build_list_query(status=[])


@pytest.mark.parametrize("with_history", [False, True])
def test_construct_trusted_builds_what_model_construct_builds(with_history: bool) -> None:
    doc = _core.new_session_doc(
        Session(owner="o", metadata={"k": [1]}, state={"s": 1}, options={"model": "m"}),
        1_700_000_000_000_000,
    )
    doc["lease_owner"], doc["lease_expires_at"], doc["lease_fence"] = "w", 1_800_000_000_000_000, 3
    if with_history:
        item = {"role": "user", "content": "hi"}
        rows = [{"seq": 1, "timestamp": "t", "item": item}]
        fast: SessionHeader = _core.make_session(doc, rows)
        fields = _core.fields_from_doc(doc)
        history = [{**item, "seq": 1, "timestamp": "t"}]
        slow_session = Session.model_construct(**fields, history=history)
        slow_session._items = [tether.StoredItem(seq=1, timestamp="t", key=None, item=item)]
        slow: SessionHeader = slow_session
    else:
        fast = _core.doc_to_header(doc)
        slow = SessionHeader.model_construct(**_core.fields_from_doc(doc))
    assert type(fast) is type(slow)
    assert fast == slow
    assert list(fast) == list(slow)  # same fields, same order
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert repr(fast) == repr(slow)
    if isinstance(fast, Session):
        assert fast.stored_schema_version == fast.schema_version
        fast._stored_schema_version = 1
        assert fast.stored_schema_version == 1


def test_construct_trusted_falls_back_when_fields_are_missing() -> None:
    header = _core.construct_trusted(SessionHeader, {"id": "only-an-id"})
    assert header.id == "only-an-id"
    assert header.version == 0  # the default model_construct fills in


# --- limits: refused before any I/O, the same for every store -----------------------------------


@pytest.mark.parametrize(
    "ttl",
    [
        _core.MAX_TTL + dt.timedelta(microseconds=1),
        dt.timedelta.max,
        10**9,
        2**63,
        1e300,
        float("inf"),
        float("nan"),
        0,
        -1,
        dt.timedelta(0),
        1e-7,
    ],
)
def test_ttl_out_of_range_is_refused(ttl: object) -> None:
    # a claim with a huge ttl used to write the lease, then every load and list overflowed
    with pytest.raises(InvalidRequest, match="ttl"):
        _core.ttl_micros(ttl)  # type: ignore[arg-type]


def test_the_longest_ttl_is_accepted() -> None:
    assert _core.ttl_micros(_core.MAX_TTL) == _core.MAX_TTL // dt.timedelta(microseconds=1)
    assert _core.ttl_micros(_core.MAX_TTL.total_seconds()) > 0


@pytest.mark.parametrize("name", ["last", "after", "limit"])
@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1])
def test_window_beyond_64_bits_is_refused(name: str, value: int) -> None:
    with pytest.raises(InvalidRequest, match=name):
        _core.check_window(**{name: value, **{n: None for n in ("last", "after") if n != name}})


def test_window_at_the_64_bit_edge_is_accepted() -> None:
    _core.check_window(_core.MAX_INT, _core.MAX_INT, _core.MAX_INT)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1.0, "1", True])
def test_versions_beyond_64_bits_or_not_ints_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="expected_version"):
        _core.check_version(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\ud800b", "lone surrogate"),
        ("nul\x00", "NUL"),
        ("x" * (_core.MAX_NAME_LENGTH + 1), "limit"),
        (5, "must be a str or None"),
    ],
)
@pytest.mark.parametrize("name", ["owner", "agent"])
def test_names_that_a_store_cannot_hold_are_refused(name: str, value: object, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        _core.normalize_changes({name: value})
    with pytest.raises(InvalidRequest, match=why):
        _core.build_list_query(**{name: value})  # type: ignore[arg-type]
    session = Session.model_construct(**{"id": "s1", name: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionData, match=why):
        _core.new_session_doc(session, T0)


@pytest.mark.parametrize("owner", ["", "a\udc80", "x" * 257, None, 7])
def test_lease_owners_that_a_store_cannot_hold_are_refused(owner: object) -> None:
    with pytest.raises(InvalidRequest, match="owner"):
        _core.check_owner(owner)


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        _core.MAX_TIME,
        dt.datetime.max.replace(tzinfo=UTC),
        dt.datetime.min.replace(tzinfo=UTC),
        dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-12))),  # past year 9999
    ],
)
def test_expires_at_outside_the_stored_range_is_refused(moment: dt.datetime) -> None:
    with pytest.raises(InvalidRequest, match="expires_at"):
        _core.normalize_changes({"expires_at": moment})
    with pytest.raises(InvalidRequest, match="expires_at"):
        _core.new_session_doc(Session.model_construct(id="s1", expires_at=moment), T0)


def test_listing_bounds_outside_the_stored_range_are_clamped_not_refused() -> None:
    query = _core.build_list_query(
        updated_after=dt.datetime.min.replace(tzinfo=UTC),
        updated_before=dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-12))),
    )
    assert query.updated_after == -1
    assert query.updated_before == to_micros(_core.MAX_TIME) + 1


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "bogus"},
        {"status": None},
        {"state": None},
        {"fork_seq": 2**64},
        {"expires_at": "2030-01-01"},
        {"expires_at": dt.datetime(2030, 1, 1)},
    ],
    ids=repr,
)
def test_fields_set_past_validation_are_refused_by_create(fields: dict[str, Any]) -> None:
    # model_construct (or an assignment before validate_assignment) skips the model's checks
    with pytest.raises(InvalidRequest):
        _core.new_session_doc(Session.model_construct(id="s1", **fields), T0)


def test_history_that_is_not_a_list_of_items_is_refused() -> None:
    for items in (None, 5, True, "text", {"role": "user"}):
        with pytest.raises(InvalidSessionData, match="history items must be a list"):
            _core.item_list(items)  # type: ignore[arg-type]
    # a timestamp that is not a str is the item's own: kept, and tether stamps the row
    (row,) = _decoded(_core.prepare_items([{"role": "user", "timestamp": 5}], 1, T0))
    assert row["item"] == {"role": "user", "timestamp": 5}
    assert row["timestamp"] == "2024-05-01T12:00:00.000000+00:00"


def test_assigning_a_bad_value_to_a_model_field_is_refused_at_the_assignment() -> None:
    session = Session()
    with pytest.raises(pydantic.ValidationError, match="status"):
        session.status = "bogus"  # type: ignore[assignment]
    with pytest.raises(pydantic.ValidationError, match="expires_at"):
        session.expires_at = dt.datetime(2030, 1, 1)
    with pytest.raises(InvalidSessionId):
        session.id = "../x"
    assert session.status is SessionStatus.NEW
    session.status = "running"  # type: ignore[assignment]
    assert session.status is SessionStatus.RUNNING


def _doc(session_id: str, **fields: Any) -> _core.Doc:
    doc = _core.new_session_doc(Session(id=session_id), T0)
    doc.update(fields)
    return doc


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "bogus"},
        {"lease_expires_at": 2**70, "lease_token": "t"},
        {"created_at": 10**20},
        {"schema_version": "x"},
    ],
    ids=repr,
)
def test_a_listing_skips_and_logs_a_document_it_cannot_read(
    bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    docs = [_doc("a"), _doc("b", **bad), _doc("c")]
    with caplog.at_level("WARNING", logger="tether.stores"):
        page = _core.ListQuery(limit=2).page(docs, T0)
    assert [header.id for header in page.sessions] == ["c"]  # b skipped, its place kept
    assert page.next_cursor == _core.encode_cursor(T0, "b")
    assert "skipping session 'b'" in caplog.text
    with pytest.raises(CorruptSession):
        _core.listed_header(docs[1])


@pytest.mark.parametrize("op", ["fork", "replace_tail"])
def test_fork_and_replace_tail_keep_the_same_prefix_of_a_history(op: Any) -> None:
    # seqs 4..9 are stored (3 were dropped by an earlier replace_history)
    doc = make_doc(last_seq=9, history_len=6)
    name = "at" if op == "fork" else "after"
    assert [_core.items_kept(doc, seq, op) for seq in range(3, 10)] == [0, 1, 2, 3, 4, 5, 6]
    for outside in (2, 10, -1):
        with pytest.raises(InvalidRequest, match=rf"{name} must be from 3 to 9") as caught:
            _core.items_kept(doc, outside, op)
        assert f"seq {outside}: its history holds seqs 4..9" in str(caught.value)
    for not_a_seq in (True, 4.0, "4", None):
        with pytest.raises(InvalidRequest, match=rf"{name} must be a seq \(int\)"):
            _core.items_kept(doc, not_a_seq, op)
