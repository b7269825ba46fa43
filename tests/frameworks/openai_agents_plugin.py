"""A pytest plugin that runs the OpenAI Agents SDK's own test suite on tether.

Loaded with ``-p openai_agents_plugin`` (this folder on ``PYTHONPATH``) from the root of the
SDK's sdist. In ``pytest_configure``, before any test module imports them, it rebinds the
sessions the SDK's tests use to tether-backed stand-ins:

* ``agents.SQLiteSession`` (the session tests in ``tests/memory/``) becomes
  :class:`TetherSQLiteSession`: sessions of one ``db_path`` share data, ``:memory:`` is private
  to its object, as with SQLite. Like the SDK's class it offers ``_get_compaction_snapshot``
  (only on the class itself, not on subclasses) and no ``_atomic_replace_items``.
* ``tests.utils.simple_session.SimpleListSession`` / ``CountingSession`` /
  ``IdStrippingSession`` (the in-memory double of about two dozen runner-level files) become
  tether-backed classes with the same ``saved_items`` / ``pop_calls``, and, like the double,
  without the compaction hooks (those tests expect the SDK's fallback path).

``TETHER_AGENTS_BACKEND`` picks the store: ``memory``, ``sqlite``, ``redis`` or ``postgres``
(the servers from ``TETHER_TEST_REDIS_URL`` / ``TETHER_TEST_POSTGRES_URL``). Every run gets its
own Redis namespace or PostgreSQL schema (removed at the end), and every stand-in object its
own prefix of session ids, so no two tests share a session. A server that does not answer
stops the run (under ``CI=true`` as an error, else the run is skipped with the reason).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.integrations.openai_agents import TetherSession

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_RUN = secrets.token_hex(4)
_state: dict[str, Any] = {}


def _store() -> tether.Store:
    store: tether.Store = _state["store"]
    return store


def _open(backend: str) -> tuple[tether.Store, Any]:
    """The run's store and how to remove what it stored."""
    if backend == "memory":
        return tether.open_store("memory://"), None
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="tether-agents-")
        return tether.open_store(f"sqlite:///{folder}/sessions.db"), folder
    if backend == "redis":
        namespace = f"t{_RUN}agents"
        return tether.open_store(f"{REDIS_URL}?namespace={namespace}"), namespace
    if backend == "postgres":
        schema = f"tether_t{_RUN}agents"
        sep = "&" if "?" in POSTGRES_URL else "?"
        return tether.open_store(f"{POSTGRES_URL}{sep}schema={schema}"), schema
    raise pytest.UsageError(
        f"TETHER_AGENTS_BACKEND={backend!r}: use memory, sqlite, redis or postgres"
    )


def _cleanup(backend: str, what: Any) -> None:
    if backend == "sqlite":
        import shutil

        shutil.rmtree(what, ignore_errors=True)
    elif backend == "redis":
        import redis

        from tether.stores.redis._keys import Keys

        client = redis.Redis.from_url(REDIS_URL.split("?", 1)[0])
        try:
            pattern = Keys.for_namespace(what).pattern
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    elif backend == "postgres":
        import psycopg
        from psycopg import sql

        assert what.startswith("tether_t"), what
        with psycopg.connect(POSTGRES_URL.split("?", 1)[0], autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(what)))


class TetherSQLiteSession(TetherSession):
    """``agents.SQLiteSession``'s constructor and behaviour, stored in tether."""

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        if str(db_path) == ":memory:":
            database = secrets.token_hex(8)  # private to this object, as SQLite's :memory:
        else:
            where = f"{Path(db_path).expanduser().resolve()}|{messages_table}"
            database = hashlib.sha256(where.encode()).hexdigest()[:16]
        super().__init__(f"{database}/{session_id}", _store(), session_settings)
        self.session_id = session_id
        self.db_path = db_path
        self.sessions_table = sessions_table
        self.messages_table = messages_table
        self._closed = False

    async def _get_compaction_snapshot(self, limit: int, *, prune_prefix: Any = None) -> Any:
        # As the SDK's: a subclass may transform items, so it must bring its own snapshot.
        if type(self) is not TetherSQLiteSession:
            return None
        return await super()._get_compaction_snapshot(limit, prune_prefix=prune_prefix)

    _atomic_replace_items = None  # type: ignore[assignment]  # SQLiteSession has none

    def close(self) -> None:  # type: ignore[override]  # SQLiteSession.close is sync
        self._closed = True

    async def _ready(self) -> Any:
        if self._closed:
            raise RuntimeError("SQLiteSession is closed")
        return await super()._ready()


class TetherListSession(TetherSession):
    """``tests.utils.simple_session.SimpleListSession``, stored in tether."""

    def __init__(self, session_id: str = "test", history: list[Any] | None = None) -> None:
        super().__init__(f"{secrets.token_hex(8)}/{session_id}", _store())
        self.session_id = session_id
        self.session_settings = None
        self._ignore_ids_for_matching = False
        if history:
            _store().create(tether.Session(id=self.tether_id, history=list(history)))

    @property
    def saved_items(self) -> list[Any]:
        """What the double's ``saved_items`` list shows: every stored item, oldest first."""
        try:
            return [e.item for e in _store().load(self.tether_id).items]
        except tether.SessionNotFound:
            return []

    @property
    def _items(self) -> list[Any]:
        return self.saved_items

    # The double has no compaction hooks: the runner-level tests expect the SDK's fallback.
    _get_compaction_snapshot = None  # type: ignore[assignment]
    _atomic_replace_items = None  # type: ignore[assignment]


class TetherCountingSession(TetherListSession):
    def __init__(self, session_id: str = "test", history: list[Any] | None = None) -> None:
        super().__init__(session_id=session_id, history=history)
        self.pop_calls = 0

    async def pop_item(self, *, wrapper: Any = None) -> Any:
        self.pop_calls += 1
        return await super().pop_item(wrapper=wrapper)


class TetherIdStrippingSession(TetherCountingSession):
    def __init__(self, session_id: str = "test", history: list[Any] | None = None) -> None:
        super().__init__(session_id=session_id, history=history)
        self._ignore_ids_for_matching = True

    async def add_items(self, items: list[Any], *, wrapper: Any = None) -> None:
        clean = [
            {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item
            for item in items
        ]
        await super().add_items(clean, wrapper=wrapper)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    backend = os.environ.get("TETHER_AGENTS_BACKEND", "memory")
    try:
        store, cleanup = _open(backend)
        store.exists("probe")  # a server that does not answer fails here, not in every test
    except tether.StoreError as exc:
        message = f"{backend} server not reachable: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise pytest.UsageError(f"CI=true and {message}") from exc
        pytest.exit(f"skipped: {message}", returncode=0)
    _state.update(store=store, backend=backend, cleanup=cleanup)

    import agents
    import agents.memory
    import agents.memory.sqlite_session

    for module in (agents, agents.memory, agents.memory.sqlite_session):
        module.SQLiteSession = TetherSQLiteSession  # type: ignore[attr-defined]

    # The SDK's tests package (run from the sdist's root), not tether's.
    double: Any = importlib.import_module("tests.utils.simple_session")
    double.SimpleListSession = TetherListSession
    double.CountingSession = TetherCountingSession
    double.IdStrippingSession = TetherIdStrippingSession


def pytest_report_header(config: pytest.Config) -> str:
    return f"tether: the SDK's sessions run on tether ({_state.get('backend')})"


def pytest_unconfigure(config: pytest.Config) -> None:
    store = _state.pop("store", None)
    if store is None:
        return
    store.close()
    _cleanup(_state["backend"], _state["cleanup"])


DESELECTED = Path(__file__).with_name("openai_agents_deselected.txt")


def _deselected() -> dict[str, str]:
    """``node id -> reason`` from openai_agents_deselected.txt."""
    out = {}
    for line in DESELECTED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            node, _, reason = line.partition("  # ")
            out[node.strip()] = reason.strip()
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = _deselected()
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        listed_here = item.nodeid in listed or item.nodeid.split("[", 1)[0] in listed
        (dropped if listed_here else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
