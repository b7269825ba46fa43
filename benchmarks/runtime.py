"""The session runtime's costs: a cached worker's turn against an uncached one, and fork.

Run ``.venv/bin/python benchmarks/runtime.py [--quick]``. One run, one machine, the embedded
SQLite store (WAL, synchronous=NORMAL); medians of many repetitions.

- **turn**: what an agent worker does per turn through ``Sessions``: ``get(id)`` for the prompt,
  then ``execute(id, AppendMessages(user, assistant))``. *Cached* is a ``Sessions`` that keeps
  the session between turns (the default); *uncached* has ``cache_size=0`` and reads the whole
  history every time.
- **fork**: ``fork(id)`` of a session holding N items, beside one plain commit on the same store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tether
from tether import AppendMessages

USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def turn_us(store: tether.Store, n: int, cached: bool, turns: int) -> float:
    sessions = tether.Sessions(store, cache_size=256 if cached else 0)
    session = sessions.create(history=[USER, ASSISTANT] * (n // 2))
    sessions.get(session.id)  # a worker that already holds it
    samples = []
    for _ in range(turns):
        start = time.perf_counter()
        sessions.get(session.id)
        sessions.execute(session.id, AppendMessages(USER, ASSISTANT))
        samples.append(time.perf_counter() - start)
    return _median_us(samples)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results: dict[str, object] = {"turns": []}
    turns, reps = (5, 2) if args.quick else (40, 7)
    with tempfile.TemporaryDirectory() as tmp:
        store = tether.open_store(f"sqlite:///{Path(tmp) / 'runtime.db'}")
        print(f"tether {tether.__version__}, SQLite store; medians of {turns} turns, {reps} forks")
        print(f"{'history items':>14}{'cached turn µs':>16}{'uncached turn µs':>18}{'ratio':>8}")
        for n in (10, 10_000):
            cached = turn_us(store, n, True, turns)
            uncached = turn_us(store, n, False, turns)
            print(f"{n:>14,}{cached:>16,.0f}{uncached:>18,.0f}{uncached / cached:>8.1f}")
            results["turns"].append({"n": n, "cached_us": cached, "uncached_us": uncached})  # type: ignore[attr-defined]
        fork, commit = fork_us(store, 10_000, reps)
        results["fork"] = {"n": 10_000, "fork_us": fork, "commit_us": commit}
        print(f"fork of 10,000 items: {fork:,.0f} µs; one commit: {commit:,.0f} µs")
        store.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
