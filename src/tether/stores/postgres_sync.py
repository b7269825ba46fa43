"""``from tether.stores.postgres_sync import PostgresStore`` keeps working: the store lives
in :mod:`tether.stores.postgres`."""

from .postgres.store_sync import PostgresStore

__all__ = ["PostgresStore"]
