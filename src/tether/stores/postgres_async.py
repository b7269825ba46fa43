"""``from tether.stores.postgres_async import AsyncPostgresStore`` keeps working: the store
lives in :mod:`tether.stores.postgres`."""

from .postgres.store_async import AsyncPostgresStore

__all__ = ["AsyncPostgresStore"]
