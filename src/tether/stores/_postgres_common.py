"""The PostgreSQL store's no-I/O parts moved to :mod:`tether.stores.postgres` (``_options``,
``_connection``, ``_sql``, ``_migrations``, ``_rows``); the names imported from here before
stay importable here."""

from .postgres._migrations import MIGRATIONS
from .postgres._options import (
    check_conninfo,
    check_schema_name,
    connection_kwargs,
    describe,
    parse_url,
)
from .postgres._rows import changes_params, write_params
from .postgres._sql import Statements, list_statement

__all__ = [
    "MIGRATIONS",
    "Statements",
    "changes_params",
    "check_conninfo",
    "check_schema_name",
    "connection_kwargs",
    "describe",
    "list_statement",
    "parse_url",
    "write_params",
]
