"""Envelopes as someone with access to the storage would change them, for the encryption tests:
each helper takes a stored envelope (format 2, or format 1 as tether wrote before) and gives a
changed copy; :func:`format_1` writes an envelope the way tether did before format 2."""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tether.encryption_codec import ENVELOPE_MARK, NONCE_BYTES, Codec


def _unpacked(envelope: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """(key id, nonce, ciphertext) of a format-2 envelope."""
    _, kid, packed = envelope[ENVELOPE_MARK].split(":")
    raw = base64.b64decode(packed, validate=True)
    return kid, raw[:NONCE_BYTES], raw[NONCE_BYTES:]


def _packed(envelope: dict[str, Any], kid: str, nonce: bytes, sealed: bytes) -> dict[str, Any]:
    text = base64.b64encode(nonce + sealed).decode()
    return {**envelope, ENVELOPE_MARK: f"2:{kid}:{text}"}


def _flip_byte(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


def _flip_text(text: str) -> str:
    return base64.b64encode(_flip_byte(base64.b64decode(text))).decode()


def is_format_1(envelope: dict[str, Any]) -> bool:
    return envelope.get(ENVELOPE_MARK) == 1


def flip_ciphertext(envelope: dict[str, Any]) -> dict[str, Any]:
    """One bit of the ciphertext changed."""
    if is_format_1(envelope):
        return {**envelope, "c": _flip_text(envelope["c"])}
    kid, nonce, sealed = _unpacked(envelope)
    return _packed(envelope, kid, nonce, _flip_byte(sealed))


def flip_nonce(envelope: dict[str, Any]) -> dict[str, Any]:
    """One bit of the nonce changed."""
    if is_format_1(envelope):
        return {**envelope, "n": _flip_text(envelope["n"])}
    kid, nonce, sealed = _unpacked(envelope)
    return _packed(envelope, kid, _flip_byte(nonce), sealed)


def truncate(envelope: dict[str, Any]) -> dict[str, Any]:
    """The ciphertext's last 6 bytes (part of the tag) cut off."""
    if is_format_1(envelope):
        return {**envelope, "c": envelope["c"][:-8]}
    kid, nonce, sealed = _unpacked(envelope)
    return _packed(envelope, kid, nonce, sealed[:-6])


def relabel(envelope: dict[str, Any], kid: str) -> dict[str, Any]:
    """The same nonce and ciphertext under another key id."""
    if is_format_1(envelope):
        return {**envelope, "kid": kid}
    _, nonce, sealed = _unpacked(envelope)
    return _packed(envelope, kid, nonce, sealed)


def not_base64(envelope: dict[str, Any]) -> dict[str, Any]:
    """The ciphertext's text replaced by one that is not base64."""
    if is_format_1(envelope):
        return {**envelope, "c": "not base64!"}
    kid, _, _ = _unpacked(envelope)
    return {**envelope, ENVELOPE_MARK: f"2:{kid}:not base64!"}


def other_format(envelope: dict[str, Any]) -> dict[str, Any]:
    """The same envelope claiming a format tether does not write."""
    if is_format_1(envelope):
        return {**envelope, ENVELOPE_MARK: 2}
    return {**envelope, ENVELOPE_MARK: "3" + envelope[ENVELOPE_MARK][1:]}


def format_1(
    key: bytes, kid: str, ad: bytes, plaintext: bytes, timestamp: str | None = None
) -> dict[str, Any]:
    """An envelope as tether wrote it before format 2 (``ad``: from :class:`Codec`)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, ad)
    envelope: dict[str, Any] = {
        ENVELOPE_MARK: 1,
        "kid": kid,
        "n": base64.b64encode(nonce).decode(),
        "c": base64.b64encode(sealed).decode(),
    }
    if timestamp is not None:
        envelope["timestamp"] = timestamp
    return envelope


item_ad = Codec._item_ad
field_ad = Codec._field_ad


def is_sealed(value: dict[str, Any]) -> bool:
    """Whether a stored value (or a history entry of one) holds an envelope of the format
    tether writes (2)."""
    mark = value.get(ENVELOPE_MARK)
    return isinstance(mark, str) and mark.startswith("2:")
