"""Figure B with several processes: separate sessions, and one session shared by all.

Run ``.venv/bin/python benchmarks/processes.py [--quick] [--json OUT.json]``. docs/benchmarks.md's
figure B beyond one process: 8 OS processes (``fork``), each with its own connection or store,
released together, timed until the last one finishes.

- **separate**: each process takes whole-history turns round-robin on its own sessions;
- **same session**: every process takes turns on ONE session. tether's turn is
  ``load`` then ``commit(expected_version)``; when another process committed in between, the
  commit raises ``ConflictError`` and the turn is retried from a fresh load: the figure
  counts those retries. tether's cached turn retries the same way from ``load(after=)``. Raw
  sqlite3's turn runs inside ``BEGIN IMMEDIATE``, so it waits for the write lock instead and
  never retries (it has no versions to check: it cannot tell a stale read from a fresh one).

Systems: raw sqlite3 and tether's SQLite store (WAL, ``synchronous=NORMAL``, each process its
own connection), tether's file store, and tether's Redis and PostgreSQL stores when their
servers answer (fresh namespace / schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import chat_turn  # noqa: E402
from chat_turn import machine_info, messages  # noqa: E402

import tether  # noqa: E402
from tether import ConflictError, Session  # noqa: E402

Json = dict[str, Any]
Loop = Callable[[int], tuple[int, int]]
"""turns per session -> (turns done, conflicts retried), on sessions already opened."""
Worker = Callable[[list[str]], Loop]
"""Open a connection (or store) for these session ids, before the clock starts."""


# --- one process's loop --------------------------------------------------------------------------


def raw_worker(db: Path) -> Worker:
    def prepare(ids: list[str]) -> Loop:
        conn = sqlite3.connect(db, isolation_level=None, timeout=60)
        conn.execute("PRAGMA synchronous=NORMAL")
        return lambda turns: _raw_turns(conn, ids, turns)

    return prepare


def _raw_turns(conn: sqlite3.Connection, ids: list[str], turns: int) -> tuple[int, int]:
    for t in range(turns):
        for sid in ids:
            chat_turn.raw_turn(conn, sid, *messages(t))
    conn.close()
    return turns * len(ids), 0


def tether_worker(url: str, cached: bool) -> Worker:
    def prepare(ids: list[str]) -> Loop:
        store = tether.open_store(url)
        held = {sid: store.load(sid) for sid in ids} if cached else {}
        return lambda turns: _tether_turns(store, held, ids, turns)

    return prepare


def _tether_turns(
    store: tether.Store, held: dict[str, Session], ids: list[str], turns: int
) -> tuple[int, int]:
    """Turns on ``ids``; a worker that ``held`` sessions fetches only what is new."""
    conflicts = 0
    with store:
        for t in range(turns):
            for sid in ids:
                while True:
                    mine = held.get(sid)
                    if mine is not None:
                        new = store.load(sid, after=mine.last_seq)
                        mine.history += new.history
                        mine.version, mine.last_seq = new.version, new.last_seq
                    else:
                        mine = store.load(sid)
                    try:
                        version = store.commit(sid, mine.version, append=messages(t))
                    except ConflictError:
                        conflicts += 1  # another process committed first: read again
                        continue
                    if sid in held:
                        mine.history += list(messages(t))
                        mine.version, mine.last_seq = version, mine.last_seq + 2
                    break
    return turns * len(ids), conflicts


# --- running processes together ------------------------------------------------------------------


def _child(worker: Worker, ids: list[str], turns: int, go: Any, out: Any) -> None:
    try:
        loop = worker(ids)  # connect before the clock starts
        go.wait()
        out.put(loop(turns))
    except BaseException as exc:
        out.put((-1, repr(exc)))
        raise


def run_processes(worker: Worker, plan: list[list[str]], turns: int) -> tuple[float, int, int]:
    """Run ``worker`` in one process per entry of ``plan``; (seconds, turns, conflicts)."""
    ctx = multiprocessing.get_context("fork")  # the workers are closures
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(worker, ids, turns, go, out)) for ids in plan]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # every process started, connected and waiting
    start = time.perf_counter()
    go.set()
    results = [out.get(timeout=900) for _ in procs]  # a child that died says why
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    failed = [r for r in results if r[0] == -1]
    if failed or any(p.exitcode for p in procs):
        raise RuntimeError(f"a benchmark process failed: {failed}")
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


# --- the figure ----------------------------------------------------------------------------------


class Target:
    """One system: how to create its sessions and the worker that takes turns on them."""

    def __init__(self, name: str, make_sessions: Callable[[int], list[str]], worker: Worker):
        self.name, self.make_sessions, self.worker = name, make_sessions, worker


def raw_target(directory: Path) -> Target:
    db = directory / "raw.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(chat_turn.RAW_MESSAGES_TABLE)
    conn.close()
    counter = iter(range(1_000_000))
    return Target(
        "raw sqlite3",
        lambda count: [f"s{next(counter):06d}" for _ in range(count)],  # rows come with turns
        raw_worker(db),
    )


def tether_target(name: str, url: str, cached: bool) -> Target:
    def make(count: int) -> list[str]:
        with tether.open_store(url) as store:
            return [store.create(Session()).id for _ in range(count)]

    return Target(
        f"tether {name} {'cached' if cached else 'whole'}", make, tether_worker(url, cached)
    )


def figure(
    targets: list[Target], processes: int, per_process: int, turns: int, reps: int
) -> list[Json]:
    rows: list[Json] = []
    for mode in (
        "1 process",
        f"{processes} processes, separate sessions",
        f"{processes} processes, one session",
    ):
        for target in targets:
            rates, conflict_rates = [], []
            for _ in range(reps):
                if mode == "1 process":
                    plan = [target.make_sessions(per_process)]
                elif "separate" in mode:
                    plan = [target.make_sessions(per_process) for _ in range(processes)]
                else:
                    (shared,) = target.make_sessions(1)
                    plan = [[shared] for _ in range(processes)]
                seconds, done, conflicts = run_processes(target.worker, plan, turns)
                rates.append(done / seconds)
                conflict_rates.append(conflicts / done)
            rows.append(
                {
                    "system": target.name,
                    "mode": mode,
                    "turns_per_s": statistics.median(rates),
                    "rounds_turns_per_s": rates,
                    "conflicts_per_turn": statistics.median(conflict_rates),
                }
            )
        base = next(r for r in rows if r["mode"] == mode and r["system"] == "raw sqlite3")
        for row in rows:
            if row["mode"] == mode:
                row["ratio_to_raw"] = row["turns_per_s"] / base["turns_per_s"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures and machine info here")
    args = parser.parse_args(argv)
    processes, per_process, turns, reps = (8, 2, 5, 1) if args.quick else (8, 5, 40, 3)
    notes: list[str] = []
    results: Json = {
        "machine": machine_info(),
        "settings": {
            "processes": processes,
            "sessions_per_process": per_process,
            "turns": turns,
            "reps": reps,
        },
    }
    with (
        tempfile.TemporaryDirectory(prefix="tether-processes-") as tmp,
        chat_turn.dropping_server_data(),
    ):
        root = Path(tmp)
        sqlite_url = f"sqlite:///{root / 'tether.db'}"
        targets = [
            raw_target(root),
            tether_target("sqlite", sqlite_url, cached=False),
            tether_target("sqlite", sqlite_url, cached=True),
            tether_target("file", f"file:{root / 'files'}", cached=False),
        ]
        for kind in chat_turn.store_factories(["redis", "postgres"], notes):
            targets.append(tether_target(kind, chat_turn.server_url(kind), cached=False))
        results["figure_b_processes"] = rows = figure(targets, processes, per_process, turns, reps)
    print(
        f"\nB. throughput with processes: {per_process} sessions x {turns} turns per process "
        f"(one session: {turns} turns per process), median of {reps}"
    )
    print(f"{'system':<24}{'mode':<36}{'turns/s':>10}{'x raw':>8}{'retries/turn':>14}")
    for row in rows:
        print(
            f"{row['system']:<24}{row['mode']:<36}{row['turns_per_s']:>10,.0f}"
            f"{row['ratio_to_raw']:>8.2f}{row['conflicts_per_turn']:>14.2f}"
        )
    results["notes"] = notes
    chat_turn.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
