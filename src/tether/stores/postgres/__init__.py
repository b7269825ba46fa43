"""The PostgreSQL store (``tether[postgres]``): :class:`PostgresStore` and
:class:`AsyncPostgresStore`, sessions shared by many processes and machines.

One module per concern, none doing I/O but the two stores and ``_conn_*``:

* ``_options``: the URL and the store's options (tether's and libpq's);
* ``_connection``: what a driver error means, idle pooled connections, the search path;
* ``_sql``: every statement's SQL text, rendered once per schema (``Statements``);
* ``_migrations``: the numbered migrations of the tables, and their advisory lock;
* ``_rows``: each write's parameters, rows decoded, why a guarded statement matched nothing;
* ``_conn_async`` (and the generated ``_conn_sync``): single statements, the migration run,
  an old session's write-back;
* ``store_async`` (and the generated ``store_sync``): the stores, driver calls only.
"""

from .store_async import AsyncPostgresStore
from .store_sync import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore"]
