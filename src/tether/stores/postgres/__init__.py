"""The PostgreSQL store (``tether[postgres]``): :class:`PostgresStore` and
:class:`AsyncPostgresStore`, sessions shared by many processes and machines.

One module per concern, none doing I/O but the stores' (``_base_*``, ``_forks_*``,
``store_*``) and ``_conn_*``:

* ``_options``: the URL and the store's options (tether's and libpq's);
* ``_connection``: what a driver error means, idle pooled connections, the search path;
* ``_sql``: the writes' SQL text, and every statement rendered once per schema
  (``Statements``); ``_sql_reads`` (load, listing, lookups), ``_sql_shares`` (forks sharing
  their parent's rows), ``_sql_parts`` (the fragments they share);
* ``_migrations``: the numbered migrations of the tables, and their advisory lock;
* ``_rows``: each write's parameters, rows decoded, why a guarded statement matched nothing;
* ``_conn_async`` (and the generated ``_conn_sync``): single statements, the migration run,
  an old session's write-back, detaching forks before rows they read are dropped;
* ``_base_async`` (and the generated ``_base_sync``): the pool, connections, the guarded
  statement;
* ``_forks_async`` (and the generated ``_forks_sync``): ``fork_session`` and ``restore``;
* ``store_async`` (and the generated ``store_sync``): the stores, the contract's methods.
"""

from .store_async import AsyncPostgresStore
from .store_sync import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore"]
