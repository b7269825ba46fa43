"""The built-in stores. Each module is imported only when used; see :func:`tether.open_store`.

* :mod:`tether.stores.memory`: :class:`MemoryStore` / :class:`AsyncMemoryStore`
* :mod:`tether.stores.file`: :class:`FileStore` / :class:`AsyncFileStore`
* :mod:`tether.stores.sqlite`: :class:`SQLiteStore` / :class:`AsyncSQLiteStore`
* :mod:`tether.stores.redis_sync` / ``redis_async``: :class:`RedisStore` / :class:`AsyncRedisStore`
  (``tether[redis]``)
* :mod:`tether.stores.postgres_sync` / ``postgres_async``: :class:`PostgresStore` /
  :class:`AsyncPostgresStore` (``tether[postgres]``)
* :mod:`tether.stores.nats_sync` / ``nats_async``: :class:`NatsStore` / :class:`AsyncNatsStore`
  (``tether[nats]``)

Your own storage in four methods: :class:`KVBackend` / :class:`AsyncKVBackend` under
:class:`KVStore` / :class:`AsyncKVStore` (the key-value kit, ``docs/kv.md``; no driver needed).

The optional abilities, as protocols to check with ``isinstance``: :class:`ForksInStore`,
:class:`Restores`, :class:`Purges` (and their ``Async`` twins); :mod:`tether.stores.abilities`.

A store that wraps another (to encrypt, audit, fence, ...): subclass :class:`WrappingStore` /
:class:`AsyncWrappingStore`, which forward everything to ``inner``, and override only what
the wrapper changes (:mod:`tether.stores.wrapping_async`).
"""

from .abilities import (
    AsyncForksInStore,
    AsyncPurges,
    AsyncRestores,
    ForksInStore,
    Purges,
    Restores,
)
from .base import AsyncStore, Store, SyncBackedAsyncStore
from .kv_async import AsyncKVBackend, AsyncKVStore
from .kv_sync import KVBackend, KVStore
from .wrapping_async import AsyncWrappingStore
from .wrapping_sync import WrappingStore

__all__ = [
    "AsyncForksInStore",
    "AsyncKVBackend",
    "AsyncKVStore",
    "AsyncPurges",
    "AsyncRestores",
    "AsyncStore",
    "AsyncWrappingStore",
    "ForksInStore",
    "KVBackend",
    "KVStore",
    "Purges",
    "Restores",
    "Store",
    "SyncBackedAsyncStore",
    "WrappingStore",
]
