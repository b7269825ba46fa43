"""The Redis store's no-I/O parts moved to :mod:`tether.stores.redis` (``_options``, ``_keys``,
``_codec``, ``_listing``, ``_scripts``); the names imported from here before stay importable
here."""

from .redis._keys import Keys
from .redis._options import check_namespace, parse_url

__all__ = ["Keys", "check_namespace", "parse_url"]
