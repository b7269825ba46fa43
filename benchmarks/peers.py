"""Figure A of the chat-turn workload (WORKLOAD.md) for tether, raw sqlite3 and the peers.

Run ``.bench-venv/bin/python benchmarks/peers.py [--quick] [--json OUT.json]`` from the
repository root, in the bench virtualenv (``benchmarks/requirements-peers.txt``); tether itself
is imported from ``src/``. Everything is measured in ONE run on this machine, so the ratios to
raw sqlite3 at the same history length (not the absolute numbers) are what to compare.

Per-turn latency (median and p95) on sessions already holding n messages (pre-fill untimed),
n in 10, 100, 1,000 and 5,000 (10 and 1,000 with ``--quick``). One turn loads the history the
agent needs, appends a user message (~200 bytes of text) and an assistant message (~800 bytes,
fixed: no model is called) and commits. Systems, each on its own SQLite file in a temp dir:

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

Durability: each peer runs with its own defaults, which the table's legend prints (journal
mode as found in the file, and ``synchronous`` of a fresh connection: FULL unless the library
sets it). A peer that cannot be imported or fails is reported with a one-line reason and
skipped. Async peers get one event loop each, kept for the whole measurement.
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
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import chat_turn  # noqa: E402
from chat_turn import Json, Msg, System  # noqa: E402

import tether  # noqa: E402

T = TypeVar("T")
APP, USER = "bench", "user-1"
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


class AsyncSystem(System):
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

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from agents import SQLiteSession  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self._start_loop()
        self.path = directory / "openai_agents.db"
        self.sessions: list[Any] = [
            SQLiteSession(sid, str(self.path)) for sid in _session_ids(sessions)
        ]
        prefill = chat_turn.history(n)
        for session in self.sessions:
            self.run(session.add_items(list(prefill)))
        self.durability = _durability(self.path)

    async def _turn(self, session: Any, user: Msg, assistant: Msg) -> None:
        items = await session.get_items()
        assert items, "history must not be empty"
        await session.add_items([user, assistant])

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        self.run(self._turn(self.sessions[k], user, assistant))

    def close(self) -> None:
        for session in getattr(self, "sessions", []):
            session.close()
        self._stop_loop()


class LangGraphSqlite(System):
    name = "langgraph SqliteSaver"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from langchain_core.messages import AIMessage  # type: ignore[import-not-found, unused-ignore]
        from langgraph.checkpoint.sqlite import SqliteSaver  # type: ignore[import-not-found, unused-ignore]
        from langgraph.graph import END, START, MessagesState, StateGraph  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "langgraph.db"
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.reply = ""

        def respond(state: Any) -> dict[str, Any]:
            # Stands for the model call: the assistant's text is fixed for the turn.
            return {"messages": [AIMessage(content=self.reply)]}

        builder: Any = StateGraph(MessagesState)
        builder.add_node("respond", respond)
        builder.add_edge(START, "respond")
        builder.add_edge("respond", END)
        self.graph: Any = builder.compile(checkpointer=self.saver)
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
        assert len(state["messages"]) > 2

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


class AdkDatabaseSessions(AsyncSystem):
    name = "google-adk DatabaseSessionService"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        from google.adk.sessions import DatabaseSessionService  # type: ignore[import-not-found, unused-ignore]
        from sqlalchemy import event as sa_event  # type: ignore[import-not-found, unused-ignore]
        from sqlalchemy.ext.asyncio import create_async_engine  # type: ignore[import-not-found, unused-ignore]

        directory.mkdir(parents=True, exist_ok=True)
        self._start_loop()
        self.path = directory / "adk.db"
        url = f"sqlite+aiosqlite:///{self.path}"
        self.ids = _session_ids(sessions)
        # Pre-fill (untimed) through the public API, with synchronous=OFF to save time: one
        # template session of n events, then copied row by row in SQL to the other sessions.
        engine = create_async_engine(url)

        def no_sync(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

        sa_event.listen(engine.sync_engine, "connect", no_sync)
        prefill_service = DatabaseSessionService(db_engine=engine)
        self.run(self._prefill(prefill_service, n))
        self.run(prefill_service.close())
        self.run(engine.dispose())
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
        assert session.events, "history must not be empty"
        await self.service.append_event(session, self._event(0, user))
        await self.service.append_event(session, self._event(0, assistant))

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        self.run(self._turn(self.ids[k], user, assistant))

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


class LangChainSQLHistory(System):
    name = "langchain SQLChatMessageHistory"

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
        assert history.messages, "history must not be empty"
        history.add_messages([self._message(user), self._message(assistant)])

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()


PEERS: tuple[type[System], ...] = (
    OpenAIAgentsSession,
    LangGraphSqlite,
    AdkDatabaseSessions,
    LangChainSQLHistory,
)
# timed turns per system at each history length n
QUICK_LENGTHS = {10: 30, 1000: 20}
FULL_LENGTHS = {10: 200, 100: 200, 1000: 100, 5000: 40}
DURABILITY = {
    chat_turn.RawSQLite.name: "journal=wal, synchronous=NORMAL (set by the benchmark)",
    "tether sqlite whole": "journal=wal, synchronous=NORMAL (tether's default)",
    "tether sqlite cached": "journal=wal, synchronous=NORMAL (tether's default)",
}


def _reason(exc: BaseException) -> str:
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return line if len(line) <= 200 else line[:197] + "..."


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run (well under 2 min)")
    parser.add_argument("--json", type=Path, help="write rows, versions and machine info here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
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
    failures: dict[str, str] = {}
    rows: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="tether-peers-") as tmp:
        for n, reps in lengths.items():
            print(f"n={n}: {reps} timed turns per system", flush=True)
            rows += figure_a(makers, n, reps, Path(tmp), failures)
    _print_table(rows)
    print(
        "  each session is pre-filled to n, then takes 'turns/session' timed turns (history "
        "grows <= 5% of n); systems take turns in blocks of 10, in rotating order"
    )
    for name, reason in failures.items():
        print(f"skipped {name}: {reason}")
    elapsed = time.perf_counter() - started
    print(f"\ntotal run time {elapsed:.1f} s")
    if args.json:
        results: Json = {
            "machine": chat_turn.machine_info(),
            "settings": {"quick": args.quick, "figure_a_reps": lengths},
            "versions": versions,
            "figure_a": rows,
            "failures": failures,
            "notes": notes,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
