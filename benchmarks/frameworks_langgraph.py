"""LangGraph: tether's ``TetherSaver`` beside ``SqliteSaver`` and ``PostgresSaver``.

A section of ``benchmarks/frameworks.py`` (run that). One chat graph (``StateGraph`` over
``MessagesState``, one node that answers with an ``AIMessage`` of ~800 characters), compiled
once per checkpointer:

- ``tether sqlite`` / ``tether postgres``: ``TetherSaver(tether.open_store(url))``;
- ``SqliteSaver``: ``SqliteSaver(sqlite3.connect(path, check_same_thread=False))``
  (langgraph-checkpoint-sqlite), its own file;
- ``PostgresSaver``: ``PostgresSaver(psycopg.connect(url, autocommit=True,
  prepare_threshold=0, row_factory=dict_row))`` after ``setup()`` (langgraph-checkpoint-postgres,
  as its docs connect), its own schema.

Durability as each is set up by default: ``SqliteSaver``'s connection runs SQLite's default
``synchronous=FULL`` (an fsync per commit, five a turn), tether's SQLite store its default
``synchronous=normal`` in WAL (no fsync per commit: it survives a killed process, not a power
loss; ``?synchronous=full`` for that). On a busy disk the savers' turns wait on it; on a quiet
one the turns are CPU (see "Where a turn's wall time goes" in docs/integrations/langgraph.md).

A turn is ``graph.invoke({"messages": [HumanMessage(~200 characters)]}, config)`` on one
thread, for T turns; the systems take each turn in rotating order, so every thread is as long
as the others whenever a turn is timed. Reported: per-turn latency (median, p95) over three
windows along the thread (its start, middle and end), the bytes each stores at the end (SQLite:
the file plus its WAL after ``wal_checkpoint(TRUNCATE)``; PostgreSQL: ``pg_total_relation_size``
of every table in the system's schema, indexes and TOAST included), and the time to iterate
``graph.get_state_history(config)`` in full at the end.

Note on the workload: ``MessagesState`` keeps the conversation in one channel that changes at
every step (two checkpoints a turn here). ``SqliteSaver`` and ``PostgresSaver`` store the whole
message list again each time, so their storage grows with the square of the turns;
``TetherSaver`` stores a list that extends its last snapshot as a delta (the new messages), and
a new snapshot once the deltas add up to its size (see docs/integrations/langgraph.md).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from frameworks_common import (
    POSTGRES_URL,
    Json,
    Servers,
    pg_schema_bytes,
    sqlite_bytes,
    summarize,
    text,
)

import tether

TURNS, QUICK_TURNS = 300, 20


def _graph(checkpointer: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    def respond(state: MessagesState) -> dict[str, Any]:
        turn = len(state["messages"]) // 2
        return {"messages": [AIMessage(content=text(turn, 800), id=f"ai-{turn}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(checkpointer=checkpointer)


class System:
    """One checkpointer, its graph, and how to read what it stores."""

    name: str
    graph: Any

    def stored_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        return None


class TetherSqlite(System):
    name = "tether sqlite"

    def __init__(self, directory: Path) -> None:
        from tether.integrations.langgraph import TetherSaver

        self._path = directory / "tether.db"
        self._store = tether.open_store(f"sqlite:///{self._path}")
        self.graph = _graph(TetherSaver(self._store))

    def stored_bytes(self) -> int:
        return sqlite_bytes(self._path)

    def close(self) -> None:
        self._store.close()


class TetherPostgres(System):
    name = "tether postgres"

    def __init__(self, url: str) -> None:
        from tether.integrations.langgraph import TetherSaver

        self._schema = url.rsplit("schema=", 1)[1]
        self._store = tether.open_store(url)
        self.graph = _graph(TetherSaver(self._store))

    def stored_bytes(self) -> int:
        return pg_schema_bytes(self._schema)

    def close(self) -> None:
        self._store.close()


class SqliteSaverSystem(System):
    name = "SqliteSaver"

    def __init__(self, directory: Path) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        self._path = directory / "langgraph.db"
        self._conn = sqlite3.connect(self._path, check_same_thread=False)
        self.graph = _graph(SqliteSaver(self._conn))

    def stored_bytes(self) -> int:
        return sqlite_bytes(self._path)

    def close(self) -> None:
        self._conn.close()


class PostgresSaverSystem(System):
    name = "PostgresSaver"

    def __init__(self, schema: str) -> None:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        self._schema = schema
        # search_path names our own schema (hex only): setup() creates its tables there
        self._conn = psycopg.connect(
            POSTGRES_URL,
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            options=f"-c search_path={schema}",
        )
        saver = PostgresSaver(self._conn)
        saver.setup()
        self.graph = _graph(saver)

    def stored_bytes(self) -> int:
        return pg_schema_bytes(self._schema)

    def close(self) -> None:
        self._conn.close()


def systems(directory: Path, servers: Servers) -> list[System]:
    made: list[System] = [TetherSqlite(directory), SqliteSaverSystem(directory)]
    if servers.postgres_ok:
        made += [
            TetherPostgres(servers.tether_url("postgres")),
            PostgresSaverSystem(servers.schema()),
        ]
    return made


PAIRS = (("tether sqlite", "SqliteSaver"), ("tether postgres", "PostgresSaver"))


def windows(turns: int) -> list[tuple[int, int]]:
    """Three windows of turns (1-based, inclusive): the thread's start, middle and end."""
    width = max(1, turns // 6)
    middle = turns // 2 - width // 2
    return [(1, width), (middle + 1, middle + width), (turns - width + 1, turns)]


def _timed(call: Callable[[], object]) -> int:
    t0 = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - t0


def _history(graph: Any, config: Any) -> int:
    """Iterate the thread's whole state history (every checkpoint, as a UI listing it would)."""
    return sum(1 for _ in graph.get_state_history(config))


def run(directory: Path, servers: Servers, quick: bool, notes: list[str]) -> Json:
    from langchain_core.messages import HumanMessage

    turns = QUICK_TURNS if quick else TURNS
    made = systems(directory, servers)
    config = {"configurable": {"thread_id": "chat-1"}}
    samples: list[list[int]] = [[] for _ in made]
    try:
        for turn in range(turns):
            message = {"messages": [HumanMessage(content=text(turn, 200), id=f"human-{turn}")]}
            for j in range(len(made)):
                i = (turn + j) % len(made)  # rotating order: no system always goes first
                graph = made[i].graph
                samples[i].append(_timed(functools.partial(graph.invoke, message, config)))
            if (turn + 1) % 50 == 0 or turn + 1 == turns:
                print(
                    f"  langgraph turn {turn + 1}: "
                    + ", ".join(
                        f"{s.name} {ns[-1] / 1e6:.1f} ms"
                        for s, ns in zip(made, samples, strict=True)
                    ),
                    flush=True,
                )
        latency: list[Json] = []
        for first, last in windows(turns):
            for system, ns in zip(made, samples, strict=True):
                latency.append(
                    {
                        "system": system.name,
                        "turns": f"{first}-{last}",
                        **summarize(ns[first - 1 : last]),
                    }
                )
        stored: list[Json] = []
        history: list[Json] = []
        for system in made:
            # one full iteration, timed (at 300 turns it deserializes ~100,000 messages:
            # seconds for every saver, so once is enough to compare them)
            t0 = time.perf_counter_ns()
            checkpoints = _history(system.graph, config)
            took = time.perf_counter_ns() - t0
            size = system.stored_bytes()
            stored.append(
                {
                    "system": system.name,
                    "bytes": size,
                    "bytes_per_turn": size / turns,
                    "checkpoints": checkpoints,
                }
            )
            history.append({"system": system.name, "checkpoints": checkpoints, **summarize([took])})
        print(
            "  langgraph stored: "
            + ", ".join(f"{r['system']} {r['bytes'] / 2**20:.1f} MiB" for r in stored)
        )
        print(
            "  langgraph get_state_history: "
            + ", ".join(f"{r['system']} {r['median_us'] / 1000:.0f} ms" for r in history)
        )
    finally:
        for system in made:
            try:
                system.close()
            except Exception as exc:  # the others still close; the section's error stays
                print(f"note: closing {system.name} failed: {type(exc).__name__}: {exc}")
    return {
        "settings": {"turns": turns},
        "systems": [s.name for s in made],
        "pairs": [list(p) for p in PAIRS],
        "latency": latency,
        "stored": stored,
        "history": history,
    }
