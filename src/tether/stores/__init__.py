"""The built-in stores. Each module is imported only when used; see :func:`tether.open_store`.

* :mod:`tether.stores.memory`: :class:`MemoryStore` / :class:`AsyncMemoryStore`
* :mod:`tether.stores.file`: :class:`FileStore` / :class:`AsyncFileStore`
* :mod:`tether.stores.sqlite`: :class:`SQLiteStore` / :class:`AsyncSQLiteStore`
"""

from .base import AsyncStore, Store, SyncBackedAsyncStore

__all__ = ["AsyncStore", "Store", "SyncBackedAsyncStore"]
