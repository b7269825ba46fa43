"""Encryption at rest for every store: ``EncryptedStore(inner, keys)`` and its keys.

::

    import tether
    from tether.encryption import EncryptedStore, Keyring

    keys = Keyring({"2026-06": Keyring.new_key()}, current="2026-06")
    store = EncryptedStore(tether.open_store("sqlite:///app.db"), keys)
    # or: tether.open_store("sqlite:///app.db", keys=keys)
    # or: tether.open_store("sqlite:///app.db?encryption_keys_env=TETHER_KEYS")

History items, ``state`` and ``options`` are stored as AES-256-GCM ciphertexts bound to
their place; reads fail closed with a :class:`~tether.errors.DecryptionError`. See
``docs/encryption.md`` for the threat model, key handling and rotation (``tether rekey``).
"""

from __future__ import annotations

from .encryption_async import AsyncEncryptedStore
from .encryption_codec import Keyring, KeySource
from .encryption_sync import EncryptedStore
from .errors import (
    DecryptionError,
    MissingKey,
    PlaintextFound,
    TamperedCiphertext,
    UnknownKeyId,
)

__all__ = [
    "AsyncEncryptedStore",
    "DecryptionError",
    "EncryptedStore",
    "KeySource",
    "Keyring",
    "MissingKey",
    "PlaintextFound",
    "TamperedCiphertext",
    "UnknownKeyId",
]
