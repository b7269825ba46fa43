"""Figures A-F of the chat-turn workload for tether, raw sqlite3 and the peers.

The workload is described in docs/benchmarks.md ("The workload").

Run ``.bench-venv/bin/python benchmarks/peers.py [--quick] [--json OUT.json]`` from the
repository root, in the bench virtualenv (``benchmarks/requirements-peers.txt``); tether itself
is imported from ``src/``. Everything is measured in ONE run on this machine, and every figure
has a raw sqlite3 row measured beside the others (``x raw``): the ratios, not the absolute
numbers, are what to compare.

One turn loads the history the agent needs, appends a user message (~200 bytes of text) and an
assistant message (~800 bytes, fixed: no model is called) and commits. Systems, each on its own
SQLite file in a temp dir:

- ``raw sqlite3`` and ``tether sqlite whole`` / ``cached``: exactly as in ``chat_turn.py``
  (imported from it): WAL with ``synchronous=NORMAL``.
- ``openai-agents SQLiteSession``: one ``SQLiteSession(session_id, db_path)`` per conversation;
  ``await session.get_items()`` then ``await session.add_items([user, assistant])``.
- ``langgraph SqliteSaver``: a one-node ``MessagesState`` graph compiled with
  ``SqliteSaver(sqlite3.connect(path, check_same_thread=False))``;
  ``graph.invoke({"messages": [user]}, {"configurable": {"thread_id": ...}})``, the node
  returns the assistant message. The invoke result holds the whole history.
- ``google-adk DatabaseSessionService``: ``DatabaseSessionService("sqlite+aiosqlite:///...")``;
  ``get_session`` then two ``append_event`` (the user's event, the model's event).
- ``langchain SQLChatMessageHistory``: one engine for the file, one history per session;
  read ``.messages`` then ``add_messages([HumanMessage, AIMessage])``.

Figures (``--quick`` sizes in brackets):

- A. Per-turn latency (median, p95) on sessions already holding n messages (pre-fill untimed),
  n in 10, 100, 1,000 and 5,000 [10, 1,000].
- B. Throughput: S sessions x T turns round-robin in one process, sessions starting empty,
  each turn the one of figure A (tether: the whole-history turn); turns/s of each round (fresh
  files every round, median of the rounds) and the per-turn median and p95. docs/benchmarks.md asks
  for 50 x 40, but the slowest peers take 10-40 ms a turn, so every system runs the same
  smaller plan, printed: 10 x 20, 3 rounds [5 x 4, 1 round].
- C. Load a 1,000-message history: raw ``SELECT`` as row tuples and as message dicts (x raw is
  to the tuples), tether ``store.load``, openai-agents ``get_items()``, langgraph
  ``graph.get_state(config).values["messages"]``, adk ``get_session`` (its events) and
  langchain ``.messages``.
- D. Bytes written per turn at n = 1,000 and 5,000 [1,000], over a few turns on one session,
  between two ``wal_checkpoint(TRUNCATE)`` of the file (a no-op on rollback-journal files):
  ``file B/turn`` is the WAL's size after the turns plus the main file's growth (a rollback
  journal is deleted at every commit, so for those systems it is the main file's growth only,
  and an auto-checkpoint makes it an underestimate for WAL); ``write() B/turn`` is the process's
  ``wchar`` in /proc/self/io over the turns and the closing checkpoint: every byte SQLite handed
  to the OS for the file, its WAL and its journal (Linux only). x raw is on ``write()`` bytes.
- E. Fork a 10,000-message session [2,000], beside one commit of a turn's two messages on raw
  and tether: raw ``INSERT ... SELECT`` into a new session id; tether sqlite ``fork_session``
  (the child shares its parent's rows); openai-agents ``get_items()`` then ``add_items`` into a
  new ``SQLiteSession``; langchain ``.messages`` then ``add_messages`` under a new session id;
  langgraph ``checkpointer.copy_thread`` where the saver implements it (SqliteSaver raises
  NotImplementedError, checked at run time), else ``graph.get_state(old).values`` then
  ``graph.update_state(new thread, values)``; adk has no copy API: ``create_session`` then one
  ``append_event`` (its own durable transaction) per event, ~10 ms an event here, so it forks
  1,000 events [100], untimed warm-up skipped, and its row says so with the 10,000-event time
  extrapolated (a pre-fill of 10,000 events through ``append_event`` would take over a minute
  too). x raw is to raw's fork at the same n.
- F. List the newest 50 sessions of one owner among N sessions, 10 owners round-robin,
  N = 1,000 [200]: raw and tether as in ``chat_turn.figure_f``; adk ``list_sessions(app_name=,
  user_id=owner)``, which returns all the owner's sessions, oldest first (the newest 50 are
  sliced off its end); langgraph ``checkpointer.list(None, filter={"user_id": owner},
  limit=50)`` over threads of one checkpoint each, created by ``update_state`` with
  ``user_id`` in the config (the limit counts checkpoints, not threads, and the filter is a
  ``json_extract`` over every checkpoint row). openai-agents and langchain have no listing API
  (checked on their classes at run time): their rows carry the reason (``note``), no number.

Durability: each peer runs with its own defaults, which figure A's legend and figure D's table
print (journal mode as found in the file, and ``synchronous`` of a fresh connection: FULL unless
the library sets it, and none of them does): openai-agents and langgraph WAL + FULL, adk and
langchain rollback journal (DELETE) + FULL; raw sqlite3 and tether WAL + NORMAL. A peer that
cannot be imported or fails in a figure is reported with a one-line reason and the run goes on.
Async peers get one event loop each, kept for the whole measurement. Pre-fills are untimed; adk's
goes through ``append_event`` with ``synchronous=OFF`` once per history length, and is then
copied (as a file, and row by row in SQL to the other sessions).
"""

# The peers are imported lazily (inside the functions) and marked "type: ignore": they live
# only in the bench virtualenv, never in the main one that type-checks this file.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import math
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import chat_turn  # noqa: E402
from chat_turn import Json, Msg, System  # noqa: E402

import tether  # noqa: E402
from tether import Session, Store  # noqa: E402

T = TypeVar("T")
APP, USER = "bench", "user-1"
OWNERS, LISTED_OWNER, LIST_LIMIT = 10, "owner-3", 50
PEER_PACKAGES = (
    "openai-agents",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "langchain-community",
    "google-adk",
    "google-genai",
    "sqlalchemy",
    "aiosqlite",
    "greenlet",
    "pydantic",
    "orjson",
)


def _session_ids(sessions: int) -> list[str]:
    return [f"session-{k:05d}" for k in range(sessions)]


def _owner(i: int) -> str:
    return f"owner-{i % OWNERS}"


def _durability(db: Path) -> str:
    """Journal mode as stored in ``db`` and ``synchronous`` of a fresh connection."""
    conn = sqlite3.connect(db)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        conn.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal={mode}, synchronous={names.get(sync, sync)} (library default)"


def _no_listing(cls: Any, why: str) -> str:
    """The reason ``cls`` cannot list sessions, checked on its public attributes."""
    public = sorted(name for name in dir(cls) if not name.startswith("_"))
    maybe = [n for n in public if any(w in n.lower() for w in ("list", "search", "sessions"))]
    if maybe:
        return f"not measured: {cls.__name__} has {', '.join(maybe)}, unknown to this benchmark"
    return f"no listing API: {cls.__name__}'s public attributes are {', '.join(public)}; {why}"


class Peer(System):
    """A peer library: figure A's turn, plus what figures C, E and F ask of it."""

    load_api = fork_api = list_api = ""
    fork_warmup = True  # figure E forks once untimed before the timed forks

    def load(self, k: int) -> Sequence[Any]:
        """Session ``k``'s history, read the way the library's docs say (figure C)."""
        raise NotImplementedError

    def fork(self, k: int, new_id: str) -> None:
        """Copy session ``k`` into a new session ``new_id`` with the public API (figure E)."""
        raise NotImplementedError

    def no_listing(self) -> str | None:
        """Why the library cannot list an owner's sessions, or None if it can (figure F)."""
        return None

    def setup_listing(self, directory: Path, total: int) -> None:
        """``total`` sessions, owners round-robin (figure F)."""
        raise NotImplementedError

    def newest(self, owner: str, limit: int) -> list[str]:
        """Ids of the ``limit`` newest sessions of ``owner``, newest first (figure F)."""
        raise NotImplementedError


class AsyncSystem(Peer):
    """A peer with an async API: one event loop, kept from setup to close."""

    def _start_loop(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def _stop_loop(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


class OpenAIAgentsSession(AsyncSystem):
    name = "openai-agents SQLiteSession"
    load_api = "get_items()"
    fork_api = "get_items() then add_items() into a new SQLiteSession"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from agents import SQLiteSession  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self._start_loop()
        self.path = directory / "openai_agents.db"
        self.forks: list[Any] = []
        self.sessions: list[Any] = [
            SQLiteSession(sid, str(self.path)) for sid in _session_ids(sessions)
        ]
        prefill = chat_turn.history(n)
        for session in self.sessions:
            self.run(session.add_items(list(prefill)))
        self.durability = _durability(self.path)

    async def _turn(self, session: Any, user: Msg, assistant: Msg) -> None:
        items = await session.get_items()
        assert isinstance(items, list)
        await session.add_items([user, assistant])

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        self.run(self._turn(self.sessions[k], user, assistant))

    def load(self, k: int) -> Sequence[Any]:
        items: list[Any] = self.run(self.sessions[k].get_items())
        return items

    @staticmethod
    async def _copy(source: Any, target: Any) -> None:
        await target.add_items(await source.get_items())

    def fork(self, k: int, new_id: str) -> None:
        from agents import SQLiteSession  # type: ignore[import-not-found, unused-ignore]

        target = SQLiteSession(new_id, str(self.path))
        self.forks.append(target)  # a user keeps it; closed with the others
        self.run(self._copy(self.sessions[k], target))

    def no_listing(self) -> str:
        from agents import SQLiteSession  # type: ignore[import-not-found, unused-ignore]

        return _no_listing(
            SQLiteSession,
            "an instance is bound to one session_id, and its agent_sessions table "
            "(session_id, created_at, updated_at) has no owner column",
        )

    def close(self) -> None:
        for session in [*getattr(self, "sessions", []), *getattr(self, "forks", [])]:
            session.close()
        self._stop_loop()


class LangGraphSqlite(Peer):
    name = "langgraph SqliteSaver"
    load_api = 'graph.get_state(config).values["messages"]'
    fork_api = "checkpointer.copy_thread(source, target)"
    list_api = 'checkpointer.list(None, filter={"user_id": owner}, limit=50)'

    def _open(self, directory: Path) -> None:
        from langchain_core.messages import AIMessage  # type: ignore[import-not-found, unused-ignore]
        from langgraph.checkpoint.sqlite import SqliteSaver  # type: ignore[import-not-found, unused-ignore]
        from langgraph.graph import END, START, MessagesState, StateGraph  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "langgraph.db"
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.reply = ""
        self.copy_thread = True  # until the saver says it cannot

        def respond(state: Any) -> dict[str, Any]:
            # Stands for the model call: the assistant's text is fixed for the turn.
            return {"messages": [AIMessage(content=self.reply)]}

        builder: Any = StateGraph(MessagesState)
        builder.add_node("respond", respond)
        builder.add_edge(START, "respond")
        builder.add_edge("respond", END)
        self.graph: Any = builder.compile(checkpointer=self.saver)

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        self._open(directory)
        self.configs = [{"configurable": {"thread_id": sid}} for sid in _session_ids(sessions)]
        prefill = chat_turn.history(n)
        for config in self.configs:
            # The pre-fill as one checkpoint, written as if the node had produced it.
            self.graph.update_state(config, {"messages": list(prefill)}, as_node="respond")
        if len(self.graph.get_state(self.configs[-1]).values["messages"]) != n:
            raise RuntimeError("the pre-fill did not give the last thread n messages")
        self.durability = _durability(self.path)

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        self.reply = assistant["content"]
        state = self.graph.invoke({"messages": [user]}, self.configs[k])
        assert len(state["messages"]) >= 2

    def load(self, k: int) -> Sequence[Any]:
        messages: list[Any] = self.graph.get_state(self.configs[k]).values["messages"]
        return messages

    def fork(self, k: int, new_id: str) -> None:
        source = self.configs[k]
        if self.copy_thread:
            try:
                self.saver.copy_thread(source["configurable"]["thread_id"], new_id)
                return
            except NotImplementedError:
                self.copy_thread = False
                self.fork_api = (
                    "get_state(thread).values then update_state(new thread, values) "
                    f"({type(self.saver).__name__}.copy_thread raises NotImplementedError)"
                )
        values = self.graph.get_state(source).values
        self.graph.update_state({"configurable": {"thread_id": new_id}}, values, as_node="respond")

    def setup_listing(self, directory: Path, total: int) -> None:
        self._open(directory)
        default = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        self.conn.execute("PRAGMA synchronous=OFF")  # an untimed pre-fill
        for i in range(total):
            # LangGraph copies the config's configurable keys (but thread_id) into the
            # checkpoint's metadata: the owner is what the metadata filter sees.
            config = {"configurable": {"thread_id": f"s{i:06d}", "user_id": _owner(i)}}
            self.graph.update_state(
                config, {"messages": [{"role": "user", "content": "hello"}]}, as_node="respond"
            )
        self.conn.execute(f"PRAGMA synchronous={int(default)}")

    def newest(self, owner: str, limit: int) -> list[str]:
        found = self.saver.list(None, filter={"user_id": owner}, limit=limit)
        return [c.config["configurable"]["thread_id"] for c in found]

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


def _adk_prefill_service(url: str) -> tuple[Any, Any]:
    """An engine with ``synchronous=OFF`` and a service on it, for untimed pre-fills."""
    from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]
    from sqlalchemy import event as sa_event  # type: ignore[import-not-found, unused-ignore]
    from sqlalchemy.ext.asyncio import create_async_engine  # type: ignore[import-not-found, unused-ignore]

    engine = create_async_engine(url)

    def no_sync(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    sa_event.listen(engine.sync_engine, "connect", no_sync)
    return engine, DatabaseSessionService(db_engine=engine)


class AdkDatabaseSessions(AsyncSystem):
    name = "google-adk DatabaseSessionService"
    load_api = "get_session()"
    fork_api = "create_session() then append_event() per event (no copy API)"
    list_api = "list_sessions(app_name=, user_id=owner): all of the owner's sessions; last 50"
    fork_warmup = False  # one fork of 1,000 events takes seconds: a warm-up changes nothing

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self._start_loop()
        self.path = directory / "adk.db"
        url = f"sqlite+aiosqlite:///{self.path}"
        self.ids = _session_ids(sessions)
        # Pre-fill (untimed) through the public API, with synchronous=OFF to save time: one
        # template session of n events, kept as a file beside the figures' directories for the
        # next setup at the same n, then copied row by row in SQL to the other sessions.
        template = directory.parent / f"adk-template-{n}.db"
        if template.exists():
            shutil.copyfile(template, self.path)
        else:
            engine, prefill_service = _adk_prefill_service(url)
            self.run(self._prefill(prefill_service, n))
            self.run(prefill_service.close())
            self.run(engine.dispose())
            shutil.copyfile(self.path, template)
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            for sid in self.ids[1:]:
                for table, key in (("sessions", "id"), ("events", "session_id")):
                    _copy_rows(conn, table, key, self.ids[0], sid)
            conn.execute("COMMIT")
        finally:
            conn.close()
        # The service the turns use: the documented way, a sqlite URL and defaults.
        self.service: Any = DatabaseSessionService(db_url=url)
        last = self.run(
            self.service.get_session(app_name=APP, user_id=USER, session_id=self.ids[-1])
        )
        if last is None or len(last.events) != n:
            raise RuntimeError("the pre-fill did not give the last session n events")
        self.durability = _durability(self.path)

    async def _prefill(self, service: Any, n: int) -> None:
        session = await service.create_session(app_name=APP, user_id=USER, session_id=self.ids[0])
        for i, message in enumerate(chat_turn.history(n)):
            await service.append_event(session, self._event(i // 2, message))

    @staticmethod
    def _event(turn: int, message: Msg) -> Any:
        from google.adk.events import Event  # type: ignore[import-not-found, unused-ignore]
        from google.genai import types  # type: ignore[import-not-found, unused-ignore]

        user = message["role"] == "user"
        return Event(
            invocation_id=f"inv-{turn}",
            author="user" if user else "assistant",
            content=types.Content(
                role="user" if user else "model", parts=[types.Part(text=message["content"])]
            ),
        )

    async def _turn(self, sid: str, user: Msg, assistant: Msg) -> None:
        session = await self.service.get_session(app_name=APP, user_id=USER, session_id=sid)
        assert session is not None
        assert isinstance(session.events, list)
        await self.service.append_event(session, self._event(0, user))
        await self.service.append_event(session, self._event(0, assistant))

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        self.run(self._turn(self.ids[k], user, assistant))

    def load(self, k: int) -> Sequence[Any]:
        session = self.run(
            self.service.get_session(app_name=APP, user_id=USER, session_id=self.ids[k])
        )
        assert session is not None
        events: list[Any] = session.events
        return events

    async def _fork(self, source_id: str, new_id: str) -> None:
        service = self.service
        source = await service.get_session(app_name=APP, user_id=USER, session_id=source_id)
        assert source is not None
        target = await service.create_session(
            app_name=APP, user_id=USER, state=dict(source.state), session_id=new_id
        )
        for event in source.events:
            await service.append_event(target, event)

    def fork(self, k: int, new_id: str) -> None:
        self.run(self._fork(self.ids[k], new_id))

    def setup_listing(self, directory: Path, total: int) -> None:
        from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self._start_loop()
        self.path = directory / "adk.db"
        url = f"sqlite+aiosqlite:///{self.path}"
        engine, prefill_service = _adk_prefill_service(url)

        async def create_all() -> None:
            for i in range(total):
                await prefill_service.create_session(
                    app_name=APP, user_id=_owner(i), session_id=f"s{i:06d}"
                )

        self.run(create_all())
        self.run(prefill_service.close())
        self.run(engine.dispose())
        self.service = DatabaseSessionService(db_url=url)

    def newest(self, owner: str, limit: int) -> list[str]:
        listed = self.run(self.service.list_sessions(app_name=APP, user_id=owner))
        return [session.id for session in reversed(listed.sessions[-limit:])]

    def close(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            self.run(service.close())
        self._stop_loop()


def _copy_rows(conn: sqlite3.Connection, table: str, key: str, source: str, target: str) -> None:
    """Copy the rows of ``table`` whose ``key`` is ``source`` with ``key`` set to ``target``."""
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    picked = ", ".join("?" if column == key else column for column in columns)
    conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picked} FROM {table} WHERE {key} = ?",
        (target, source),
    )


class LangChainSQLHistory(Peer):
    name = "langchain SQLChatMessageHistory"
    load_api = ".messages"
    fork_api = ".messages then add_messages() under a new session id"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory  # type: ignore[import-not-found, unused-ignore]
        from sqlalchemy import create_engine  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "langchain.db"
        self.engine: Any = create_engine(f"sqlite:///{self.path}")
        self.histories: list[Any] = [
            SQLChatMessageHistory(session_id=sid, connection=self.engine)
            for sid in _session_ids(sessions)
        ]
        prefill = [self._message(m) for m in chat_turn.history(n)]
        for history in self.histories:
            history.add_messages(prefill)
        self.durability = _durability(self.path)

    @staticmethod
    def _message(message: Msg) -> Any:
        from langchain_core.messages import AIMessage, HumanMessage  # type: ignore[import-not-found, unused-ignore]

        kind = HumanMessage if message["role"] == "user" else AIMessage
        return kind(content=message["content"])

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        history = self.histories[k]
        assert isinstance(history.messages, list)
        history.add_messages([self._message(user), self._message(assistant)])

    def load(self, k: int) -> Sequence[Any]:
        messages: list[Any] = self.histories[k].messages
        return messages

    def fork(self, k: int, new_id: str) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory  # type: ignore[import-not-found, unused-ignore]

        target = SQLChatMessageHistory(session_id=new_id, connection=self.engine)
        target.add_messages(self.histories[k].messages)

    def no_listing(self) -> str:
        from langchain_community.chat_message_histories import SQLChatMessageHistory  # type: ignore[import-not-found, unused-ignore]

        return _no_listing(
            SQLChatMessageHistory,
            "an instance is bound to one session_id, and its message_store table "
            "(id, session_id, message) has no owner and no timestamp",
        )

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()


PEERS: tuple[type[Peer], ...] = (
    OpenAIAgentsSession,
    LangGraphSqlite,
    AdkDatabaseSessions,
    LangChainSQLHistory,
)
DURABILITY = {
    chat_turn.RawSQLite.name: "journal=wal, synchronous=NORMAL (set by the benchmark)",
    "tether sqlite whole": "journal=wal, synchronous=NORMAL (tether's default)",
    "tether sqlite cached": "journal=wal, synchronous=NORMAL (tether's default)",
}


@dataclass
class Plan:
    """How much of each figure one run measures."""

    lengths: dict[int, int]  # A: timed turns per system at each history length n
    b: tuple[int, int, int]  # B: sessions, turns per session, rounds
    c_reps: int  # C: timed loads per system
    d_turns: dict[int, int]  # D: turns per system at each history length n
    e_n: int  # E: messages in the forked session
    e_reps: int  # E: timed forks (and commits) of raw and tether
    e_peers: dict[str, tuple[int, int]] = field(default_factory=dict)  # E: peer -> (n, reps)
    f: tuple[int, int] = (1000, 200)  # F: sessions in all, timed listings per system


QUICK = Plan(
    lengths={10: 30, 1000: 20},
    b=(5, 4, 1),
    c_reps=10,
    d_turns={1000: 5},
    e_n=2000,
    e_reps=5,
    e_peers={
        OpenAIAgentsSession.name: (2000, 3),
        LangGraphSqlite.name: (2000, 3),
        AdkDatabaseSessions.name: (100, 2),
        LangChainSQLHistory.name: (2000, 3),
    },
    f=(200, 30),
)
FULL = Plan(
    lengths={10: 200, 100: 200, 1000: 100, 5000: 40},
    b=(10, 20, 3),
    c_reps=40,
    d_turns={1000: 20, 5000: 10},
    e_n=10_000,
    e_reps=20,
    e_peers={
        OpenAIAgentsSession.name: (10_000, 10),
        LangGraphSqlite.name: (10_000, 5),
        AdkDatabaseSessions.name: (1000, 2),
        LangChainSQLHistory.name: (10_000, 5),
    },
    f=(1000, 200),
)
HEADINGS = {
    **chat_turn.HEADINGS,
    "per_turn_median_us": "turn median µs",
    "per_turn_p95_us": "turn p95 µs",
    "file_bytes_per_turn": "file B/turn",
    "bytes_per_turn": "write() B/turn",
    "returned": "listed",
}


def _reason(exc: BaseException) -> str:
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _fail(failures: dict[str, str], name: str, where: str, exc: BaseException) -> None:
    failures[name] = f"{where}: {_reason(exc)}"
    print(f"  skipped {name}: {failures[name]}", flush=True)
    traceback.print_exc(limit=3, file=sys.stderr)


def _safe_close(system: System) -> None:
    with contextlib.suppress(Exception):  # a failed peer may be half set up
        system.close()


def figure_a(
    makers: Sequence[Callable[[], System]],
    n: int,
    reps: int,
    root: Path,
    failures: dict[str, str],
) -> list[Json]:
    """``chat_turn.figure_a`` that survives a peer failing: it is dropped, with its reason."""
    per_session = chat_turn.turns_per_session(n, reps)
    sessions = 1 + math.ceil(reps / per_session)  # session 0 takes the warm-up turns
    systems: list[System] = []
    for i, make in enumerate(makers):
        system = make()
        if system.name in failures:
            continue
        started = time.perf_counter()
        try:
            system.setup(root / f"a{n}-{i}", n, sessions)
            for w in range(chat_turn.WARMUP_TURNS):
                system.turn(0, *chat_turn.messages(w))
        except Exception as exc:
            failures[system.name] = f"n={n} setup: {_reason(exc)}"
            print(f"  skipped {system.name}: {failures[system.name]}", flush=True)
            traceback.print_exc(limit=3, file=sys.stderr)
            _safe_close(system)
            continue
        print(f"  n={n}: {system.name} set up in {time.perf_counter() - started:.1f} s", flush=True)
        systems.append(system)
    turns = [chat_turn.messages(n + r) for r in range(reps)]
    broken: set[int] = set()

    def call(i: int, r: int) -> None:
        if i in broken:
            return
        try:
            systems[i].turn(1 + r // per_session, *turns[r])
        except Exception as exc:
            broken.add(i)
            failures[systems[i].name] = f"n={n} turn {r}: {_reason(exc)}"
            print(f"  dropped {systems[i].name}: {failures[systems[i].name]}", flush=True)

    gc.collect()
    samples = chat_turn.interleave(len(systems), reps, call)
    for system in systems:
        _safe_close(system)
    rows: list[Json] = []
    for i, system in enumerate(systems):
        if i in broken:
            continue
        row = {"system": system.name, "n": n, **chat_turn.summarize(samples[i])}
        row["turns_per_session"] = per_session
        row["durability"] = getattr(system, "durability", DURABILITY.get(system.name, "?"))
        rows.append(row)
    raw = next((row for row in rows if row["system"] == chat_turn.RawSQLite.name), None)
    for row in rows:
        row["ratio_to_raw"] = row["median_us"] / raw["median_us"] if raw else float("nan")
    return rows


def _set_up(
    systems: Sequence[System],
    root: Path,
    tag: str,
    ns: Sequence[int],
    *,
    sessions: int,
    failures: dict[str, str],
) -> list[int]:
    """Set up ``systems[i]`` in ``root/tag-i`` with ``ns[i]`` messages; the indexes that work."""
    ready: list[int] = []
    for i, system in enumerate(systems):
        started = time.perf_counter()
        try:
            system.setup(root / f"{tag}-{i}", ns[i], sessions)
        except Exception as exc:
            _fail(failures, system.name, f"n={ns[i]} setup", exc)
            _safe_close(system)
            continue
        print(
            f"  {tag}: {system.name} (n={ns[i]:,}) set up in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        ready.append(i)
    return ready


def _interleave(reps: Sequence[int], call: Callable[[int, int], object], block: int) -> list[Any]:
    """``chat_turn.interleave`` with a number of reps per system: ns per system.

    Systems take turns in blocks of ``block`` consecutive reps, in rotating order; a system
    that has had its reps sits out the later blocks.
    """
    gc.collect()
    samples: list[list[int]] = [[] for _ in reps]
    for start in range(0, max(reps, default=0), block):
        for j in range(len(reps)):
            i = (start // block + j) % len(reps)
            for r in range(start, min(start + block, reps[i])):
                t0 = time.perf_counter_ns()
                call(i, r)
                samples[i].append(time.perf_counter_ns() - t0)
    return samples


def _measure(
    names: Sequence[str],
    reps: Sequence[int],
    call: Callable[[int, int], object],
    failures: dict[str, str],
    *,
    block: int = 10,
    warmup: bool | Sequence[bool] = True,
) -> dict[int, list[int]]:
    """Time ``call(i, r)``, after one untimed ``call(i, -1)``; a system that raises is dropped
    with its reason. Returns the ns of each system that did not fail, by index."""
    broken: set[int] = set()

    def guarded(i: int, r: int) -> None:
        if i in broken:
            return
        try:
            call(i, r)
        except Exception as exc:
            broken.add(i)
            _fail(failures, names[i], "warm-up" if r < 0 else f"rep {r}", exc)

    for i in range(len(names)):
        if warmup if isinstance(warmup, bool) else warmup[i]:
            guarded(i, -1)
    samples = _interleave(reps, guarded, block)
    return {i: s for i, s in enumerate(samples) if i not in broken}


def _with_ratios(rows: list[Json], key: str, base: float | None) -> list[Json]:
    for row in rows:
        value = row.get(key)
        row["ratio_to_raw"] = value / base if value is not None and base else None
    return rows


def figure_b(
    makers: Sequence[Callable[[], System]],
    plan: tuple[int, int, int],
    root: Path,
    failures: dict[str, str],
) -> list[Json]:
    """B. ``sessions`` x ``turns`` round-robin, sessions starting empty; fresh files each round."""
    sessions, turns, rounds = plan
    messages = [chat_turn.messages(t) for t in range(turns)]
    fleets: list[list[System]] = []  # per system, one set-up instance per round
    for i, make in enumerate(makers):
        fleet = [make() for _ in range(rounds)]
        try:
            for r, system in enumerate(fleet):
                system.setup(root / f"b{r}-{i}", 0, sessions)
        except Exception as exc:
            _fail(failures, fleet[0].name, "setup", exc)
            for system in fleet:
                _safe_close(system)
            continue
        fleets.append(fleet)
    per_turn: list[list[int]] = [[] for _ in fleets]

    def run(i: int, r: int) -> None:
        system, times = fleets[i][r], per_turn[i]
        for user, assistant in messages:
            for k in range(sessions):
                t0 = time.perf_counter_ns()
                system.turn(k, user, assistant)
                times.append(time.perf_counter_ns() - t0)

    names = [fleet[0].name for fleet in fleets]
    samples = _measure(names, [rounds] * len(fleets), run, failures, block=1, warmup=False)
    for system in (s for fleet in fleets for s in fleet):
        _safe_close(system)
    rows: list[Json] = []
    for i, ns in samples.items():
        rates = [sessions * turns * 1e9 / t for t in ns]
        turn = chat_turn.summarize(per_turn[i])
        rows.append(
            {
                "system": names[i],
                "sessions": sessions,
                "turns": turns,
                "rounds": rounds,
                "turns_per_s": statistics.median(rates),
                "rounds_turns_per_s": rates,
                "per_turn_median_us": turn["median_us"],
                "per_turn_p95_us": turn["p95_us"],
                "durability": getattr(fleets[i][0], "durability", DURABILITY.get(names[i], "?")),
            }
        )
    raw = next((r["turns_per_s"] for r in rows if r["system"] == chat_turn.RawSQLite.name), None)
    return _with_ratios(rows, "turns_per_s", raw)


def figure_c(
    sqlite_store: chat_turn.StoreFactory, reps: int, root: Path, failures: dict[str, str]
) -> list[Json]:
    """C. Load a 1,000-message history, each system the way its docs say."""
    n = 1000
    raw, whole = chat_turn.RawSQLite(), chat_turn.TetherWhole("sqlite", sqlite_store)
    peers: list[Peer] = [make() for make in PEERS]
    systems: list[System] = [raw, whole, *peers]
    ready = set(_set_up(systems, root, "c", [n] * len(systems), sessions=1, failures=failures))
    if 0 not in ready:
        return []
    loaders: list[tuple[str, str, Callable[[], Any]]] = [
        ("raw sqlite3 SELECT (row tuples)", "fetchall()", partial(raw.load, 0)),
        ("raw sqlite3 SELECT -> message dicts", "fetchall() -> dicts", partial(raw.load_dicts, 0)),
    ]
    if 1 in ready:
        loaders.append(("tether sqlite load()", "store.load(id)", lambda: whole.load(0).history))
    loaders += [
        (p.name, p.load_api, partial(p.load, 0)) for i, p in enumerate(peers) if i + 2 in ready
    ]

    def call(i: int, r: int) -> None:
        loaded = loaders[i][2]()
        if r < 0 and len(loaded) != n:
            raise RuntimeError(f"loaded {len(loaded)} messages, not {n}")

    names = [label for label, _, _ in loaders]
    samples = _measure(names, [reps] * len(loaders), call, failures)
    for i in ready:
        _safe_close(systems[i])
    rows = [
        {"system": names[i], "api": loaders[i][1], "n": n, **chat_turn.summarize(s)}
        for i, s in samples.items()
    ]
    base = rows[0]["median_us"] if rows and rows[0]["system"] == names[0] else None
    return _with_ratios(rows, "median_us", base)


def _wchar() -> int | None:
    """Bytes this process has passed to write()-like calls (Linux), or None."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _bytes_per_turn(system: System, directory: Path, n: int, turns: int) -> Json:
    """Figure D for one set-up system: what ``turns`` turns write."""
    db = Path(getattr(system, "path", directory / chat_turn.SQLITE_FILE))
    wal = db.with_name(db.name + "-wal")
    system.turn(0, *chat_turn.messages(n))  # warm-up: lazy imports, statement caches
    busy = chat_turn._pragma(db, "wal_checkpoint(TRUNCATE)")  # WAL (if any) empty, all in db
    size0, written0 = db.stat().st_size, _wchar()
    for t in range(turns):
        system.turn(0, *chat_turn.messages(n + 1 + t))
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    busy += chat_turn._pragma(db, "wal_checkpoint(TRUNCATE)")
    written1 = _wchar()
    page_size = chat_turn._pragma(db, "page_size")
    growth = db.stat().st_size - size0
    durability = getattr(system, "durability", DURABILITY.get(system.name, "?"))
    return {
        "system": system.name,
        "n": n,
        "turns": turns,
        "journal": durability.split(" (")[0],
        "file_bytes_per_turn": (wal_bytes + growth) / turns,
        "wal_bytes_per_turn": wal_bytes / turns,
        "db_growth_bytes_per_turn": growth / turns,
        # the headline: write() bytes (benchmarks/report.py shows this key)
        "bytes_per_turn": (
            (written1 - written0) / turns if written0 is not None and written1 is not None else None
        ),
        "payload_bytes_per_turn": chat_turn.USER_BYTES + chat_turn.ASSISTANT_BYTES,
        "page_size": page_size,
        "checkpoint_busy": bool(busy),
        "maybe_autocheckpointed": wal_bytes >= 1000 * (page_size + 24),
    }


def figure_d(
    sqlite_store: chat_turn.StoreFactory,
    n: int,
    turns: int,
    root: Path,
    failures: dict[str, str],
) -> list[Json]:
    """D. Bytes written per turn on a session of ``n`` messages, one system after the other."""
    systems: list[System] = [
        chat_turn.RawSQLite(),
        chat_turn.TetherWhole("sqlite", sqlite_store),
        *(make() for make in PEERS),
    ]
    rows: list[Json] = []
    for i in _set_up(systems, root, f"d{n}", [n] * len(systems), sessions=1, failures=failures):
        try:
            rows.append(_bytes_per_turn(systems[i], root / f"d{n}-{i}", n, turns))
        except Exception as exc:
            _fail(failures, systems[i].name, f"n={n} turns", exc)
        finally:
            _safe_close(systems[i])
    raw = next((r for r in rows if r["system"] == chat_turn.RawSQLite.name), None)
    for row in rows:
        for key, ratio in (
            ("bytes_per_turn", "ratio_to_raw"),
            ("file_bytes_per_turn", "file_ratio"),
        ):
            value, base = row[key], raw[key] if raw else None
            row[ratio] = value / base if value is not None and base else None
    return rows


def _fork(system: chat_turn.RawSQLite | Peer, r: int) -> None:
    system.fork(0, f"fork-{r:05d}")


def _raw_commit(raw: chat_turn.RawSQLite, n: int, r: int) -> None:
    raw.append(1, *chat_turn.messages(n + r))


def figure_e(
    sqlite_store: chat_turn.StoreFactory, plan: Plan, root: Path, failures: dict[str, str]
) -> list[Json]:
    """E. Fork a session of ``plan.e_n`` messages (a peer: of its own n), beside one commit."""
    n = plan.e_n
    peers: list[Peer] = [make() for make in PEERS]
    peer_plan = [plan.e_peers.get(p.name, (n, plan.e_reps)) for p in peers]
    raw_ns = sorted({n, *(pn for pn, _ in peer_plan)}, reverse=True)
    raws = [chat_turn.RawSQLite() for _ in raw_ns]
    # raw: session 0 is forked, session 1 takes the commits; a peer: session 0 is forked
    raw_ready = set(_set_up(raws, root, "e-raw", raw_ns, sessions=2, failures=failures))
    peer_ready = set(
        _set_up(peers, root, "e-peer", [pn for pn, _ in peer_plan], sessions=1, failures=failures)
    )
    # (system, op, n, reps, call)
    ops: list[tuple[str, str, int, int, Callable[[int], object]]] = []
    for j, (m, raw) in enumerate(zip(raw_ns, raws, strict=True)):
        if j in raw_ready:
            ops.append((raw.name, "fork (INSERT ... SELECT)", m, plan.e_reps, partial(_fork, raw)))
            if m == n:
                ops.append((raw.name, "commit", n, plan.e_reps, partial(_raw_commit, raw, n)))
    store: Store | None = None
    try:
        (root / "e-tether").mkdir(parents=True, exist_ok=True)
        store = sqlite_store(root / "e-tether")
        parent = store.create(Session(history=chat_turn.history(n)))
        shares = getattr(store, "fork_session", None) is not None
        label = "fork (fork_session: shares rows)" if shares else "fork (load + create)"
        ops.append(
            ("tether sqlite", label, n, plan.e_reps, chat_turn._fork_op(store, parent.id, n))
        )
        ops.append(("tether sqlite", "commit", n, plan.e_reps, chat_turn._Committer(store, n)))
    except Exception as exc:
        _fail(failures, "tether sqlite", f"n={n} setup", exc)
    for j, peer in enumerate(peers):
        if j in peer_ready:
            pn, reps = peer_plan[j]
            ops.append((peer.name, "fork", pn, reps, partial(_fork, peer)))
    labels = [f"{system} {op}" for system, op, _, _, _ in ops]
    warm = {p.name: p.fork_warmup for p in peers}
    samples = _measure(
        labels,
        [reps for _, _, _, reps, _ in ops],
        lambda i, r: ops[i][4](r),
        failures,
        block=1,
        warmup=[warm.get(system, True) for system, _, _, _, _ in ops],
    )
    for j in raw_ready:
        _safe_close(raws[j])
    for j in peer_ready:
        _safe_close(peers[j])
    if store is not None:
        store.close()
    rows: list[Json] = []
    for i, s in samples.items():
        system, op, m, _, _ = ops[i]
        row: Json = {"system": system, "op": op, "n": m, **chat_turn.summarize(s)}
        forker = next((p for p in peers if p.name == system), None)
        if forker is not None:
            row["api"] = forker.fork_api  # after the warm-up: langgraph's says which it took
        if forker is not None and m != n:
            row["full_n"] = n
            row["extrapolated_s_at_full_n"] = seconds = row["median_us"] / 1e6 * n / m
            row["note"] = (
                f"forked {m:,} messages, not {n:,}: {forker.fork_api}, one transaction an event; "
                f"{n:,} would take ~{seconds:.0f} s a fork at the measured rate, and as long "
                "again to pre-fill"
            )
        rows.append(row)
    forks = {
        r["n"]: r["median_us"] for r in rows if r["system"] == "raw sqlite3" and r["op"] != "commit"
    }
    for row in rows:
        base = forks.get(row["n"])
        row["ratio_to_raw"] = row["median_us"] / base if base else None
    return rows


def figure_f(
    sqlite_store: chat_turn.StoreFactory,
    total: int,
    reps: int,
    root: Path,
    failures: dict[str, str],
) -> list[Json]:
    """F. The newest 50 sessions of one owner among ``total`` (owners round-robin)."""
    directory = root / f"f{total}"
    directory.mkdir(parents=True, exist_ok=True)
    # (system, api, call, close)
    listers: list[tuple[str, str, Callable[[], Sequence[Any]], Callable[[], None]]] = []
    conn = chat_turn.raw_session_index(directory / "raw.db", [_owner(i) for i in range(total)])
    api = "SELECT ... WHERE owner = ? ORDER BY updated_at DESC, id DESC LIMIT 50 (indexed)"
    listers.append(
        (chat_turn.RawSQLite.name, api, partial(chat_turn._raw_newest, conn), conn.close)
    )
    try:
        (directory / "tether").mkdir()
        store = sqlite_store(directory / "tether")
        for i in range(total):
            store.create(Session(owner=_owner(i)))
        lister = partial(store.list, owner=LISTED_OWNER, limit=LIST_LIMIT)
        listers.append(
            (
                "tether sqlite",
                "store.list(owner=, limit=50)",
                lambda: lister().sessions,
                store.close,
            )
        )
    except Exception as exc:
        _fail(failures, "tether sqlite", "setup", exc)
    rows: list[Json] = []
    for i, make in enumerate(PEERS):
        peer = make()
        try:
            reason = peer.no_listing()
            if reason is not None:
                rows.append(
                    {
                        "system": peer.name,
                        "sessions": total,
                        "api": None,
                        "median_us": None,
                        "p95_us": None,
                        "note": reason,
                    }
                )
                continue
            started = time.perf_counter()
            peer.setup_listing(directory / f"peer-{i}", total)
            print(
                f"  f: {peer.name} ({total:,} sessions) set up in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
        except Exception as exc:
            _fail(failures, peer.name, "setup", exc)
            _safe_close(peer)
            continue
        newest = partial(peer.newest, LISTED_OWNER, LIST_LIMIT)
        listers.append((peer.name, peer.list_api, newest, peer.close))
    returned: dict[int, int] = {}

    def call(i: int, r: int) -> None:
        found = listers[i][2]()
        if r < 0:  # distinct sessions: langgraph's limit counts checkpoints
            ids = all(isinstance(x, str) for x in found)
            returned[i] = len(set(found)) if ids else len(found)

    names = [name for name, _, _, _ in listers]
    samples = _measure(names, [reps] * len(listers), call, failures)
    for _, _, _, close in listers:
        with contextlib.suppress(Exception):
            close()
    measured = [
        {
            "system": names[i],
            "sessions": total,
            "api": listers[i][1],
            "returned": returned.get(i),
            **chat_turn.summarize(s),
        }
        for i, s in samples.items()
    ]
    base = measured[0]["median_us"] if measured and 0 in samples else None
    return _with_ratios(measured + rows, "median_us", base)


def peer_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in PEER_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _print_table(rows: Sequence[Json]) -> None:
    keys = ("system", "n", "turns_per_session", "median_us", "p95_us", "ratio_to_raw")
    cells = [[chat_turn.HEADINGS.get(key, key) for key in keys]]
    cells += [[chat_turn._cell(key, row[key]) for key in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    print("\nA. per-turn latency by history length n (pre-fill untimed)")
    for line in cells:
        print(
            line[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)),
        )
    legend = {row["system"]: row["durability"] for row in rows}
    print("\ndurability (each on its own SQLite file):")
    for name, durability in legend.items():
        print(f"  {name.ljust(widths[0])}  {durability}")


def _print_rows(title: str, rows: Sequence[Json], keys: str, notes: Sequence[str] = ()) -> None:
    """Print the ``keys`` (space-separated) of ``rows``: a title above, notes below."""
    columns = keys.split()

    def cell(key: str, row: Json) -> str:
        value = row.get(key)
        return "n/a" if value is None else chat_turn._cell(key, value)

    cells = [[HEADINGS.get(key, key) for key in columns]]
    cells += [[cell(key, row) for key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for line in cells:
        print(
            line[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)),
        )
    for note in notes:
        print(f"  {note}")


def _print_failures(failures: dict[str, str]) -> None:
    for name, reason in failures.items():
        print(f"  skipped {name}: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run (under ~50 s)")
    parser.add_argument("--json", type=Path, help="write every figure, versions, machine info")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    plan = QUICK if args.quick else FULL
    notes: list[str] = []
    sqlite_store = chat_turn.store_factories(["sqlite"], notes)["sqlite"]
    makers: list[Callable[[], System]] = [
        chat_turn.RawSQLite,
        partial(chat_turn.TetherWhole, "sqlite", sqlite_store),
        partial(chat_turn.TetherCached, "sqlite", sqlite_store),
        *PEERS,
    ]
    versions = peer_versions()
    print(
        f"tether {tether.__version__}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}; peers: "
        + ", ".join(f"{p} {v}" for p, v in versions.items() if v is not None),
        flush=True,
    )
    failures: dict[str, dict[str, str]] = {f"figure_{x}": {} for x in "abcdef"}
    results: Json = {}
    clock: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tether-peers-") as tmp:
        root = Path(tmp)
        rows: list[Json] = []
        for n, reps in plan.lengths.items():
            print(f"A, n={n}: {reps} timed turns per system", flush=True)
            rows += figure_a(makers, n, reps, root, failures["figure_a"])
        results["figure_a"] = rows
        clock["a"] = time.perf_counter() - started
        _print_table(rows)
        print(
            "  each session is pre-filled to n, then takes 'turns/session' timed turns (history "
            "grows <= 5% of n); systems take turns in blocks of 10, in rotating order"
        )
        _print_failures(failures["figure_a"])

        b_sessions, b_turns, b_rounds = plan.b
        print(f"\nB: {b_sessions} sessions x {b_turns} turns, {b_rounds} round(s)", flush=True)
        results["figure_b"] = rows = figure_b(
            [*makers[:2], *PEERS], plan.b, root, failures["figure_b"]
        )
        clock["b"] = time.perf_counter() - started
        _print_rows(
            f"B. throughput: {b_sessions} sessions x {b_turns} turns round-robin, one process, "
            f"sessions start empty (median of {b_rounds} round(s); the workload's 50 x 40 scaled "
            "down for the slow peers, the same plan for every system)",
            rows,
            "system turns_per_s per_turn_median_us per_turn_p95_us ratio_to_raw",
            ["x raw = turns/s over raw sqlite3's; tether runs the whole-history turn"],
        )
        _print_failures(failures["figure_b"])

        print(f"\nC: {plan.c_reps} timed loads per system", flush=True)
        results["figure_c"] = rows = figure_c(sqlite_store, plan.c_reps, root, failures["figure_c"])
        clock["c"] = time.perf_counter() - started
        _print_rows(
            "C. load a 1,000-message history",
            rows,
            "system api median_us p95_us ratio_to_raw",
            ["x raw = to raw sqlite3 SELECT as row tuples"],
        )
        _print_failures(failures["figure_c"])

        rows = []
        for n, turns in plan.d_turns.items():
            print(f"\nD, n={n}: {turns} turns per system", flush=True)
            rows += figure_d(sqlite_store, n, turns, root, failures["figure_d"])
        results["figure_d"] = rows
        clock["d"] = time.perf_counter() - started
        d_notes = [
            "file B = WAL size after the turns + main file growth, between two "
            "wal_checkpoint(TRUNCATE) (a rollback journal is gone after each commit);",
            "write() B = wchar of /proc/self/io over the turns and the closing checkpoint: "
            "database, WAL and journal writes; x raw is on write() B",
            f"payload {chat_turn.USER_BYTES + chat_turn.ASSISTANT_BYTES} B of text per turn",
        ]
        auto = [r["system"] for r in rows if r["maybe_autocheckpointed"] or r["checkpoint_busy"]]
        if auto:
            notes.append(
                "figure D: an auto-checkpoint may have run or a checkpoint was busy for "
                + ", ".join(sorted(set(auto)))
                + " (its file B underestimates; write() B does not)"
            )
            d_notes.append(notes[-1])
        _print_rows(
            "D. bytes written per turn (each system on one session of n messages)",
            rows,
            "system n journal file_bytes_per_turn bytes_per_turn ratio_to_raw",
            d_notes,
        )
        _print_failures(failures["figure_d"])

        print(f"\nE: fork of {plan.e_n:,} messages", flush=True)
        results["figure_e"] = rows = figure_e(sqlite_store, plan, root, failures["figure_e"])
        clock["e"] = time.perf_counter() - started
        e_notes = ["x raw = to raw sqlite3's fork at the same n"]
        for row in rows:
            if "api" in row:
                e_notes.append(f"{row['system']}: {row['api']}")
            if "full_n" in row:
                notes.append(f"figure E: {row['system']} {row['note']}")
                e_notes.append(notes[-1])
        _print_rows(
            f"E. fork a session of {plan.e_n:,} messages (a peer with a smaller n says so), "
            "beside one commit of a turn's two messages",
            rows,
            "system op n median_us p95_us ratio_to_raw",
            e_notes,
        )
        _print_failures(failures["figure_e"])

        f_total, f_reps = plan.f
        print(f"\nF: {f_total:,} sessions, {f_reps} timed listings per system", flush=True)
        results["figure_f"] = rows = figure_f(
            sqlite_store, f_total, f_reps, root, failures["figure_f"]
        )
        clock["f"] = time.perf_counter() - started
        f_notes = ["x raw = to raw sqlite3's indexed SELECT"]
        f_notes += [f"{r['system']}: {r['api']}" for r in rows if r.get("api")]
        f_notes += [f"{r['system']}: {r['note']}" for r in rows if r.get("note")]
        _print_rows(
            f"F. list the newest {LIST_LIMIT} sessions of one owner among {f_total:,} "
            f"({OWNERS} owners round-robin)",
            rows,
            "system sessions returned median_us p95_us ratio_to_raw",
            f_notes,
        )
        _print_failures(failures["figure_f"])
    elapsed = time.perf_counter() - started
    marks = ", ".join(f"{x.upper()} by {t:.0f} s" for x, t in clock.items())
    print(f"\ntotal run time {elapsed:.1f} s ({marks})")
    if args.json:
        results = {
            "machine": chat_turn.machine_info(),
            "settings": {
                "quick": args.quick,
                "figure_a_reps": plan.lengths,
                "figure_b": dict(zip(("sessions", "turns", "rounds"), plan.b, strict=True)),
                "figure_c_reps": plan.c_reps,
                "figure_d_turns": plan.d_turns,
                "figure_e": {
                    "n": plan.e_n,
                    "reps": plan.e_reps,
                    "peers": {k: {"n": v[0], "reps": v[1]} for k, v in plan.e_peers.items()},
                },
                "figure_f": {"sessions": plan.f[0], "reps": plan.f[1], "owners": OWNERS},
            },
            "versions": versions,
            **results,
            "failures": failures,
            "notes": notes,
            "elapsed_s": elapsed,
            "elapsed_by_figure_s": clock,
        }
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
