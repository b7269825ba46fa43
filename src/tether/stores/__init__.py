"""The built-in stores. Each module is imported only when used; see :func:`tether.open_store`.

* :mod:`tether.stores.memory`: :class:`MemoryStore` / :class:`AsyncMemoryStore`
* :mod:`tether.stores.file`: :class:`FileStore` / :class:`AsyncFileStore`
* :mod:`tether.stores.sqlite`: :class:`SQLiteStore` / :class:`AsyncSQLiteStore`
* :mod:`tether.stores.redis_sync` / ``redis_async``: :class:`RedisStore` / :class:`AsyncRedisStore`
  (``tether[redis]``)
* :mod:`tether.stores.postgres_sync` / ``postgres_async``: :class:`PostgresStore` /
  :class:`AsyncPostgresStore` (``tether[postgres]``)
"""

from .base import AsyncStore, Store, SyncBackedAsyncStore

__all__ = ["AsyncStore", "Store", "SyncBackedAsyncStore"]
