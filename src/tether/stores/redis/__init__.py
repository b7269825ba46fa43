"""The Redis store (``tether[redis]``): :class:`RedisStore` and :class:`AsyncRedisStore`,
sessions shared by every process and machine that uses one Redis server.

One module per concern, none doing I/O but the two stores:

* ``lua/``: the Lua scripts (package data), and ``_scripts``: each one's KEYS and typed ARGV;
* ``_options``: the URL and the store's options, and what a server's refusal means;
* ``_keys``: the key layout of a namespace and the listing indexes' members;
* ``_codec``: each script's arguments built, and its reply decoded or raised;
* ``_listing``: which index a listing reads, and the page its rows make;
* ``store_async`` (and the generated ``store_sync``): the stores, driver calls only.
"""

from .store_async import AsyncRedisStore, client_options
from .store_sync import RedisStore

__all__ = ["AsyncRedisStore", "RedisStore", "client_options"]
