"""Framework ids as tether ids: one public, reversible encoding every adapter and the CLI share.

A framework names its threads, sessions and conversations with arbitrary strings (an email, a
path, text with spaces, 300 characters). A tether id is 1-128 characters of
``[A-Za-z0-9._:-]`` not starting with ``.``. :func:`encode_external_id` maps any string to a
valid tether id, and :func:`decode_external_id` gives the string back:

* Characters from ``[A-Za-z0-9._-]`` are kept as they are (so ``thread-42`` stays
  ``thread-42`` and an id reads like its original); every other character, ``:`` itself
  included, becomes ``:`` followed by the two upper-case hex digits of each of its UTF-8 bytes
  (``ada@example.com`` -> ``ada:40example.com``, a space -> ``:20``, ``/`` -> ``:2F``). A
  leading ``.`` is escaped too (``:2E``), and the empty string is ``:``. Different strings
  always give different ids, and an id decodes to exactly one string.
* An escaped form longer than 128 characters cannot be a tether id. The id is then a readable
  prefix of the escaped form (never cut inside an escape), ``::``, and the first 40 hex digits
  of the SHA-256 of the original's UTF-8 bytes: ``::`` never occurs in an escaped form, so a
  digest id is never mistaken for one. A digest cannot be reversed: keep the original in the
  session (``external_id_metadata(s)`` gives ``{"external_id": s}``, for ``metadata``) and pass
  that metadata to :func:`decode_external_id`, which checks it against the digest.

Strings that are not valid Unicode (a lone surrogate) cannot be encoded:
:class:`~tether.errors.InvalidRequest`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ._ids import MAX_ID_LENGTH
from .errors import InvalidRequest

__all__ = [
    "EXTERNAL_ID_KEY",
    "decode_external_id",
    "encode_external_id",
    "external_id_metadata",
    "is_digest_id",
]

EXTERNAL_ID_KEY = "external_id"
"""The metadata key that keeps the original of a digest id."""
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_DIGEST_MARK = "::"
_DIGEST_HEX = 40
_PREFIX_MAX = MAX_ID_LENGTH - len(_DIGEST_MARK) - _DIGEST_HEX
_ESCAPED = re.compile(r"(?:[A-Za-z0-9._-]|:[0-9A-F]{2})*")


def _escape(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"external id {text[:40]!r} is not valid Unicode (a lone surrogate at {exc.start}); "
            "it cannot be encoded"
        ) from None
    out = []
    for index, char in enumerate(text):
        if char in _KEPT and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f":{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_HEX]


def encode_external_id(external_id: str) -> str:
    """The tether id of a framework's id: readable, valid, and the same in every adapter."""
    if not isinstance(external_id, str):
        raise InvalidRequest(f"an external id is a str, not {type(external_id).__name__}")
    escaped = _escape(external_id)
    if not escaped:
        return ":"
    if len(escaped) <= MAX_ID_LENGTH:
        return escaped
    cut = _PREFIX_MAX
    while cut > 0 and ":" in escaped[max(cut - 2, 0) : cut]:  # never inside ":XX"
        cut -= 1
    return escaped[:cut] + _DIGEST_MARK + _digest(external_id)


def is_digest_id(session_id: str) -> bool:
    """Whether a tether id is the digest form of a long external id (see the module)."""
    return _DIGEST_MARK in session_id


def external_id_metadata(external_id: str) -> dict[str, Any]:
    """``{"external_id": external_id}`` when its tether id is a digest, else ``{}``: what to
    put in the session's metadata so the original can always be shown."""
    if is_digest_id(encode_external_id(external_id)):
        return {EXTERNAL_ID_KEY: external_id}
    return {}


def decode_external_id(session_id: str, metadata: Mapping[str, Any] | None = None) -> str:
    """The framework's id a tether id was encoded from.

    A digest id needs the session's ``metadata`` (holding ``external_id``): the original is
    checked against the digest and returned. Raises :class:`~tether.errors.InvalidRequest` for
    an id :func:`encode_external_id` never returns, or a digest without matching metadata.
    """
    if not isinstance(session_id, str):
        raise InvalidRequest(f"a session id is a str, not {type(session_id).__name__}")
    if is_digest_id(session_id):
        original = (metadata or {}).get(EXTERNAL_ID_KEY)
        if isinstance(original, str) and encode_external_id(original) == session_id:
            return original
        raise InvalidRequest(
            f"{session_id[:60]!r} is the digest of a long external id: pass the session's "
            f"metadata (its {EXTERNAL_ID_KEY!r} holds the original) to decode it"
        )
    if session_id == ":":
        return ""
    if not _ESCAPED.fullmatch(session_id) or session_id.startswith("."):
        raise InvalidRequest(f"{session_id[:60]!r} is not an encoded external id")
    raw = bytearray()
    index = 0
    while index < len(session_id):
        char = session_id[index]
        if char == ":":
            raw.append(int(session_id[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.append(ord(char))
            index += 1
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{session_id[:60]!r} is not an encoded external id") from None
    if encode_external_id(decoded) != session_id:  # e.g. ":41" for a kept "A"
        raise InvalidRequest(f"{session_id[:60]!r} is not the encoding of any external id")
    return decoded
