"""The key-value kit's rules with no I/O: key names, header values, chunk framing.

Shared by the sync and async kit (``kv_sync.py`` / ``kv_async.py``), so both lay a session out
in a backend the same way; ``docs/kv.md`` describes the layout and why a commit is atomic.

A session is three kinds of keys (tokens are separated by ``.``, the form NATS and most
key-value services accept):

* ``h.<id>``: the header. Its compare-and-set is the commit point of every write.
* ``c.<id>.<gen>.<k>``: sealed chunk ``k`` of history generation ``gen``: items at positions
  ``k*C .. k*C+C-1`` (``C`` items per chunk, kept in the header). A chunk is only ever written
  from items already committed, so every writer of one writes the same bytes.
* ``t.<id>.<gen>.<nonce>``: the tail, the items after the sealed chunks. Every commit that
  appends writes a new tail under a fresh nonce and the header's compare-and-set publishes it.

``gen`` changes whenever positions would be reused with other items (``create``,
``replace_history``, ``restore``, a schema upgrade written back): a chunk name is never reused
for different content. ``gen`` and tail nonces start with the time they were made, so garbage
collection can tell a crashed writer's leftovers from a commit still in flight.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .. import _core, _json
from ..errors import CorruptSession, InvalidSessionData

Revision = Any
"""The backend's revision token for one key (an int for NATS and the dict backend)."""

DEFAULT_CHUNK_ITEMS = 32
HEADER_PREFIX = "h."
CHUNK_PREFIX = "c."
TAIL_PREFIX = "t."
READ_RETRIES = 20
"""How often a read starts again when a key it needs was replaced under it by a writer."""
WRITE_RETRIES = 1000
"""How often a write re-reads a header that changed without a new version (a claim, say)."""
SPLIT_MARK = b"#"
"""A value that starts with this names how many parts (``<key>.p1 ...``) hold the blob."""


def encode_id(session_id: str) -> str:
    """A session id as one key token: ``.`` and ``:`` (not allowed in NATS keys) escaped."""
    return session_id.replace(".", "=2E").replace(":", "=3A")


def header_key(session_id: str) -> str:
    return HEADER_PREFIX + encode_id(session_id)


def chunk_key(session_id: str, gen: str, index: int) -> str:
    return f"{CHUNK_PREFIX}{encode_id(session_id)}.{gen}.{index}"


def tail_key(session_id: str, gen: str, nonce: str) -> str:
    return f"{TAIL_PREFIX}{encode_id(session_id)}.{gen}.{nonce}"


def part_key(key: str, number: int) -> str:
    return f"{key}.p{number}"


def new_token(now: int) -> str:
    """A fresh generation or tail name: its creation time (hex micros) and random bits."""
    return f"{now:x}-{secrets.token_hex(6)}"


def token_time(token: str) -> int | None:
    """The creation time of a :func:`new_token`, None if it is not one."""
    try:
        return int(token.split("-", 1)[0], 16)
    except ValueError:
        return None


@dataclass
class Head:
    """A header as read: the tether document, where its history lives, and its revision."""

    doc: _core.Doc
    gen: str
    chunk: int
    sealed: int
    tail: str | None
    rev: Revision
    keys: dict[str, int] = field(default_factory=dict)
    """Keyed items (``KeyedItem``): key -> seq, in the header so that it moves with the
    history in the one compare-and-set; a read by key costs one chunk, at any length."""

    @property
    def first_seq(self) -> int:
        return int(self.doc["last_seq"] - self.doc["history_len"] + 1)

    @property
    def tail_len(self) -> int:
        return int(self.doc["history_len"]) - self.sealed * self.chunk

    def chunk_keys(self) -> list[str]:
        sid = self.doc["id"]
        return [chunk_key(sid, self.gen, k) for k in range(self.sealed)]

    def tail_key(self) -> str | None:
        return None if self.tail is None else tail_key(self.doc["id"], self.gen, self.tail)


def encode_head(head: Head, max_size: int) -> bytes:
    doc = head.doc
    raw: dict[str, Any] = {"doc": doc, "kv": [head.gen, head.chunk, head.sealed, head.tail]}
    if head.keys:
        raw["keys"] = head.keys
    value = _json.dumps(raw)
    if len(value) > max_size:
        raise InvalidSessionData(
            f"session {doc['id']!r}: its header (metadata, state and options) is "
            f"{len(value)} bytes, more than the backend's {max_size} per value; keep large "
            "data in history items (they are split across keys) or outside the session, and "
            "item keys few (the header maps each one)"
        )
    return value


def decode_head(session_id: str, value: bytes, rev: Revision) -> Head:
    try:
        raw = _json.loads(value)
        doc = raw["doc"]
        gen, chunk, sealed, tail = raw["kv"]
        if not isinstance(doc, dict) or doc.get("id") != session_id:
            raise ValueError(f"header belongs to {doc.get('id')!r}")
        keys = raw.get("keys", {})
        if not isinstance(keys, dict) or not all(isinstance(v, int) for v in keys.values()):
            raise ValueError("its key map is damaged")
        return Head(doc, str(gen), int(chunk), int(sealed), tail, rev, keys)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptSession(session_id, f"its header is not a tether kv header ({exc})") from exc


def join_items(items: list[bytes]) -> bytes:
    """Encoded items as one blob: JSON has no raw newline, so a newline separates them."""
    return b"\n".join(items)


def split_items(blob: bytes) -> list[bytes]:
    return blob.split(b"\n") if blob else []


def frame(blob: bytes, max_size: int) -> tuple[bytes, list[bytes]]:
    """The value for a blob's own key and the parts to write first (none if it fits)."""
    if len(blob) <= max_size and not blob.startswith(SPLIT_MARK):
        return blob, []
    parts = [blob[at : at + max_size] for at in range(0, len(blob), max_size)]
    return SPLIT_MARK + str(len(parts)).encode(), parts


def split_count(value: bytes) -> int:
    """How many parts a stored blob value points at (0: the value is the blob)."""
    if not value.startswith(SPLIT_MARK):
        return 0
    return int(value[len(SPLIT_MARK) :])


def layout(items: list[bytes], chunk: int) -> tuple[list[list[bytes]], list[bytes]]:
    """Items of a new generation as full chunks and the rest (the tail)."""
    full = len(items) // chunk
    return [items[k * chunk : (k + 1) * chunk] for k in range(full)], items[full * chunk :]


def window_positions(
    head: Head, last: int | None, after: int | None, limit: int | None
) -> tuple[int, int]:
    """Positions (0 = the first item of the generation) ``[lo, hi)`` of a ``load`` window."""
    floor = _core.window_floor(head.doc, last, after)
    hi = int(head.doc["history_len"])
    lo = min(floor - head.first_seq + 1, hi)
    if limit is not None:
        hi = min(hi, lo + limit)
    return lo, max(lo, hi)


def check_chunk_items(chunk_items: int) -> int:
    if isinstance(chunk_items, bool) or not isinstance(chunk_items, int) or chunk_items < 1:
        raise ValueError(f"chunk_items must be an int >= 1, not {chunk_items!r}")
    return chunk_items


def parse_data_key(key: str) -> tuple[str, str, str, str] | None:
    """(kind, encoded id, gen, name) of a chunk or tail key or one of its parts; else None."""
    tokens = key.split(".")
    if len(tokens) not in (4, 5) or tokens[0] not in ("c", "t"):
        return None
    return tokens[0], tokens[1], tokens[2], tokens[3]
