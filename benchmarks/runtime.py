"""The session runtime's costs beside the store's own: a worker's turn, an agent turn, and fork.

Run ``.venv/bin/python benchmarks/runtime.py [--quick]`` (``--turns-only --no-uncached
--lengths 10,1000,10000``: the turn figures alone, for before/after runs of a change, each on
its own code through ``PYTHONPATH``, alternated). One run, one machine, the embedded
SQLite store (WAL, synchronous=NORMAL); medians of many repetitions, the systems compared at one
history length interleaved turn by turn (so a slow moment of the machine hits them all alike).

- **turn** at history lengths 10 ... 100,000, each on its own session:

  - *store*: the store's own cached turn, what a worker holding the history does without the
    runtime: ``store.load(id, after=last_seq)`` then ``store.commit(id, version, append=...)``.
  - *get+execute*: ``Sessions.get(id)`` for the prompt, then
    ``Sessions.execute(id, AppendMessages(user, assistant))``.
  - *execute*: a worker that keeps the session ``execute`` returned and builds its next prompt
    from it: ``session = Sessions.execute(id, AppendMessages(user, assistant))``.
  - *uncached* (10 and 10,000 only): get+execute on ``Sessions(cache_size=0)``.

  The ratio columns are each runtime turn over the store's turn; the target is 1.2 at most.
  "calls" are the store calls each turn makes (counted on separate, untimed turns).
- **agent**: ``Agent.run(id, message)`` with a ``ScriptedModel`` (no tools) on a session the
  runtime holds (a worker that ran its last turn), at 10 items (a new such session for each
  timed turn) and at 10,000 (where the turn also builds the model's messages from the whole
  history), beside
  one plain ``store.commit`` of two items and raw sqlite3 (``BEGIN IMMEDIATE``, two INSERTs,
  ``COMMIT``; the same with the whole history SELECTed first, benchmarks/chat_turn.py's raw turn).
  It lists the store calls of one turn, and the turn's cost per write (claim, commits, release)
  over one plain commit.
- **fork**: ``fork(id)`` of a session holding N items, beside one plain commit on the same store.
- **throughput** (figure B of benchmarks/chat_turn.py, for the runtime): 50 sessions x 40
  turns round-robin in one process, sessions starting empty, turns per second of
  ``Sessions.get`` + ``Sessions.execute`` (and of ``execute`` alone) beside raw sqlite3's turn
  (``SELECT`` the history, ``INSERT`` two rows, one transaction), each round on fresh files,
  the systems taking turns round by round; median of the rounds. Target: at least 0.5x raw.
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tether
from tether import AppendMessages, Session
from tether.agent import Agent, ScriptedModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_turn import RAW_MESSAGES_TABLE, raw_turn

USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}
STORE_CALLS = (
    "create",
    "load",
    "commit",
    "commit_stamped",
    "append",
    "replace_history",
    "replace_tail",
    "claim",
    "renew",
    "release",
)


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def counting(store: tether.Store) -> Counter[str]:
    """Count the calls made to ``store``'s methods from now on (its instance is patched)."""
    counts: Counter[str] = Counter()
    for name in STORE_CALLS:
        method = getattr(store, name, None)
        if method is None:  # a tether from before commit_stamped (a before/after run)
            continue

        @functools.wraps(method)
        def counted(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            counts[_name] += 1
            return _method(*args, **kw)

        setattr(store, name, counted)
    return counts


def uncounted(store: tether.Store) -> None:
    for name in STORE_CALLS:
        store.__dict__.pop(name, None)


class StoreTurn:
    """The store's own cached turn (benchmarks/chat_turn.py's ``TetherCached``)."""

    def __init__(self, store: tether.Store, n: int) -> None:
        self.store = store
        session = store.create(Session(history=[USER, ASSISTANT] * (n // 2)))
        self.id = session.id
        loaded = store.load(self.id)  # the worker's state before the timed turns
        self.last_seq, self.history = loaded.last_seq, list(loaded.history)

    def __call__(self) -> None:
        fresh = self.store.load(self.id, after=self.last_seq)
        self.history.extend(fresh.history)
        self.store.commit(self.id, fresh.version, append=[USER, ASSISTANT])
        self.history.extend((USER, ASSISTANT))
        self.last_seq = fresh.last_seq + 2


class GetExecute:
    """``Sessions.get`` for the prompt, then ``Sessions.execute``."""

    def __init__(self, store: tether.Store, n: int, cache_size: int = 256) -> None:
        self.sessions = tether.Sessions(store, cache_size=cache_size)
        self.id = self.sessions.create(history=[USER, ASSISTANT] * (n // 2)).id
        self.sessions.get(self.id)  # a worker that already holds it

    def __call__(self) -> None:
        prompt = self.sessions.get(self.id).history
        assert prompt
        self.sessions.execute(self.id, AppendMessages(USER, ASSISTANT))


class Execute:
    """A worker keeping what ``execute`` returned: its next prompt is that session's history."""

    def __init__(self, store: tether.Store, n: int) -> None:
        self.sessions = tether.Sessions(store)
        self.id = self.sessions.create(history=[USER, ASSISTANT] * (n // 2)).id
        self.session = self.sessions.get(self.id)

    def __call__(self) -> None:
        prompt = self.session.history
        assert prompt
        self.session = self.sessions.execute(self.id, AppendMessages(USER, ASSISTANT))


def interleaved(systems: dict[str, Callable[[], None]], turns: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(turns):
        for name, turn in systems.items():
            start = time.perf_counter()
            turn()
            samples[name].append(time.perf_counter() - start)
    return {name: _median_us(values) for name, values in samples.items()}


def calls_per_turn(store: tether.Store, turn: Callable[[], None], turns: int = 3) -> dict[str, int]:
    turn()  # settle: a first turn may refresh what the setup left
    counts = counting(store)
    try:
        for _ in range(turns):
            turn()
    finally:
        uncounted(store)
    return {name: count // turns for name, count in sorted(counts.items())}


def turn_figures(
    store: tether.Store, lengths: tuple[int, ...], turns: int, uncached: bool = True
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    print(
        f"{'history items':>14}{'store µs':>10}{'get+execute µs':>16}{'ratio':>7}"
        f"{'execute µs':>12}{'ratio':>7}{'uncached µs':>13}"
    )
    for n in lengths:
        systems: dict[str, Callable[[], None]] = {
            "store": StoreTurn(store, n),
            "get_execute": GetExecute(store, n),
            "execute": Execute(store, n),
        }
        if uncached and n in (10, 10_000):
            systems["uncached"] = GetExecute(store, n, cache_size=0)
        medians = interleaved(systems, turns)
        calls = {name: calls_per_turn(store, turn) for name, turn in systems.items()}
        row = {"n": n, **{f"{k}_us": v for k, v in medians.items()}, "calls": calls}
        row["get_execute_ratio"] = medians["get_execute"] / medians["store"]
        row["execute_ratio"] = medians["execute"] / medians["store"]
        rows.append(row)
        column = f"{medians['uncached']:>13,.0f}" if "uncached" in medians else f"{'':>13}"
        print(
            f"{n:>14,}{medians['store']:>10,.0f}{medians['get_execute']:>16,.0f}"
            f"{row['get_execute_ratio']:>7.2f}{medians['execute']:>12,.0f}"
            f"{row['execute_ratio']:>7.2f}{column}"
        )
    print("store calls per turn:")
    for name, calls in rows[0]["calls"].items():
        print(f"  {name}: {calls}")
    return rows


def raw_sqlite(directory: Path, n: int, turns: int) -> dict[str, float]:
    """Raw sqlite3 with tether's durability settings: a two-row append, and the whole turn."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(RAW_MESSAGES_TABLE)
    prefill = [(i + 1, m["role"], m["content"]) for i, m in enumerate([USER, ASSISTANT] * (n // 2))]
    for session_id in ("append", "turn"):
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?)", [(session_id, *row) for row in prefill]
        )
    seq = [n]

    def append() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO messages VALUES ('append', ?, ?, ?)",
            [(seq[0] + i, m["role"], m["content"]) for i, m in enumerate((USER, ASSISTANT), 1)],
        )
        conn.execute("COMMIT")
        seq[0] += 2

    figures = interleaved(
        {"append": append, "turn": lambda: raw_turn(conn, "turn", USER, ASSISTANT)}, turns
    )
    conn.close()
    return figures


class AgentTurn:
    """``Agent.run(id, message)`` on a session the runtime holds, as a worker that ran the
    session's last turn does. ``fresh()`` (untimed) starts another session of 10 items that
    way (6 created, one turn of 4), so every timed turn is at 10 items, not at however many
    the earlier timed turns added."""

    def __init__(self, agent: Agent, n: int | None) -> None:
        self.agent, self.n = agent, n
        self.id = self._started()

    def _started(self) -> str:
        session_id = self.agent.sessions.create(history=[USER, ASSISTANT] * ((self.n or 6) // 2)).id
        self.agent.run(session_id, USER["content"])
        return session_id

    def fresh(self) -> None:
        if self.n is None:
            self.id = self._started()

    def __call__(self) -> None:
        self.agent.run(self.id, USER["content"])


def agent_figures(store: tether.Store, directory: Path, turns: int) -> dict[str, Any]:
    model = ScriptedModel(lambda request: "a" * 800)
    agent = Agent(tether.Sessions(store), llm=model)
    agent_turn = AgentTurn(agent, None)  # 10 items at every timed turn
    long_turn = AgentTurn(agent, 10_000)  # 10,000 and growing by 4 a turn
    plain = StoreTurn(store, 10)

    version = [store.load(plain.id, last=0).version]

    def plain_commit() -> None:
        version[0] = store.commit(plain.id, version[0], append=[USER, ASSISTANT])

    systems: dict[str, Callable[[], None]] = {
        "agent": agent_turn,
        "long": long_turn,
        "commit": plain_commit,
    }
    samples: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(turns):
        agent_turn.fresh()
        for name, turn in systems.items():
            start = time.perf_counter()
            turn()
            samples[name].append(time.perf_counter() - start)
    medians = {name: _median_us(values) for name, values in samples.items()}
    long_calls = calls_per_turn(store, long_turn)
    calls = calls_per_turn(store, agent_turn)
    writes = sum(
        calls.get(name, 0)
        for name in ("commit", "commit_stamped", "claim", "release", "renew", "append")
    )
    raw = raw_sqlite(directory, 10, turns)
    result = {
        "agent_us": medians["agent"],
        "agent_10000_us": medians["long"],
        "calls_10000": long_calls,
        "commit_us": medians["commit"],
        "calls": calls,
        "writes": writes,
        "per_write_ratio": medians["agent"] / writes / medians["commit"],
        "raw_append_us": raw["append"],
        "raw_turn_us": raw["turn"],
    }
    print(
        f"agent turn (ScriptedModel, no tools, 10 items): {medians['agent']:,.0f} µs; "
        f"store calls {calls}"
    )
    print(f"  at 10,000 items: {medians['long']:,.0f} µs; store calls {long_calls}")
    print(
        f"  one plain commit {medians['commit']:,.0f} µs; the turn per write "
        f"({writes} writes) {result['per_write_ratio']:.2f}x a plain commit; "
        f"raw sqlite3: two-row append {raw['append']:,.0f} µs, whole turn {raw['turn']:,.0f} µs"
    )
    return result


def fork_us(store: tether.Store, n: int, reps: int) -> tuple[float, float]:
    sessions = tether.Sessions(store)
    parent = sessions.create(history=[USER, ASSISTANT] * (n // 2))
    sessions.get(parent.id)
    forks, commits = [], []
    version = parent.version
    for _ in range(reps):
        start = time.perf_counter()
        sessions.fork(parent.id)
        forks.append(time.perf_counter() - start)
        start = time.perf_counter()
        version = store.commit(parent.id, version)
        commits.append(time.perf_counter() - start)
    return _median_us(forks), _median_us(commits)


class _RawFleet:
    """Raw sqlite3's turn on ``sessions`` sessions of one file (chat_turn.py's raw baseline)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(RAW_MESSAGES_TABLE)

    def turn(self, k: int) -> None:
        raw_turn(self.conn, f"s{k}", USER, ASSISTANT)

    def close(self) -> None:
        self.conn.close()


class _SessionsFleet:
    """``tether.Sessions`` on its own SQLite file: ``get`` for the prompt then ``execute``, or
    (``keep``) a worker building its prompt from what ``execute`` returned."""

    def __init__(self, db: Path, sessions: int, keep: bool) -> None:
        self.store = tether.open_store(f"sqlite:///{db}")
        self.sessions = tether.Sessions(self.store, cache_size=max(256, sessions))
        self.ids = [self.sessions.create().id for _ in range(sessions)]
        self.held = [self.sessions.get(i) for i in self.ids] if keep else None

    def turn(self, k: int) -> None:
        if self.held is None:
            prompt = self.sessions.get(self.ids[k]).history
            self.sessions.execute(self.ids[k], AppendMessages(USER, ASSISTANT))
        else:
            prompt = self.held[k].history
            self.held[k] = self.sessions.execute(self.ids[k], AppendMessages(USER, ASSISTANT))
        assert prompt is not None

    def close(self) -> None:
        self.store.close()


def throughput(directory: Path, sessions: int, turns: int, rounds: int) -> dict[str, Any]:
    """Turns per second, ``sessions`` sessions x ``turns`` turns round-robin, fresh files each
    round; raw sqlite3, get+execute and execute take turns round by round."""
    rates: dict[str, list[float]] = {"raw": [], "get_execute": [], "execute": []}
    for r in range(rounds):
        for name, samples in rates.items():
            db = directory / f"b-{r}-{name}.db"
            fleet: _RawFleet | _SessionsFleet = (
                _RawFleet(db)
                if name == "raw"
                else _SessionsFleet(db, sessions, keep=name == "execute")
            )
            start = time.perf_counter()
            for _ in range(turns):
                for k in range(sessions):
                    fleet.turn(k)
            samples.append(sessions * turns / (time.perf_counter() - start))
            fleet.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "sessions": sessions,
        "turns": turns,
        "rounds": rounds,
        "raw_turns_per_s": medians["raw"],
        "get_execute_turns_per_s": medians["get_execute"],
        "execute_turns_per_s": medians["execute"],
        # the target's figure: the runtime's turn that reads its prompt (get + execute)
        "ratio_to_raw": medians["get_execute"] / medians["raw"],
        "execute_ratio_to_raw": medians["execute"] / medians["raw"],
    }
    print(
        f"B ({sessions} sessions x {turns} turns, median of {rounds} rounds): raw "
        f"{medians['raw']:,.0f} turns/s; get+execute {medians['get_execute']:,.0f} "
        f"({result['ratio_to_raw']:.2f}x raw); execute {medians['execute']:,.0f} "
        f"({result['execute_ratio_to_raw']:.2f}x raw)"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--lengths",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="the history lengths of the turn figures, comma-separated (default 10 ... 100,000)",
    )
    parser.add_argument(
        "--turns-only",
        action="store_true",
        help="only the turn figures (for before/after runs of one change, alternated)",
    )
    parser.add_argument(
        "--no-uncached",
        action="store_true",
        help="leave the uncached turn out: its whole reads of the history empty SQLite's page "
        "cache, which the store's turn measured beside it then pays (at 10 and 10,000 items)",
    )
    parser.add_argument(
        "--throughput-only",
        type=int,
        metavar="ROUNDS",
        help="only throughput B, median of ROUNDS rounds (for before/after runs, alternated)",
    )
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.throughput_only:
        with tempfile.TemporaryDirectory() as tmp:
            results["throughput"] = throughput(Path(tmp), 50, 40, args.throughput_only)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    turns, reps = (5, 2) if args.quick else (200, 7)
    lengths = (10, 1_000) if args.quick else (10, 100, 1_000, 10_000, 100_000)
    lengths = args.lengths or lengths
    with tempfile.TemporaryDirectory() as tmp:
        store = tether.open_store(f"sqlite:///{Path(tmp) / 'runtime.db'}")
        print(f"tether {tether.__version__}, SQLite store; medians of {turns} turns, {reps} forks")
        results["turns"] = turn_figures(store, lengths, turns, uncached=not args.no_uncached)
        if args.turns_only:
            store.close()
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
            return 0
        results["agent"] = agent_figures(store, Path(tmp), turns)
        fork, commit = fork_us(store, 10_000, reps)
        results["fork"] = {"n": 10_000, "fork_us": fork, "commit_us": commit}
        print(f"fork of 10,000 items: {fork:,.0f} µs; one commit: {commit:,.0f} µs")
        store.close()
        results["throughput"] = throughput(
            Path(tmp), 10 if args.quick else 50, 40, 1 if args.quick else 3
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
