"""The store conformance suite: the contract's clauses as pytest test classes.

Any store, built-in or your own, proves it keeps the contract by running them: the core
contract (:class:`CoreConformance` / :class:`AsyncCoreConformance`), plus one class per optional
ability it offers (``tether.stores.abilities``): :class:`ForkConformance` (``fork_session``),
:class:`RestoreConformance` (``restore``), :class:`PurgeConformance` (``purge_expired``), each
with an ``Async`` twin. An ability class skips its clauses, saying why, for a store without
the ability. :class:`StoreConformance` / :class:`AsyncStoreConformance` are all of them at once.

Subclass them in a test module and provide a ``store`` fixture yielding a fresh, empty store::

    import functools, pytest, tether
    from tether.testing import CoreConformance, PurgeConformance, RestoreConformance

    class TestMyStore(CoreConformance, RestoreConformance, PurgeConformance):
        @pytest.fixture
        def store(self, tmp_path, clock):    # clock: the suite's FakeClock
            with MyStore(tmp_path, clock=clock) as store:
                yield store

        # optional: run the multi-process clauses across real OS processes
        @pytest.fixture
        def store_opener(self, tmp_path):
            return functools.partial(MyStore, tmp_path)

With ``store_opener``, the clauses named in ``CoreConformance.multi_process_clauses`` race
real OS processes and take the longest: a fast loop may deselect them by name.

The async classes need pytest-asyncio (``pip install 'tether[testing]'``); with its strict mode,
declare the async ``store`` fixture with ``@pytest_asyncio.fixture``. See ``docs/stores.md``.
"""

from ._async_abilities import AsyncForkConformance, AsyncPurgeConformance, AsyncRestoreConformance
from ._async_suite import AsyncCoreConformance, AsyncStoreConformance
from ._clock import FakeClock
from ._sync_abilities import ForkConformance, PurgeConformance, RestoreConformance
from ._sync_suite import CoreConformance, StoreConformance

__all__ = [
    "AsyncCoreConformance",
    "AsyncForkConformance",
    "AsyncPurgeConformance",
    "AsyncRestoreConformance",
    "AsyncStoreConformance",
    "CoreConformance",
    "FakeClock",
    "ForkConformance",
    "PurgeConformance",
    "RestoreConformance",
    "StoreConformance",
]
