"""The envelopes' base64 (tether._base64): pybase64 and the binascii fallback give the same
bytes and refuse the same malformed text."""

from __future__ import annotations

import binascii
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

import tether._base64 as fast_base64

MALFORMED = [
    " AAAA",  # whitespace anywhere
    "AAAA\n",
    "AA AA",
    "AAA",  # wrong padding
    "AA=",
    "A===",
    "=",
    "AA==AA==",  # padding inside
    "AA*A",  # outside the alphabet
    "AA-_",  # the URL-safe alphabet is not this one
    "AAAA\x00",
]


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tether._base64 as imported where pybase64 is not installed."""
    monkeypatch.setitem(sys.modules, "pybase64", None)  # import pybase64 -> ImportError
    module = importlib.reload(fast_base64)
    try:
        yield module
    finally:
        monkeypatch.undo()
        importlib.reload(fast_base64)


def test_the_encryption_extra_installs_the_simd_encoder() -> None:
    assert fast_base64.FAST


def test_the_fallback_is_binascii(fallback: ModuleType) -> None:
    assert not fallback.FAST


@pytest.mark.parametrize("size", [0, 1, 2, 3, 12, 28, 255, 1_000, 1_100, 65_537])
def test_both_encode_and_decode_as_binascii(fallback: ModuleType, size: int) -> None:
    data = os.urandom(size)
    expected = binascii.b2a_base64(data, newline=False)
    for module in (fast_base64, fallback):
        assert module.encode(data) == expected
        assert module.decode_strict(expected.decode("ascii")) == data


@pytest.mark.parametrize("text", MALFORMED)
def test_both_refuse_malformed_text(fallback: ModuleType, text: str) -> None:
    for module in (fast_base64, fallback):
        with pytest.raises(binascii.Error):
            module.decode_strict(text)


@pytest.mark.parametrize("text", ["AAA\u00e9", "\u00e9\u00e9\u00e9\u00e9"])
def test_both_refuse_text_that_is_not_ascii(fallback: ModuleType, text: str) -> None:
    for module in (fast_base64, fallback):
        with pytest.raises(ValueError, match=r"ASCII|base64"):
            module.decode_strict(text)


def test_envelopes_sealed_without_pybase64_open_with_it_and_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether.encryption import Keyring
    from tether.encryption_codec import Codec

    ring = Keyring({"k1": Keyring.new_key()}, current="k1")
    item = {"role": "user", "content": "é" * 700}
    sealed_fast = Codec(ring).seal_item("s-1", 3, None, item, what="item")
    monkeypatch.setitem(sys.modules, "pybase64", None)  # import pybase64 -> ImportError
    try:
        assert not importlib.reload(fast_base64).FAST
        sealed_slow = Codec(ring).seal_item("s-1", 3, None, item, what="item")
        assert Codec(ring).open_item("s-1", 3, None, sealed_fast) == item
    finally:
        monkeypatch.undo()
        importlib.reload(fast_base64)
    assert fast_base64.FAST
    assert Codec(ring).open_item("s-1", 3, None, sealed_slow) == item
