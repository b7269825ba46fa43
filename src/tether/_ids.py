"""Session id rules and generation (no I/O)."""

from __future__ import annotations

import os
import re
import threading
import time

from .errors import InvalidSessionId

__all__ = ["new_session_id", "validate_session_id"]

MAX_ID_LENGTH = 128
_ID = re.compile(r"[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,127}")


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is a valid id, else raise :class:`InvalidSessionId`.

    The rules keep an id safe as a file name, a Redis key part and a SQL value: no ``/``,
    no NUL, no leading ``.`` (so ``..`` and hidden or temp files cannot be named).
    """
    if not isinstance(session_id, str):
        raise InvalidSessionId(session_id, f"it is a {type(session_id).__name__}, not a str")
    if not session_id:
        raise InvalidSessionId(session_id, "it is empty")
    if len(session_id) > MAX_ID_LENGTH:
        raise InvalidSessionId(session_id[:40] + "...", f"it has {len(session_id)} characters")
    if session_id.startswith("."):
        raise InvalidSessionId(session_id, "it starts with '.'")
    if not _ID.fullmatch(session_id):
        bad = next(c for c in session_id if not re.fullmatch(r"[A-Za-z0-9._:\-]", c))
        raise InvalidSessionId(session_id, f"it contains {bad!r}")
    return session_id


class _IdClock:
    """Last millisecond used and the counter within it, shared by every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_ms = 0
        self.counter = 0


_clock = _IdClock()


def new_session_id() -> str:
    """A time-ordered, UUIDv7-layout id: ids made later sort later (within one process, always).

    48 bits of Unix milliseconds, a 12-bit counter for ids made in the same millisecond, and
    62 random bits, in the usual 8-4-4-4-12 hex form.
    """
    with _clock.lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _clock.last_ms:
            # Same millisecond (or the clock stepped back): keep order with the counter.
            _clock.counter += 1
            if _clock.counter > 0xFFF:
                _clock.last_ms += 1
                _clock.counter = 0
            now_ms = _clock.last_ms
        else:
            _clock.last_ms, _clock.counter = now_ms, 0
        counter = _clock.counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (now_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
