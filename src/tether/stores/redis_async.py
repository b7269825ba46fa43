"""``from tether.stores.redis_async import AsyncRedisStore, client_options`` keeps working: the
store lives in :mod:`tether.stores.redis`."""

from .redis.store_async import AsyncRedisStore, client_options

__all__ = ["AsyncRedisStore", "client_options"]
