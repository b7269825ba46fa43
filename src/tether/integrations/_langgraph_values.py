"""How the LangGraph saver stores a serde value inside a JSON item, and a list as a delta.

A value is its serde's ``(type, bytes)`` (``dumps_typed``), packed by :func:`pack` as
``[type, base64]`` (the first release's layout, still written for small values), ``[type,
text, "t"]`` for a serde's JSON, or ``[type, base64 of zlib, "z"]`` when compressing shrinks
it by a tenth or more.

A channel that only grows (a chat's message list: LangGraph's ``add_messages`` appends) is
the same msgpack array at every step plus a few elements. Stored whole, a thread of n turns
holds n copies of an ever longer list. So a msgpack array that extends one stored whole (its
*snapshot*) is stored as a delta, :func:`pack_delta`: ``[type, payload, "+" or "+z", snapshot
key]``, the payload being the new elements as a msgpack array of their own (base64, or base64
of zlib). :func:`join` rebuilds the exact bytes the serde wrote from the snapshot's and the
delta's, so reading a delta costs two keyed items, whatever the thread's length. A tether
that predates deltas refuses a 4-part value loudly (``ValueError``), never misreads it.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TEXT = "t"  # a packed value's third part: the serde's bytes as text (its JSON)
ZLIB = "z"  # ... or as base64 of their zlib compression
DELTA = "+"  # a delta's third part: its payload as base64 ...
DELTA_ZLIB = "+z"  # ... or as base64 of its zlib compression
INLINE = "v"  # appended to a checkpoint's encoding: its channel_values hold values (see
# mark_inline); a tether older than that refuses the encoding, never misreads the checkpoint
# bytes: smaller values are stored as they are. A chat turn's checkpoints and writes are
# 0.5 to 1 KB; compressing them saved about a third of each (~2 KB a turn, a sixth of what a
# turn stores) for ~6 deflates a turn at 15 to 45 µs each in LangGraph's worker threads (cold
# caches), most of the CPU tether spent beyond SqliteSaver's at turns 1-50
_COMPRESS_FROM = 1024
_DELTA_FROM = 1024  # bytes: a smaller list is stored whole (a delta would save too little)
_KEPT_BYTES = 64 * 2**20  # snapshots a saver keeps in memory to compare with

Typed = tuple[str, bytes]


def pack(typed: Typed) -> list[str]:
    """A serde value as JSON: ``[type, base64]``, ``[type, text, "t"]`` for a serde's JSON
    text (no base64), or ``[type, base64 of zlib, "z"]`` when compressing shrinks it: a
    chat's message list compresses about 4x, which more than pays for base64's third."""
    kind, raw = typed
    plain: list[str] | None = None
    if kind == "json":
        with contextlib.suppress(UnicodeDecodeError):
            plain = [kind, raw.decode("utf-8"), TEXT]
    squeezed = _squeeze(raw, len(raw) if plain is not None else _b64_size(raw))
    if squeezed is not None:
        return [kind, squeezed, ZLIB]
    if plain is not None:
        return plain
    return [kind, base64.b64encode(raw).decode("ascii")]


def pack_delta(kind: str, payload: bytes, base: str) -> list[str]:
    """A delta (see the module's doc): ``payload`` from :func:`split`, ``base`` the key of
    the snapshot it extends."""
    squeezed = _squeeze(payload, _b64_size(payload))
    if squeezed is not None:
        return [kind, squeezed, DELTA_ZLIB, base]
    return [kind, base64.b64encode(payload).decode("ascii"), DELTA, base]


def mark_inline(packed: list[str]) -> list[str]:
    """A packed checkpoint whose ``channel_values`` hold the small values of its channels
    (and whose item lists its empty ones): its encoding gets :data:`INLINE` appended
    (``[type, base64, "v"]``, ``"tv"``, ``"zv"``), which a tether that stored every channel
    value as an item of its own does not know and refuses (``ValueError``) rather than read
    the checkpoint without those values."""
    return [packed[0], packed[1], (packed[2] if len(packed) == 3 else "") + INLINE]


def _b64_size(raw: bytes) -> int:
    return (len(raw) + 2) // 3 * 4


def _squeeze(raw: bytes, size: int) -> str | None:
    """base64 of ``raw``'s zlib compression, if it is worth its inflate on every read."""
    if len(raw) < _COMPRESS_FROM:
        return None
    # level 1: nearly the ratio of the default level for a tenth of its time
    squeezed = base64.b64encode(zlib.compress(raw, 1)).decode("ascii")
    return squeezed if len(squeezed) * 10 < size * 9 else None


def base_of(packed: Sequence[str]) -> str | None:
    """The snapshot key a delta extends; None for a value stored whole."""
    return packed[3] if len(packed) == 4 and packed[2] in (DELTA, DELTA_ZLIB) else None


def unpack(packed: Sequence[str]) -> Typed:
    return (packed[0], raw_bytes(packed))


def raw_bytes(packed: Sequence[str], limit: int | None = None) -> bytes:
    """The serde bytes of a value stored whole (any layout :func:`pack` ever wrote).

    A delta raises ValueError: it is only its new elements (:func:`payload`), to be joined
    to its snapshot (:func:`join`). ``limit`` caps what a compressed value may expand to (a
    renderer of untrusted sessions passes one): past it, ValueError, as for a malformed
    value."""
    if base_of(packed) is not None:
        raise ValueError("a LangGraph delta value is read joined to its snapshot")
    return payload(packed, limit)


def payload(packed: Sequence[str], limit: int | None = None) -> bytes:
    """The bytes a packed value holds: a whole value's serde bytes, or a delta's new
    elements (a msgpack array of them)."""
    if len(packed) == 2:
        return base64.b64decode(packed[1], validate=limit is not None)
    if len(packed) == 3 and packed[2] in (INLINE, TEXT + INLINE, ZLIB + INLINE):
        # a checkpoint with inline values (mark_inline): the bytes are packed as without it
        base = packed[2][: -len(INLINE)]
        return payload([packed[0], packed[1], base] if base else packed[:2], limit)
    if len(packed) not in (3, 4):
        raise ValueError(f"a stored LangGraph value has 2 to 4 parts, not {len(packed)}")
    encoding = packed[2]
    if len(packed) == 4 and encoding not in (DELTA, DELTA_ZLIB):
        raise ValueError(f"unknown LangGraph delta encoding {encoding!r} (a newer tether?)")
    if encoding == TEXT and len(packed) == 3:
        return packed[1].encode("utf-8")
    if encoding == DELTA:
        return base64.b64decode(packed[1], validate=limit is not None)
    if encoding not in (ZLIB, DELTA_ZLIB):
        raise ValueError(f"unknown LangGraph value encoding {encoding!r} (a newer tether?)")
    squeezed = base64.b64decode(packed[1], validate=limit is not None)
    if limit is None:
        return zlib.decompress(squeezed)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(squeezed, limit)
    except zlib.error as exc:
        raise ValueError(f"a compressed LangGraph value is corrupt: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError(f"a compressed LangGraph value expands past {limit} bytes, or is cut")
    return raw


# --- msgpack arrays: a header (the element count), then the elements back to back ---------


def array_header(raw: bytes) -> tuple[int, int] | None:
    """``(element count, header length)`` if ``raw`` starts with a msgpack array header."""
    if not raw:
        return None
    first = raw[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(raw) >= 3:
        return struct.unpack_from(">H", raw, 1)[0], 3
    if first == 0xDD and len(raw) >= 5:
        return struct.unpack_from(">I", raw, 1)[0], 5
    return None


def _header(count: int) -> bytes:
    """The shortest msgpack array header for ``count`` elements (as msgpack writers do)."""
    if count < 16:
        return bytes([0x90 | count])
    if count < 0x10000:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def split(snapshot: bytes, raw: bytes) -> bytes | None:
    """The delta payload that turns ``snapshot`` into ``raw`` (both msgpack arrays): the
    elements ``raw`` has after ``snapshot``'s, as an array of their own. None unless ``raw``
    is ``snapshot``'s elements byte for byte and then more, and :func:`join` gives ``raw``
    back exactly (checked here, so a reader always rebuilds what the serde wrote)."""
    old, new = array_header(snapshot), array_header(raw)
    if old is None or new is None or new[0] <= old[0]:
        return None
    body = memoryview(snapshot)[old[1] :]
    start = new[1]
    if not raw.startswith(body, start):  # a memcmp, no copy (views compare item by item)
        return None
    # join gives _header(new count) + the snapshot's elements + the delta's: ``raw`` exactly
    # when its own header is the shortest for its count (as msgpack writers make it)
    if _header(new[0]) != raw[:start]:
        return None
    return _header(new[0] - old[0]) + memoryview(raw)[start + len(body) :]


def join(snapshot: bytes, delta: bytes) -> bytes:
    """The serde bytes of a delta's value: ``snapshot``'s elements, then the delta's."""
    old, new = array_header(snapshot), array_header(delta)
    if old is None or new is None:
        raise ValueError("a LangGraph delta value or its snapshot is not a msgpack array")
    return b"".join(
        (_header(old[0] + new[0]), memoryview(snapshot)[old[1] :], memoryview(delta)[new[1] :])
    )


class Snapshot:
    """A channel value this process stored (or read) whole: the next values that extend it
    are stored as deltas on it until their sizes add up to its own (then a new snapshot:
    each delta holds every element since its snapshot, so a read takes two items, and this
    bound keeps the deltas' total within the snapshots'). ``last``: the key and serde bytes of
    the delta on it this process stored last (a head read decodes them, not inflated and
    joined again)."""

    __slots__ = ("key", "last", "raw", "spent", "tag")

    def __init__(
        self,
        key: str,
        raw: bytes,
        spent: int,
        tag: tuple[Any, int],
        last: tuple[str, bytes] | None = None,
    ) -> None:
        self.key, self.raw, self.spent, self.tag, self.last = key, raw, spent, tag, last


def _size(snap: Snapshot) -> int:
    """The bytes a kept snapshot holds: its own, and its last delta's value."""
    return len(snap.raw) + (len(snap.last[1]) if snap.last is not None else 0)


Value = tuple[dict[str, Any], Typed | None]
"""A channel value to store: its blob item without ``value``, and its serde bytes (None: the
channel was emptied)."""


class Snapshots:
    """Per (thread, namespace, channel): the snapshot the next value may be a delta on, kept
    in memory (the least recently used go past :data:`_KEPT_BYTES`)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str], Snapshot] = {}
        self._by_key: dict[tuple[str, str], Snapshot] = {}  # (thread, snapshot key)
        self._by_last: dict[tuple[str, str], Snapshot] = {}  # (thread, key of its last delta)
        self._bytes = 0
        self._lock = threading.Lock()

    def forget(self, thread_id: str) -> None:
        with self._lock:
            for place in [p for p in self._kept if p[0] == thread_id]:
                self._drop(place)

    def _drop(self, place: tuple[str, str, str]) -> None:
        snap = self._kept.pop(place)
        self._bytes -= _size(snap)
        if self._by_key.get((place[0], snap.key)) is snap:
            del self._by_key[(place[0], snap.key)]
        if snap.last is not None and self._by_last.get((place[0], snap.last[0])) is snap:
            del self._by_last[(place[0], snap.last[0])]

    def raw(self, thread_id: str, snapshot_key: str) -> bytes | None:
        """The serde bytes stored whole under ``snapshot_key``, if kept: a reader joins a
        delta to them without reading its snapshot (a key's value never changes: versions
        end in a random tail, so no other value is ever stored under it)."""
        with self._lock:
            snap = self._by_key.get((thread_id, snapshot_key))
        return snap.raw if snap is not None else None

    def value(self, thread_id: str, blob_key: str) -> bytes | None:
        """The serde bytes of the value stored under ``blob_key``, if this process keeps them:
        a snapshot, or the last delta it stored on one (a key's value never changes)."""
        with self._lock:
            snap = self._by_key.get((thread_id, blob_key))
            if snap is not None:
                return snap.raw
            snap = self._by_last.get((thread_id, blob_key))
        return snap.last[1] if snap is not None and snap.last is not None else None

    def valid(self, thread_id: str, ns: str, channel: str, tag: Any) -> Snapshot | None:
        """The snapshot a value of this channel may extend, if still valid under ``tag``."""
        with self._lock:
            found = self._kept.get((thread_id, ns, channel))
        return found if found is not None and found.tag == tag else None

    def keys(self, thread_id: str, ns: str, channels: Iterable[str]) -> list[str]:
        """The keys of the snapshots kept for these channels (the bases of their deltas, a
        guess for the next keyed read)."""
        with self._lock:
            found = [self._kept.get((thread_id, ns, c)) for c in channels]
        return [snap.key for snap in found if snap is not None]

    def seed(
        self, thread_id: str, ns: str, tag: Any, blobs: Mapping[str, Any], keys: Iterable[str]
    ) -> None:
        """Keep the snapshots of a head just read (``blobs``: stored items by key), for the
        channels without a valid one: a process that did not write the thread's last values
        (another worker took the previous turn) extends them rather than storing its first
        value of each channel whole. A delta's size stands for what was spent on its
        snapshot (it holds everything since, a lower bound of the sum)."""
        for blob_key in keys:
            stored = blobs.get(blob_key)
            if stored is None:
                continue
            fields = stored.item
            packed = fields.get("value")
            if not isinstance(packed, list) or packed[0] != "msgpack":
                continue
            if self.valid(thread_id, ns, fields["channel"], tag) is not None:
                continue
            base = base_of(packed)
            if base is None:
                snap_key, raw, spent = blob_key, raw_bytes(packed), 0
            elif (snapshot := blobs.get(base)) is not None:
                snap_key, raw = base, raw_bytes(snapshot.item["value"])
                spent = len(payload(packed))
            else:
                continue
            if len(raw) >= _DELTA_FROM and array_header(raw) is not None:
                self.keep(thread_id, ns, fields["channel"], Snapshot(snap_key, raw, spent, tag))

    def keep(self, thread_id: str, ns: str, channel: str, snap: Snapshot) -> None:
        with self._lock:
            place = (thread_id, ns, channel)
            if place in self._kept:
                self._drop(place)
            self._kept[place] = snap  # re-inserted: the newest used stays longest
            self._by_key[(thread_id, snap.key)] = snap
            if snap.last is not None:
                self._by_last[(thread_id, snap.last[0])] = snap
            self._bytes += _size(snap)
            while self._bytes > _KEPT_BYTES and len(self._kept) > 1:
                self._drop(next(iter(self._kept)))

    def encode(
        self, thread_id: str, ns: str, tag: Any, values: dict[str, Value]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, Snapshot]]]:
        """The blob items of ``values`` (by key), each a delta on its channel's snapshot when
        it extends it; and the snapshots to keep once they are stored (by blob key)."""
        items: dict[str, dict[str, Any]] = {}
        after: dict[str, tuple[str, Snapshot]] = {}
        for blob_key, (fields, typed) in values.items():
            channel = fields["channel"]
            if typed is None:
                items[blob_key] = {**fields, "value": pack(("empty", b""))}
                continue
            kind, raw = typed
            packed: list[str] | None = None
            if kind == "msgpack" and len(raw) >= _DELTA_FROM:
                snap = self.valid(thread_id, ns, channel, tag)
                delta = split(snap.raw, raw) if snap is not None else None
                if (
                    snap is not None
                    and delta is not None
                    and snap.spent + len(delta) <= len(snap.raw)
                ):
                    packed = pack_delta(kind, delta, snap.key)
                    after[blob_key] = (
                        channel,
                        Snapshot(snap.key, snap.raw, snap.spent + len(delta), tag, (blob_key, raw)),
                    )
                elif array_header(raw) is not None:
                    after[blob_key] = (channel, Snapshot(blob_key, raw, 0, tag))
            items[blob_key] = {**fields, "value": packed if packed is not None else pack(typed)}
        return items, after
