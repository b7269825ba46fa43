"""The store conformance suite: the contract's clauses as pytest test classes.

Any store, built-in or your own, proves it keeps the contract by running them. Subclass
:class:`StoreConformance` (sync) or :class:`AsyncStoreConformance` (async) in a test module and
provide a ``store`` fixture yielding a fresh, empty store::

    import functools, pytest, tether
    from tether.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path, clock):    # clock: the suite's FakeClock
            with MyStore(tmp_path, clock=clock) as store:
                yield store

        # optional: run the multi-process clauses across real OS processes
        @pytest.fixture
        def store_opener(self, tmp_path):
            return functools.partial(MyStore, tmp_path)

With ``store_opener``, the clauses named in ``StoreConformance.multi_process_clauses`` race
real OS processes and take the longest: a fast loop may deselect them by name.

The async classes need pytest-asyncio (``pip install 'tether[testing]'``); with its strict mode,
declare the async ``store`` fixture with ``@pytest_asyncio.fixture``. See ``docs/stores.md``.
"""

from ._async_suite import AsyncStoreConformance
from ._clock import FakeClock
from ._sync_suite import StoreConformance

__all__ = ["AsyncStoreConformance", "FakeClock", "StoreConformance"]
