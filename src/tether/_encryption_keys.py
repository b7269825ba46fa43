"""Encryption at rest: the keys. The :class:`Keyring` (key id -> AES-256 key, the current
one, keys fetched on demand) and what ``keys=`` accepts. No I/O but an optional ``fetch``.

Imported from :mod:`tether.encryption` (or :mod:`tether.encryption_codec`, which re-exports
these names); the codec that seals and opens values with these keys is
:mod:`tether.encryption_codec`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable, Mapping

from .errors import ConfigurationError, MissingKey, UnknownKeyId

# The encryption extra, imported in this one place so a missing package is one clear error;
# InvalidTag is exported for the codec.
try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "encryption at rest needs the cryptography package, which is not installed "
        f"({exc.name}). Install it with: pip install 'tether[encryption]'"
    ) from exc

__all__ = ["KEY_BYTES", "InvalidTag", "KeySource", "Keyring", "resolve_keys"]

KEY_BYTES = 32  # AES-256
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _check_key_id(kid: object) -> str:
    if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
        raise ConfigurationError(
            f"key id {kid!r} is not valid: use 1-64 characters from [A-Za-z0-9._-] "
            "(it is stored in clear beside every ciphertext)"
        )
    return kid


def _check_key(kid: str, key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ConfigurationError(
            f"key {kid!r} must be {KEY_BYTES} random bytes (AES-256), not {size}; make one "
            "with tether.encryption.Keyring.new_key()"
        )
    return key


class Keyring:
    """Key id -> 32-byte key, and which key is current (the one new writes use).

    Old keys stay in the ring so data written with them still reads; ``tether rekey`` moves
    every session to the current key, after which an old key can be dropped. ``fetch`` is
    called for a key id the ring does not hold (a KMS lookup, say) and its answer is kept;
    returning ``None`` means "no such key" (:class:`~tether.errors.UnknownKeyId`), raising
    means "cannot tell now" (:class:`~tether.errors.MissingKey`).

    Key material never appears in ``repr`` or in any error message.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current: str,
        *,
        fetch: Callable[[str], bytes | None] | None = None,
    ) -> None:
        checked = {_check_key_id(kid): _check_key(kid, key) for kid, key in keys.items()}
        if _check_key_id(current) not in checked:
            raise ConfigurationError(
                f"the current key {current!r} is not in the keyring (it holds "
                f"{sorted(checked)}); new writes need it"
            )
        self.current = current
        self._keys = checked
        self._fetch = fetch
        self._aead: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring(current={self.current!r}, key_ids={self.key_ids!r})"

    @property
    def key_ids(self) -> list[str]:
        """The key ids the ring holds now (the current one first)."""
        return [self.current, *sorted(k for k in self._keys if k != self.current)]

    @staticmethod
    def new_key() -> bytes:
        """32 fresh random bytes from the OS: a new AES-256 key."""
        return os.urandom(KEY_BYTES)

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """A keyring from its text form: ``kid:base64key[,kid:base64key...]``, the first
        entry current (standard or URL-safe base64 of 32 bytes). This is the form an
        environment variable holds; see :meth:`to_text`."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep:
                raise ConfigurationError(
                    "a keyring is kid:base64key entries separated by commas, the first one "
                    f"current; an entry has no ':' (key id {kid[:16]!r}...)"
                )
            kid = _check_key_id(kid.strip())
            try:
                raw = base64.b64decode(encoded.strip().translate(_URLSAFE), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"key {kid!r} is not valid base64") from None
            if kid in keys:
                raise ConfigurationError(f"key id {kid!r} appears twice in the keyring")
            keys[kid] = _check_key(kid, raw)
            order.append(kid)
        if not order:
            raise ConfigurationError("the keyring is empty: give at least one kid:base64key")
        return cls(keys, order[0])

    @classmethod
    def from_env(cls, name: str) -> Keyring:
        """The keyring in environment variable ``name`` (see :meth:`parse`)."""
        text = os.environ.get(name)
        if not text:
            raise ConfigurationError(
                f"environment variable {name!r} holds no keyring: set it to "
                "kid:base64key[,kid:base64key...] (the first key current)"
            )
        return cls.parse(text)

    def to_text(self) -> str:
        """The text form :meth:`parse` reads (keys fetched later included). A secret."""
        return ",".join(
            f"{kid}:{base64.b64encode(self._keys[kid]).decode()}" for kid in self.key_ids
        )

    def with_current(self, kid: str, key: bytes | None = None) -> Keyring:
        """A new ring with ``kid`` current (added with ``key`` if given); this one unchanged."""
        keys = dict(self._keys)
        if key is not None:
            keys[_check_key_id(kid)] = _check_key(kid, key)
        return Keyring(keys, kid, fetch=self._fetch)

    def without(self, kid: str) -> Keyring:
        """A new ring without ``kid`` (retire a key after ``tether rekey``)."""
        if kid == self.current:
            raise ConfigurationError(f"cannot retire {kid!r}: it is the current key")
        keys = {k: v for k, v in self._keys.items() if k != kid}
        return Keyring(keys, self.current, fetch=self._fetch)

    def aead(self, kid: str, session_id: str, place: str) -> AESGCM:
        """The cipher of key ``kid``; raises naming the session and place it was needed for."""
        found = self._aead.get(kid)
        if found is not None:
            return found
        with self._lock:
            key = self._keys.get(kid)
            if key is None and self._fetch is not None:
                try:
                    fetched = self._fetch(kid)
                except Exception as exc:
                    raise MissingKey(
                        session_id,
                        place,
                        f"the keyring's fetch failed for key id {kid!r} ({type(exc).__name__}); "
                        "fix the key source and retry. Nothing was returned",
                        key_id=kid,
                    ) from exc
                if fetched is not None:
                    key = self._keys[kid] = _check_key(kid, fetched)
            if key is None:
                raise UnknownKeyId(
                    session_id,
                    place,
                    f"encrypted with key id {kid!r}, which the keyring does not hold (it holds "
                    f"{self.key_ids}); add that key to read it, then run tether rekey",
                    key_id=kid,
                )
            found = self._aead[kid] = AESGCM(key)
        return found


_URLSAFE = str.maketrans("-_", "+/")

KeySource = Keyring | Callable[[], Keyring]
"""What ``keys=`` takes: a :class:`Keyring`, or a callable returning one (called once, when
the store opens: fetch the keys from a KMS there)."""


def resolve_keys(keys: object) -> Keyring:
    """The :class:`Keyring` a ``keys=`` argument gives."""
    if isinstance(keys, Keyring):
        return keys
    if callable(keys):
        ring = keys()
        if isinstance(ring, Keyring):
            return ring
        raise ConfigurationError(
            f"the keys callable returned a {type(ring).__name__}, not a tether Keyring"
        )
    raise ConfigurationError(
        f"keys must be a tether.encryption.Keyring or a callable returning one, not "
        f"{type(keys).__name__}"
    )
