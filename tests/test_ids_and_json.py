"""Session ids (generation and validation) and the strict JSON codec, with no store involved."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import itertools
import threading
import time
import uuid
from typing import Any

import pytest

from tether import InvalidSessionData, InvalidSessionId, TetherError, _json
from tether._ids import new_session_id, validate_session_id

# --- new_session_id ----------------------------------------------------------------------------


def test_new_session_id_has_uuidv7_layout() -> None:
    session_id = new_session_id()
    parsed = uuid.UUID(session_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    # the canonical lowercase 8-4-4-4-12 form, exactly as uuid prints it
    assert str(parsed) == session_id
    assert [len(part) for part in session_id.split("-")] == [8, 4, 4, 4, 12]
    assert validate_session_id(session_id) == session_id


def test_new_session_ids_are_unique_and_strictly_increasing() -> None:
    ids = [new_session_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    for session_id in ids[::500]:
        assert uuid.UUID(session_id).version == 7


def test_new_session_ids_from_concurrent_threads_are_unique() -> None:
    per_thread = 2_500
    results: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def make(out: list[str]) -> None:
        barrier.wait()
        out.extend(new_session_id() for _ in range(per_thread))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [session_id for out in results for session_id in out]
    assert len(every) == 4 * per_thread
    assert len(set(every)) == len(every)
    # each thread still sees its own ids in increasing order
    for out in results:
        assert out == sorted(out)


def test_new_session_id_embeds_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    session_id = new_session_id()
    after = time.time_ns() // 1_000_000
    embedded_ms = uuid.UUID(session_id).int >> 80
    assert before - 1000 <= embedded_ms <= after + 1000
    now = dt.datetime.now(dt.timezone.utc).timestamp() * 1000
    assert abs(embedded_ms - now) < 1000


# --- validate_session_id -----------------------------------------------------------------------

VALID_IDS = [
    "a",
    "A.b_c:d-9",
    "x..y",
    "a" * 128,
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
    "_leading-underscore",
    ":colon",
    "-dash",
    "trailing.",
]


@pytest.mark.parametrize("session_id", VALID_IDS)
def test_validate_session_id_accepts(session_id: str) -> None:
    assert validate_session_id(session_id) == session_id


INVALID_IDS: list[Any] = [
    "",
    ".",
    "..",
    ".hidden",
    "../x",
    "a/b",
    "a\\b",
    "x\x00y",
    "a" * 129,
    " a",
    "a ",
    "a\n",
    "\na",
    "é",
    "café",
    "a\tb",
    "a*b",
]


@pytest.mark.parametrize("session_id", INVALID_IDS)
def test_validate_session_id_rejects_bad_strings(session_id: str) -> None:
    with pytest.raises(InvalidSessionId) as info:
        validate_session_id(session_id)
    message = str(info.value)
    # the message says how to fix it
    assert "1-128 characters" in message
    assert "[A-Za-z0-9._:-]" in message
    assert "pass no id" in message


@pytest.mark.parametrize("value", [None, 5, b"x", ["a"], 1.5])
def test_validate_session_id_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidSessionId, match="not a str"):
        validate_session_id(value)


def test_validate_session_id_keeps_the_offending_id_on_the_error() -> None:
    with pytest.raises(InvalidSessionId) as info:
        validate_session_id("a/b")
    assert info.value.session_id == "a/b"
    assert "'/'" in str(info.value)


def test_too_long_id_message_is_truncated() -> None:
    with pytest.raises(InvalidSessionId) as info:
        validate_session_id("z" * 10_000)
    assert "10000 characters" in str(info.value)
    assert len(str(info.value)) < 400


def test_invalid_session_id_is_a_tether_error() -> None:
    assert issubclass(InvalidSessionId, TetherError)
    with pytest.raises(TetherError):
        validate_session_id("..")


# --- _json.dumps: refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"k": [1, float("nan")]}, "state.k[1]"),
        ({"k": [None, {"x": float("inf")}]}, "state.k[1].x"),
        ({"a": None, "b": {"c": float("-inf")}}, "state.b.c"),
        ([float("nan")], "state[0]"),
        ({"t": (1, 2, float("nan"))}, "state.t[2]"),
        (float("nan"), "state"),
    ],
)
def test_dumps_refuses_non_finite_floats_naming_the_path(value: object, path: str) -> None:
    with pytest.raises(InvalidSessionData) as info:
        _json.dumps(value, what="state")
    message = str(info.value)
    assert message.startswith(f"{path} is NaN or infinite")
    assert "Nothing was written" in message


class _Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        dt.date(2024, 1, 1),
        {1, 2},
        b"bytes",
        bytearray(b"x"),
        decimal.Decimal("1.5"),
        {1: "int key"},
        {("a",): "tuple key"},
        2**64,
        -(2**63) - 1,
        "\ud800",
        {"k": "lone \udfff surrogate"},
        # its repr holds an address, which differs per process: the xdist workers (-n 2)
        # must collect the same test ids
        pytest.param(object(), id="object()"),
        {"nested": [{"deep": {1, 2}}]},
    ],
    ids=repr,
)
def test_dumps_refuses_non_json(value: object) -> None:
    with pytest.raises(InvalidSessionData) as info:
        _json.dumps(value, what="metadata")
    message = str(info.value)
    assert message.startswith("metadata is not plain JSON")
    assert "Nothing was written" in message
    assert isinstance(info.value.__cause__, TypeError)


def test_dumps_accepts_64_bit_edges() -> None:
    assert _json.loads(_json.dumps([2**64 - 1, -(2**63)])) == [2**64 - 1, -(2**63)]


def test_dumps_refuses_top_level_nan_even_with_empty_what() -> None:
    with pytest.raises(InvalidSessionData):
        _json.dumps(float("nan"), what="")


# --- _json.dumps: acceptance and round trips ---------------------------------------------------


class _Mode(str, enum.Enum):
    FAST = "fast"


class _Name(str):
    pass


class _Count(int):
    pass


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"a": None},
        [None, None, {"x": None}],
        {"text": "héllo wörld ✓ 日本語 🎉", "emoji": "🧵"},
        {"a": {"b": {"c": [1, 2.5, True, False, None, "s", [], {}]}}},
        {"": "empty key", "key with spaces": -0.5},
        0,
        -1,
        2**63,
        1e308,
        "",
    ],
    ids=repr,
)
def test_dumps_round_trips_json(value: object) -> None:
    assert _json.loads(_json.dumps(value)) == value


def test_none_is_not_mistaken_for_nan() -> None:
    # null appears in the output, so dumps walks the value; it must find nothing to refuse
    value = {"state": {"k": [1, None, 2.5]}, "x": None}
    encoded = _json.dumps(value, what="state")
    assert b"null" in encoded
    assert _json.loads(encoded) == value


def test_tuples_encode_as_lists() -> None:
    assert _json.loads(_json.dumps({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


def test_str_and_int_subclasses_encode_as_plain_values() -> None:
    value = {"name": _Name("ada"), "n": _Count(3)}
    decoded = _json.loads(_json.dumps(value))
    assert decoded == {"name": "ada", "n": 3}
    assert type(decoded["name"]) is str
    assert type(decoded["n"]) is int


class _Level(enum.IntEnum):
    ONE = 1


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"order": {"id": uuid.UUID(int=7)}}, "state.order.id"),
        ({"mode": _Mode.FAST}, "state.mode"),
        ({"c": [1, _Color.RED]}, r"state.c\[1\]"),
        ({"level": _Level.ONE}, "state.level"),
        ((uuid.UUID(int=1),), r"state\[0\]"),
    ],
)
def test_uuids_and_enums_are_refused_naming_their_path(value: object, path: str) -> None:
    # orjson would write their value, and they would read back as a str or an int
    with pytest.raises(InvalidSessionData, match=f"^{path} "):
        _json.dumps(value, what="state")
    with pytest.raises(InvalidSessionData, match=f"^{path} "):
        _json.canonical(value, what="state")


def test_dumps_is_compact_bytes() -> None:
    encoded = _json.dumps({"a": [1, 2]})
    assert isinstance(encoded, bytes)
    assert encoded == b'{"a":[1,2]}'


# --- _json.canonical ---------------------------------------------------------------------------


def test_canonical_sorts_keys() -> None:
    assert _json.canonical({"b": 1, "a": 2}) == _json.canonical({"a": 2, "b": 1})
    assert _json.canonical({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    nested_1 = {"z": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": None}
    nested_2 = {"a": None, "z": {"x": [{"c": 2, "d": 1}], "y": 1}}
    assert _json.canonical(nested_1) == _json.canonical(nested_2)


def test_canonical_distinguishes_types() -> None:
    encodings = [_json.canonical(v) for v in (1, 1.0, True, "1", [1], None, 0, False)]
    assert len(set(encodings)) == len(encodings)


def test_canonical_keeps_list_order() -> None:
    assert _json.canonical([1, 2]) != _json.canonical([2, 1])


def test_canonical_is_strict_too() -> None:
    with pytest.raises(InvalidSessionData, match="filter is NaN"):
        _json.canonical(float("nan"), what="filter")
    with pytest.raises(InvalidSessionData, match="filter is not plain JSON"):
        _json.canonical({2: "x"}, what="filter")
