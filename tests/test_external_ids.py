"""Framework ids encoded as tether ids: reversible, valid, readable, the same everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tether
from tether import validate_session_id
from tether.errors import InvalidRequest
from tether.ids import (
    decode_external_id,
    encode_external_id,
    external_id_metadata,
    is_digest_id,
)

# valid Unicode only: a lone surrogate cannot be stored anywhere
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300)


@given(TEXT)
def test_every_string_round_trips_through_a_valid_id(text: str) -> None:
    encoded = encode_external_id(text)
    assert validate_session_id(encoded) == encoded
    metadata = external_id_metadata(text)
    assert decode_external_id(encoded, metadata) == text
    assert is_digest_id(encoded) == bool(metadata)


@given(TEXT, TEXT)
def test_different_strings_never_share_an_id(a: str, b: str) -> None:
    if a != b:
        assert encode_external_id(a) != encode_external_id(b)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("thread-42", "thread-42"),
        ("ada@example.com", "ada:40example.com"),
        ("two words/and a path", "two:20words:2Fand:20a:20path"),
        ("a:b", "a:3Ab"),
        (".hidden", ":2Ehidden"),
        ("", ":"),
        ("é", ":C3:A9"),
    ],
)
def test_examples(text: str, encoded: str) -> None:
    assert encode_external_id(text) == encoded
    assert decode_external_id(encoded) == text


def test_a_long_id_is_a_readable_prefix_and_a_digest_kept_with_its_original() -> None:
    text = "user@example.com/" + "x" * 300
    encoded = encode_external_id(text)
    assert len(encoded) == 128
    assert encoded.startswith("user:40example.com:2Fxxx")
    assert is_digest_id(encoded)
    with pytest.raises(InvalidRequest, match="metadata"):
        decode_external_id(encoded)
    with pytest.raises(InvalidRequest, match="metadata"):
        decode_external_id(encoded, {"external_id": text + "y"})  # not the one it digests
    with tether.open_store("memory://") as store:
        session = store.create(tether.Session(id=encoded, metadata=external_id_metadata(text)))
        assert decode_external_id(session.id, store.load(session.id).metadata) == text


@pytest.mark.parametrize("bad", [":4", ":zz", "a b", ":41", ":C3", ".x", "a::b"])
def test_ids_no_encoding_returns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_external_id(bad)


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        encode_external_id("a\ud800")
    with pytest.raises(InvalidRequest):
        encode_external_id(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        decode_external_id(None)  # type: ignore[arg-type]
