"""``from tether.stores.redis_sync import RedisStore, client_options`` keeps working: the store
lives in :mod:`tether.stores.redis`."""

from .redis.store_sync import RedisStore, client_options

__all__ = ["RedisStore", "client_options"]
