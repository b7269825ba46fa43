"""The file store's history log: one framed record per item (4-byte length, 4-byte CRC-32,
the item's JSON), read by skipping frames by their headers, and the key map that points at
keyed items' records. Pure codec: the files themselves are :mod:`._file_layout`'s.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, BinaryIO

from .. import _core, _json
from ..errors import CorruptSession

__all__ = ["FRAME", "Keys", "decode_record", "frame", "keys_at", "skip_frames"]

FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload
LENGTH = struct.Struct(">I")  # a frame's first field alone


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


SKIP_CHUNK = 1 << 16


def skip_frames(handle: BinaryIO, size: int, count: int) -> tuple[int, int]:
    """Move ``handle`` past the first ``count`` frames of the log's first ``size`` bytes,
    reading only their headers (a chunk of at most ``SKIP_CHUNK`` bytes at a time; a frame's
    payload is never read unless it shares a chunk with the next header). Returns the position
    reached and the frames skipped: fewer than ``count`` if the log ends first."""
    header_size = FRAME.size
    pos = skipped = chunk_start = 0
    chunk = b""
    while skipped < count and pos + header_size <= size:
        offset = pos - chunk_start
        if offset + header_size > len(chunk):
            handle.seek(pos)
            chunk, chunk_start, offset = handle.read(min(SKIP_CHUNK, size - pos)), pos, 0
            if len(chunk) < header_size:
                break
        (length,) = LENGTH.unpack_from(chunk, offset)
        if pos + header_size + length > size:
            break
        pos += header_size + length
        skipped += 1
    handle.seek(pos)
    return pos, skipped


Keys = dict[str, list[int]]
"""A session's keyed items: key -> [seq, byte offset of its record in the current log]."""


def keys_at(encoded: _core.PreparedItems, start: int) -> Keys:
    """The key map entries of ``encoded`` written to a log from byte ``start`` on."""
    if not encoded.keys:
        return {}
    offsets: dict[int, int] = {}
    pos = start
    for seq, payload in encoded:
        offsets[seq] = pos
        pos += FRAME.size + len(payload)
    return {key: [seq, offsets[seq]] for key, seq in encoded.keys}


def decode_record(session_id: str, payload: bytes, crc: int, index: int) -> Any:
    """One record's item, its checksum checked.

    A record that fails it was damaged after it was committed (a crash cannot do that: torn
    tails lie past the committed length and are never read), so it raises
    :class:`CorruptSession` rather than quietly returning a history with a hole in it.
    """
    try:
        if zlib.crc32(payload) != crc:
            raise ValueError("checksum mismatch")
        return _json.loads(payload)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise CorruptSession(
            session_id, f"history item {index + 1} in its log is damaged ({exc})"
        ) from exc
