"""The chat-turn benchmark: tether's stores side by side with raw sqlite3.

The workload is described in docs/benchmarks.md ("The workload").

Run ``.venv/bin/python benchmarks/chat_turn.py [--quick] [--json OUT.json]
[--stores sqlite,file,memory]``. Everything below is measured in ONE run on this machine, so
the ratios (not the absolute numbers) are what to compare. Medians and p95 of many turns.

One turn appends a user message (~200 bytes of text) and an assistant message (~800 bytes),
``{"role": ..., "content": ...}`` dicts, after loading the history the agent needs:

- ``raw sqlite3``: stdlib ``sqlite3``, one table ``(session_id, seq, role, content)`` with
  primary key ``(session_id, seq)``; in one transaction (``BEGIN IMMEDIATE``) SELECT the whole
  history with ``fetchall()`` (Python row tuples) and INSERT the two rows.
- ``tether <store> whole``: ``s = store.load(id)`` then
  ``store.commit(id, s.version, append=[user, assistant])``.
- ``tether <store> cached``: a long-running worker keeps the history and version it holds in
  memory; each turn fetches only what is new (``store.load(id, after=last_seq)``), commits and
  extends its cache. It never reloads the whole history.

Figures: A per-turn latency by history length (pre-fill untimed); B throughput, 50 sessions x
40 turns round-robin in one process; C time to load 1,000 messages; D bytes written per turn.

Durability: raw sqlite3 and tether's SQLite store both run WAL with ``synchronous=NORMAL``
(tether's default): a commit survives the process being killed, not power loss. The file and
memory stores run with their own defaults. Every system gets fresh files in a temp directory;
the garbage collector stays on, as in an application.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tether
from tether import Session, Store
from tether.stores import KVStore

Msg = dict[str, Any]
StoreFactory = Callable[[Path], Store]
Json = dict[str, Any]

_LOREM = (
    "The quick brown fox jumps over the lazy dog while the agent considers the user's request "
    "and drafts a careful, well-structured answer with examples, caveats and next steps. "
)
USER_BYTES, ASSISTANT_BYTES = 200, 800
SQLITE_FILE = "tether.db"
WARMUP_TURNS = 3


def _text(turn: int, size: int) -> str:
    head = f"[turn {turn}] "
    return head + (_LOREM * (size // len(_LOREM) + 1))[: size - len(head)]


def messages(turn: int) -> tuple[Msg, Msg]:
    """One turn's user and assistant messages."""
    return (
        {"role": "user", "content": _text(turn, USER_BYTES)},
        {"role": "assistant", "content": _text(turn, ASSISTANT_BYTES)},
    )


def history(n: int) -> list[Msg]:
    """A pre-fill history of ``n`` messages, alternating user and assistant."""
    return [messages(i // 2)[i % 2] for i in range(n)]


class System(ABC):
    """One way of doing a turn, on ``sessions`` sessions each pre-filled with ``n`` messages."""

    name: str

    @abstractmethod
    def setup(self, directory: Path, n: int, sessions: int) -> None: ...

    @abstractmethod
    def turn(self, k: int, user: Msg, assistant: Msg) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


RAW_MESSAGES_TABLE = (
    "CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "role TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (session_id, seq))"
)
"""The raw baseline's one table (docs/benchmarks.md, "The workload")."""


def raw_turn(conn: sqlite3.Connection, session_id: str, user: Msg, assistant: Msg) -> None:
    """The raw baseline's turn: in one transaction, SELECT the history, INSERT two rows."""
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute(
        "SELECT seq, role, content FROM messages WHERE session_id = ? ORDER BY seq",
        (session_id,),
    ).fetchall()
    seq = rows[-1][0] if rows else 0
    conn.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?)",
        [
            (session_id, seq + 1, user["role"], user["content"]),
            (session_id, seq + 2, assistant["role"], assistant["content"]),
        ],
    )
    conn.execute("COMMIT")


def raw_session_index(db: Path, owners: Sequence[str]) -> sqlite3.Connection:
    """The raw baseline for listing: one row per session (id, owner, updated_at), an index on
    (owner, updated_at, id), sessions ``i`` owned by ``owners[i]``, newest last."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, owner TEXT, updated_at INTEGER)")
    conn.execute("CREATE INDEX sessions_owner ON sessions (owner, updated_at, id)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO sessions VALUES (?, ?, ?)",
        [(f"s{i:06d}", owner, i) for i, owner in enumerate(owners)],
    )
    conn.execute("COMMIT")
    return conn


class RawSQLite(System):
    name = "raw sqlite3"

    def __init__(self, synchronous: str = "NORMAL") -> None:
        self.synchronous = synchronous
        if synchronous != "NORMAL":
            self.name = f"raw sqlite3 synchronous={synchronous}"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "raw.db"
        self.conn = conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute(RAW_MESSAGES_TABLE)
        self.ids = [f"session-{k:05d}" for k in range(sessions)]
        rows = [(i + 1, m["role"], m["content"]) for i, m in enumerate(history(n))]
        conn.execute("BEGIN")
        for sid in self.ids:
            conn.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?)", [(sid, *row) for row in rows]
            )
        conn.execute("COMMIT")

    def load(self, k: int) -> list[Any]:
        return self.conn.execute(
            "SELECT seq, role, content FROM messages WHERE session_id = ? ORDER BY seq",
            (self.ids[k],),
        ).fetchall()

    def load_dicts(self, k: int) -> list[Msg]:
        """The same SELECT, turned into message dicts as a prompt needs them."""
        return [{"role": role, "content": content} for _, role, content in self.load(k)]

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        raw_turn(self.conn, self.ids[k], user, assistant)

    def append(self, k: int, user: Msg, assistant: Msg) -> None:
        """Commit one turn's two rows without reading the history (a commit alone)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO messages SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM messages "
            "WHERE session_id = ?1",
            [(self.ids[k], m["role"], m["content"]) for m in (user, assistant)],
        )
        conn.execute("COMMIT")

    def fork(self, k: int, new_id: str) -> None:
        """Copy session ``k``'s rows to a new session (what a fork is for this design)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO messages SELECT ?, seq, role, content FROM messages WHERE session_id = ?",
            (new_id, self.ids[k]),
        )
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class TetherWhole(System):
    """The whole-history turn: load everything, commit two items."""

    kind = "whole"

    def __init__(self, store_name: str, factory: StoreFactory) -> None:
        self.store_name, self.factory = store_name, factory
        self.name = f"tether {store_name} {self.kind}"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.store = self.factory(directory)
        prefill = history(n)
        self.ids = [self.store.create(Session(history=prefill)).id for _ in range(sessions)]

    def load(self, k: int) -> Session:
        return self.store.load(self.ids[k])

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        sid = self.ids[k]
        session = self.store.load(sid)
        self.store.commit(sid, session.version, append=[user, assistant])

    def close(self) -> None:
        self.store.close()


@dataclass
class _Cache:
    version: int
    last_seq: int
    history: list[Msg]


class TetherCached(TetherWhole):
    """The long-running worker's turn: fetch only new items, commit, extend the cache."""

    kind = "cached"

    def setup(self, directory: Path, n: int, sessions: int) -> None:
        super().setup(directory, n, sessions)
        self.caches = []  # the worker's state before the timed turns (its first load)
        for sid in self.ids:
            s = self.store.load(sid)
            self.caches.append(_Cache(s.version, s.last_seq, list(s.history)))

    def turn(self, k: int, user: Msg, assistant: Msg) -> None:
        sid, cache = self.ids[k], self.caches[k]
        fresh = self.store.load(sid, after=cache.last_seq)
        cache.history.extend(fresh.history)
        cache.version = self.store.commit(sid, fresh.version, append=[user, assistant])
        cache.history.extend((user, assistant))
        cache.last_seq = fresh.last_seq + 2


def _sqlite_full(directory: Path) -> Store:
    return tether.open_store(f"sqlite:///{directory / SQLITE_FILE}?synchronous=full")


# Server stores: each URL names a fresh namespace / schema, dropped by dropping_server_data().
_SERVER_URLS: list[str] = []


def server_url(kind: str) -> str:
    """A URL for the ``kind`` (redis or postgres) store in a namespace / schema of its own."""
    import server_turns

    url = server_turns.tether_url(kind)
    _SERVER_URLS.append(url)
    return url


def _server_factory(kind: str) -> StoreFactory:
    return lambda directory: tether.open_store(server_url(kind))


NATS_SERVER = os.environ.get("TETHER_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def _nats_url() -> str:
    """A NATS store URL in a bucket of its own, deleted by dropping_server_data()."""
    url = f"{NATS_SERVER}/tether_bench_{uuid.uuid4().hex[:12]}"
    _SERVER_URLS.append(url)
    return url


def _nats_available() -> str | None:
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install 'tether[nats]')"
    url = _nats_url()
    try:
        with tether.open_store(url) as store:
            store.exists("probe")
    except tether.TetherError as exc:
        return str(exc)
    return None


def _drop_nats_bucket(url: str) -> None:
    import asyncio

    import nats

    async def drop() -> None:
        nc = await nats.connect(NATS_SERVER)
        try:
            with contextlib.suppress(Exception):  # never created: nothing to drop
                await nc.jetstream().delete_key_value(url.rsplit("/", 1)[1])
        finally:
            await nc.close()

    asyncio.run(drop())


@contextlib.contextmanager
def dropping_server_data() -> Iterator[None]:
    """Drop every namespace / schema :func:`server_url` handed out, on the way out."""
    try:
        yield
    finally:
        if _SERVER_URLS:
            import server_turns

            for url in _SERVER_URLS:
                if url.startswith("nats:"):
                    _drop_nats_bucket(url)
                else:
                    server_turns.cleanup(url)
            _SERVER_URLS.clear()


def store_factories(requested: Sequence[str], notes: list[str]) -> dict[str, StoreFactory]:
    factories: dict[str, StoreFactory] = {
        "sqlite": lambda d: tether.open_store(f"sqlite:///{d / SQLITE_FILE}"),
        "file": lambda d: tether.open_store("file:" + str(d)),
        "memory": lambda d: tether.open_store("memory://"),
    }
    chosen: dict[str, StoreFactory] = {}
    for name in requested:
        if name == "nats":
            why = _nats_available()
            if why is not None:
                notes.append(f"nats store skipped: {why}")
                print(f"note: {notes[-1]}")
            else:
                chosen[name] = lambda d: tether.open_store(_nats_url())
            continue
        if name in ("redis", "postgres"):
            import server_turns

            why = server_turns.available(name)
            if why is not None:
                notes.append(f"{name} store skipped: {why}")
                print(f"note: {notes[-1]}")
            else:
                chosen[name] = _server_factory(name)
            continue
        if name not in factories:
            raise SystemExit(
                f"unknown store {name!r}; choose from {', '.join(factories)}, redis, postgres, nats"
            )
        chosen[name] = factories[name]
    return chosen


def summarize(samples_ns: Sequence[int]) -> Json:
    ordered = sorted(samples_ns)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "median_us": statistics.median(ordered) / 1000,
        "p95_us": p95 / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "min_us": ordered[0] / 1000,
        "count": len(ordered),
        "samples_us": [round(s / 1000, 1) for s in samples_ns],
    }


def interleave(
    count: int, reps: int, call: Callable[[int, int], object], block: int = 10
) -> list[list[int]]:
    """Time ``call(i, r)`` for ``count`` systems and ``reps`` reps; returns ns per system.

    Systems take turns in blocks of ``block`` consecutive reps, in rotating order: drift on a
    noisy machine hits every system alike, while one system's big loads rarely evict another's
    working set from the CPU caches just before a timed call (only a block's first rep).
    """
    gc.collect()
    samples: list[list[int]] = [[] for _ in range(count)]
    for start in range(0, reps, block):
        for j in range(count):
            i = (start // block + j) % count
            for r in range(start, min(start + block, reps)):
                t0 = time.perf_counter_ns()
                call(i, r)
                samples[i].append(time.perf_counter_ns() - t0)
    return samples


def turns_per_session(n: int, reps: int) -> int:
    """Timed turns per pre-filled session, so the history grows by at most ~5% of n."""
    return max(1, min(reps, n // 40))


def figure_a(makers: Sequence[Callable[[], System]], n: int, reps: int, root: Path) -> list[Json]:
    per_session = turns_per_session(n, reps)
    sessions = 1 + math.ceil(reps / per_session)  # session 0 takes the warm-up turns
    systems = [make() for make in makers]
    for i, system in enumerate(systems):
        system.setup(root / f"a{n}-{i}", n, sessions)
    turns = [messages(n + r) for r in range(reps)]
    for w in range(WARMUP_TURNS):
        for system in systems:
            system.turn(0, *messages(w))
    samples = interleave(
        len(systems), reps, lambda i, r: systems[i].turn(1 + r // per_session, *turns[r])
    )
    for system in systems:
        system.close()
    rows = [{"system": s.name, "n": n, **summarize(samples[i])} for i, s in enumerate(systems)]
    for row in rows:
        row["turns_per_session"] = per_session
        row["ratio_to_raw"] = row["median_us"] / rows[0]["median_us"]
    return rows


def figure_b(
    makers: Sequence[Callable[[], System]], sessions: int, turns: int, rounds: int, root: Path
) -> list[Json]:
    plan = [messages(t) for t in range(turns)]
    fleets = [[make() for make in makers] for _ in range(rounds)]  # fresh files every round
    for r, fleet in enumerate(fleets):
        for i, system in enumerate(fleet):
            system.setup(root / f"b{r}-{i}", 0, sessions)

    def run(i: int, r: int) -> None:
        for user, assistant in plan:
            for k in range(sessions):
                fleets[r][i].turn(k, user, assistant)

    samples = interleave(len(makers), rounds, run, block=1)
    for system in (s for fleet in fleets for s in fleet):
        system.close()
    rates = [[sessions * turns * 1e9 / ns for ns in per_system] for per_system in samples]
    return [
        {
            "system": system.name,
            "sessions": sessions,
            "turns": turns,
            "turns_per_s": statistics.median(rates[i]),
            "rounds_turns_per_s": rates[i],
            "ratio_to_raw": statistics.median(rates[i]) / statistics.median(rates[0]),
        }
        for i, system in enumerate(fleets[0])
    ]


def figure_c(stores: dict[str, StoreFactory], reps: int, root: Path) -> list[Json]:
    raw = RawSQLite()
    tethers = [TetherWhole(name, factory) for name, factory in stores.items()]
    for i, system in enumerate([raw, *tethers]):
        system.setup(root / f"c-{i}", 1000, 1)
    loaders: list[tuple[str, Callable[[int], object]]] = [
        ("raw sqlite3 SELECT (row tuples)", raw.load),
        ("raw sqlite3 SELECT -> message dicts", raw.load_dicts),
        *((f"tether {t.store_name} load()", t.load) for t in tethers),
    ]
    for _, load in loaders:
        load(0)  # warm-up
    samples = interleave(len(loaders), reps, lambda i, r: loaders[i][1](0))
    for system in [raw, *tethers]:
        system.close()
    base = statistics.median(samples[0])
    return [
        {"system": label, "n": 1000, **summarize(s), "ratio_to_raw": statistics.median(s) / base}
        for (label, _), s in zip(loaders, samples, strict=True)
    ]


def _pragma(db: Path, pragma: str) -> int:
    """Run one PRAGMA on a separate measuring connection; its first value."""
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"PRAGMA {pragma}").fetchone()[0])
    finally:
        conn.close()


def figure_d(stores: dict[str, StoreFactory], n: int, turns: int, root: Path) -> list[Json]:
    systems: list[System] = [RawSQLite()]
    if "sqlite" in stores:
        systems.append(TetherWhole("sqlite", stores["sqlite"]))
    rows: list[Json] = []
    for i, system in enumerate(systems):
        system.setup(root / f"d{n}-{i}", n, 1)
        (db,) = (root / f"d{n}-{i}").glob("*.db")
        busy = _pragma(db, "wal_checkpoint(TRUNCATE)")  # empty WAL, everything in db
        size0 = db.stat().st_size
        for t in range(turns):
            system.turn(0, *messages(n + t))
        wal = db.with_name(db.name + "-wal").stat().st_size
        busy += _pragma(db, "wal_checkpoint(TRUNCATE)")
        page_size = _pragma(db, "page_size")
        system.close()
        rows.append(
            {
                "system": system.name,
                "n": n,
                "wal_bytes_per_turn": wal / turns,
                "wal_pages_per_turn": wal / turns / (page_size + 24),
                "db_growth_bytes_per_turn": (db.stat().st_size - size0) / turns,
                "payload_bytes_per_turn": USER_BYTES + ASSISTANT_BYTES,
                "checkpoint_busy": bool(busy),
                "maybe_autocheckpointed": wal >= 1000 * (page_size + 24),
            }
        )
    return rows


def figure_kv_bytes(stores: dict[str, StoreFactory], turns: int, root: Path) -> list[Json]:
    """Bytes a key-value kit store (NATS) writes per cached turn, at two history lengths:
    every value and key its backend puts, counted at the backend's door."""
    rows: list[Json] = []
    for name, factory in stores.items():
        for n in (100, 5000):
            store = factory(root / f"kv{n}-{name}")
            if not isinstance(store, KVStore):
                store.close()
                break
            system = TetherCached(name, lambda _d, store=store: store)  # type: ignore[misc]
            system.setup(root, n, 1)
            written = [0, 0]
            put = store.backend.put

            def counting(
                key: str, value: bytes, revision: Any, put: Any = put, written: Any = written
            ) -> Any:
                written[0] += len(key) + len(value)
                written[1] += 1
                return put(key, value, revision)

            store.backend.put = counting  # type: ignore[method-assign]
            started = time.perf_counter_ns()
            for t in range(turns):
                system.turn(0, *messages(n + t))
            elapsed = time.perf_counter_ns() - started
            system.close()
            rows.append(
                {
                    "system": f"tether {name} cached",
                    "n": n,
                    "bytes_per_turn": written[0] / turns,
                    "puts_per_turn": written[1] / turns,
                    "mean_us": elapsed / turns / 1000,
                    "payload_bytes_per_turn": USER_BYTES + ASSISTANT_BYTES,
                }
            )
    return rows


def _fork_op(store: Store, parent_id: str, at: int) -> Callable[[int], object]:
    """How a fork is done on ``store``: its own ``fork_session`` ability where it has one
    (SQLite shares the parent's rows, memory shares encoded items), else what the runtime does
    without it: load the parent and create the child from its history."""
    fork_session = getattr(store, "fork_session", None)
    if fork_session is not None:
        return lambda r: fork_session(Session(parent_id=parent_id), at)

    def copy(r: int) -> object:
        parent = store.load(parent_id)
        return store.create(Session(parent_id=parent_id, fork_seq=at, history=parent.history))

    return copy


def figure_e(stores: dict[str, StoreFactory], n: int, reps: int, root: Path) -> list[Json]:
    """E. Fork a session of ``n`` messages, beside one commit (a turn's two messages)."""
    raw = RawSQLite()
    raw.setup(root / "e-raw", n, 2)
    ops: list[tuple[str, str, Callable[[int], object]]] = [
        ("raw sqlite3", "fork (INSERT ... SELECT)", lambda r: raw.fork(0, f"fork-{r:05d}")),
        ("raw sqlite3", "commit", lambda r: raw.append(1, *messages(n + r))),
    ]
    opened: list[Store] = []
    for name, factory in stores.items():
        store = factory(root / f"e-{name}")
        opened.append(store)
        parent = store.create(Session(history=history(n)))
        ops.append((f"tether {name}", "fork", _fork_op(store, parent.id, n)))
        ops.append((f"tether {name}", "commit", _Committer(store, n)))
        # a fork is a new session: creating an empty one is the floor a fork can reach
        ops.append((f"tether {name}", "create (empty session)", partial(_create_empty, store)))
    for _, _, op in ops:
        op(-1)  # warm-up
    # blocks of 5: a 10,000-row copy just before a timed commit would measure its cache misses
    samples = interleave(len(ops), reps, lambda i, r: ops[i][2](r), block=5)
    raw.close()
    for store in opened:
        store.close()
    rows = [
        {"system": system, "op": op, "n": n, **summarize(samples[i])}
        for i, (system, op, _) in enumerate(ops)
    ]
    for row in rows:
        row["ratio_to_raw"] = row["median_us"] / rows[0]["median_us"]
    return rows


def _create_empty(store: Store, r: int) -> None:
    store.create(Session())


class _Committer:
    """Commits a turn's two messages to a session of ``n`` messages, tracking its version."""

    def __init__(self, store: Store, n: int) -> None:
        self.store, self.n = store, n
        session = store.create(Session(history=history(n)))
        self.id, self.version = session.id, session.version

    def __call__(self, r: int) -> None:
        self.version = self.store.commit(self.id, self.version, append=messages(self.n + r + 1))


def _call_nth(calls: Sequence[Callable[[], object]], i: int, r: int) -> object:
    return calls[i]()


def _raw_newest(conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(
        "SELECT id, owner, updated_at FROM sessions WHERE owner = ? "
        "ORDER BY updated_at DESC, id DESC LIMIT 50",
        ("owner-3",),
    ).fetchall()


def figure_f(
    stores: dict[str, StoreFactory], totals: Sequence[int], reps: int, root: Path
) -> list[Json]:
    """F. List the newest 50 sessions of one owner among ``total`` sessions (10 owners)."""
    rows: list[Json] = []
    for total in totals:
        listers: list[tuple[str, Callable[[], object], Callable[[], None]]] = []
        directory = root / f"f{total}"
        directory.mkdir(parents=True, exist_ok=True)
        conn = raw_session_index(directory / "raw.db", [f"owner-{i % 10}" for i in range(total)])
        listers.append(("raw sqlite3", partial(_raw_newest, conn), conn.close))
        for name, factory in stores.items():
            if name not in {"sqlite", "memory"} and total > 10_000:
                # the file store lists in O(sessions) by design (docs/stores.md); creating 100k
                # sessions one by one through a server store takes minutes: left to 10,000
                continue
            store = factory(directory / name)
            for i in range(total):
                store.create(Session(owner=f"owner-{i % 10}"))
            listers.append(
                (f"tether {name}", partial(store.list, owner="owner-3", limit=50), store.close)
            )
        for _, call, _ in listers:
            call()  # warm-up
        samples = interleave(len(listers), reps, partial(_call_nth, [c for _, c, _ in listers]))
        for _, _, close in listers:
            close()
        base = statistics.median(samples[0])
        rows += [
            {
                "system": label,
                "sessions": total,
                **summarize(samples[i]),
                "ratio_to_raw": statistics.median(samples[i]) / base,
            }
            for i, (label, _, _) in enumerate(listers)
        ]
    return rows


def write_json(path: Path | None, results: Json) -> None:
    """Write a benchmark's results where ``--json`` asked (nowhere without it)."""
    if path is not None:
        path.write_text(json.dumps(results, indent=1))
        print(f"wrote {path}")


def machine_info() -> Json:
    return {
        "python": sys.version,
        "sqlite": sqlite3.sqlite_version,
        "tether": tether.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


HEADINGS = {
    "turns_per_session": "turns/session",
    "median_us": "median µs",
    "p95_us": "p95 µs",
    "ratio_to_raw": "x raw",
    "turns_per_s": "turns/s",
    "wal_bytes_per_turn": "WAL B/turn",
    "wal_pages_per_turn": "WAL pages/turn",
    "db_growth_bytes_per_turn": "db growth B/turn",
    "sessions": "sessions",
}


def _cell(key: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if key == "ratio_to_raw" else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(title: str, rows: Sequence[Json], keys: str, note: str = "") -> None:
    """Print the ``keys`` (space-separated) of ``rows`` as a table, a title above, a note below."""
    columns = keys.split()
    cells = [[HEADINGS.get(key, key) for key in columns]]
    for row in rows:
        cells.append([_cell(key, row[key]) for key in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for line in cells:
        print(
            line[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)),
        )
    if note:
        print(f"  {note}")


FIGURES = ("a", "b", "c", "d", "e", "f", "durability")
"""The figures ``--figures`` may choose (docs/benchmarks.md describes each)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run (under ~40 s)")
    parser.add_argument("--json", type=Path, help="write every figure and machine info here")
    parser.add_argument(
        "--stores",
        default="sqlite,file,memory,redis,postgres,nats",
        help="tether stores to run (redis, postgres and nats when their servers answer)",
    )
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"figures to run, of {','.join(FIGURES)} (all by default)",
    )
    args = parser.parse_args(argv)
    figures = {f.strip().lower() for f in args.figures.split(",") if f.strip()}
    if not figures <= set(FIGURES):
        parser.error(f"unknown figure(s) {sorted(figures - set(FIGURES))}; choose from {FIGURES}")
    started = time.perf_counter()
    notes: list[str] = []
    stores = store_factories([s.strip() for s in args.stores.split(",") if s.strip()], notes)
    f_plan: tuple[tuple[int, ...], int]
    if args.quick:
        lengths, b_plan, c_reps, d_turns = {10: 100, 1000: 60}, (10, 10, 1), 50, 20
        e_plan, f_plan, durability_reps = (2000, 5), ((1000,), 50), 10
    else:
        lengths = {10: 300, 100: 300, 1000: 300, 5000: 100}
        b_plan, c_reps, d_turns = (50, 40, 5), 300, 50
        e_plan, f_plan, durability_reps = (10_000, 30), ((1000, 10_000, 100_000), 200), 60
    makers: list[Callable[[], System]] = [RawSQLite]
    for name, factory in stores.items():
        makers += [partial(TetherWhole, name, factory), partial(TetherCached, name, factory)]
    results: Json = {
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "figures": sorted(figures),
            "stores": list(stores),
            "figure_a_reps": lengths,
            "figure_b": b_plan,
            "figure_c_reps": c_reps,
            "figure_d_turns": d_turns,
            "figure_e": e_plan,
            "figure_f": f_plan,
            "durability_reps": durability_reps,
        },
    }
    print(
        f"tether {tether.__version__}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs; raw sqlite3 and tether SQLite both "
        "WAL + synchronous=NORMAL (survives a killed process, not power loss)"
    )
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp, dropping_server_data():
        root = Path(tmp)
        if "a" in figures:
            _figure_a_table(results, makers, lengths, root)
        if "b" in figures:
            _figure_b_table(results, stores, b_plan, root)
        if "c" in figures:
            results["figure_c"] = c_rows = figure_c(stores, c_reps, root)
            _table(
                "C. load a 1,000-message history", c_rows, "system median_us p95_us ratio_to_raw"
            )
        if "d" in figures:
            _figure_d_tables(results, stores, d_turns, root, notes)
        if "e" in figures:
            results["figure_e"] = e_rows = figure_e(stores, e_plan[0], e_plan[1], root)
            _table(
                f"E. fork a session of {e_plan[0]:,} messages, beside one commit of a "
                "turn's two messages on the same store (x raw = to raw sqlite3's fork)",
                e_rows,
                "system op median_us p95_us ratio_to_raw",
            )
        if "f" in figures:
            _figure_f_table(results, stores, f_plan, root)
        if "durability" in figures and "sqlite" in stores:
            _durability_table(results, stores, durability_reps, root)
    results["notes"] = notes
    results["elapsed_s"] = elapsed = time.perf_counter() - started
    print(f"\ntotal run time {elapsed:.1f} s")
    write_json(args.json, results)
    return 0


def _figure_a_table(
    results: Json, makers: Sequence[Callable[[], System]], lengths: dict[int, int], root: Path
) -> None:
    results["figure_a"] = a_rows = [
        row for n, reps in lengths.items() for row in figure_a(makers, n, reps, root)
    ]
    _table(
        "A. per-turn latency by history length n (pre-fill untimed)",
        a_rows,
        "system n turns_per_session median_us p95_us ratio_to_raw",
        "each session is pre-filled to n, then takes 'turns/session' timed turns, so its "
        "history grows from n to at most n + 2*turns/session - 2 (<= 5% of n) while timed; "
        "systems take turns in blocks of 10, in rotating order",
    )


def _figure_b_table(
    results: Json, stores: dict[str, StoreFactory], b_plan: tuple[int, int, int], root: Path
) -> None:
    b_sessions, b_turns, b_rounds = b_plan
    b_makers: list[Callable[[], System]] = [RawSQLite]
    if "sqlite" in stores:
        b_makers.append(partial(TetherWhole, "sqlite", stores["sqlite"]))
        b_makers.append(partial(TetherCached, "sqlite", stores["sqlite"]))
    results["figure_b"] = b_rows = figure_b(b_makers, b_sessions, b_turns, b_rounds, root)
    _table(
        f"B. throughput: {b_sessions} sessions x {b_turns} turns (whole: the history read "
        "every turn; cached: only what is new), "
        f"round-robin, one process, sessions start empty (median of {b_rounds} rounds)",
        b_rows,
        "system turns_per_s ratio_to_raw",
    )


def _figure_d_tables(
    results: Json, stores: dict[str, StoreFactory], d_turns: int, root: Path, notes: list[str]
) -> None:
    results["figure_d"] = d_rows = [
        row for n in (1000, 5000) for row in figure_d(stores, n, d_turns, root)
    ]
    _table(
        f"D. bytes written per turn, SQLite, over {d_turns} turns "
        f"(payload {USER_BYTES + ASSISTANT_BYTES} B of text)",
        d_rows,
        "system n wal_bytes_per_turn wal_pages_per_turn db_growth_bytes_per_turn",
        "approximate: WAL B = size of the -wal file after the turns, starting from a "
        "TRUNCATE checkpoint (whole pages + 24 B frame headers); db growth = growth of the "
        "main file between two TRUNCATE checkpoints (page granular)",
    )
    if any(r["maybe_autocheckpointed"] or r["checkpoint_busy"] for r in d_rows):
        notes.append("figure D: a checkpoint was busy or an auto-checkpoint may have run")
        print(f"  warning: {notes[-1]}")
    results["figure_d_kv"] = kv_rows = figure_kv_bytes(stores, d_turns, root)
    if kv_rows:
        _table(
            f"D (kv). bytes a key-value kit store puts per cached turn, over {d_turns} turns",
            kv_rows,
            "system n bytes_per_turn puts_per_turn mean_us",
            "every key and value handed to the backend's put(): the tail rewrite (at most "
            "chunk_items - 1 older items), the header, a sealed chunk every chunk_items items",
        )


def _figure_f_table(
    results: Json,
    stores: dict[str, StoreFactory],
    f_plan: tuple[tuple[int, ...], int],
    root: Path,
) -> None:
    results["figure_f"] = f_rows = figure_f(stores, f_plan[0], f_plan[1], root)
    _table(
        "F. list the newest 50 sessions of one owner (10 owners in all)",
        f_rows,
        "system sessions median_us p95_us ratio_to_raw",
        "the file store's listing reads every header (documented); file, redis and "
        "postgres are not run past 10,000 sessions (setup time)",
    )


def _durability_table(
    results: Json, stores: dict[str, StoreFactory], reps: int, root: Path
) -> None:
    results["durability"] = dur_rows = figure_a(
        [
            RawSQLite,
            partial(RawSQLite, "FULL"),
            partial(TetherWhole, "sqlite", stores["sqlite"]),
            partial(TetherWhole, "sqlite synchronous=full", _sqlite_full),
        ],
        100,
        reps,
        root / "durability",
    )
    _table(
        "Durability: the whole-history turn at n=100, WAL with synchronous=NORMAL "
        "(survives a killed process) and FULL (an fsync per commit: survives power loss)",
        dur_rows,
        "system median_us p95_us ratio_to_raw",
    )


if __name__ == "__main__":
    raise SystemExit(main())
