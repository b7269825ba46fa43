"""What the codec of encryption at rest (:mod:`tether.encryption_codec`) keeps of the values it
verified: the shapes of its plaintext cache's entries and what each costs. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_CACHE_BYTES = 32 * 2**20
"""The plaintext cache of a store: 32 MiB of recently opened values."""
Place = tuple[str, "int | str"]
"""Where a cached value lives: (session id, an item's seq), or (session id, ``"state"`` /
``"options"``)."""
Verified = tuple["str | None", dict[str, Any], bytes]
"""What the cache keeps of a verified envelope: the item key beside it (None for a header
field), a private copy of the envelope itself and its plaintext JSON (an object). A stored
envelope equal to that copy (one dict comparison: format, key id, nonce, ciphertext, clear
timestamp, no other field) at the same place under the same item key is the one verified."""
ENTRY_BYTES = 512  # what an entry costs beside its ciphertext and plaintext: dict, tuples


VerifiedRow = tuple[bytes, bytes]
"""What the cache keeps of a verified stored row, read undecoded (a store's ``_load_raw``):
the row's JSON exactly as stored, and the same row with its item in clear (the JSON the
store would hold without encryption). A stored row equal to the first, byte for byte (seq,
timestamp, key, envelope and its clear timestamp), gives the second without decrypting."""


Written = tuple[
    int, Sequence[tuple[int, bytes]], Sequence[tuple["str | None", bytes, "str | None"]], int
]
"""A write :meth:`tether.encryption_codec.Codec.written` noted: the first seq sealed for, the
rows as stored, the items, and the bytes of both."""

WRITTEN_SESSIONS = 256
"""How many sessions' latest write a codec notes (a whole-history reader reads it next)."""

NO_ROWS: dict[int, VerifiedRow] = {}
"""The rows cached for a session the cache holds none of (never written to)."""


def row_size(row: VerifiedRow) -> int:
    return len(row[0]) + len(row[1]) + ENTRY_BYTES


def entry_size(verified: Verified) -> int:
    texts = (len(value) for value in verified[1].values() if type(value) is str)
    return sum(texts) + len(verified[2]) + ENTRY_BYTES
