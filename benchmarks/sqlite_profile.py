"""Where a whole-history SQLite turn goes: each step of ``store.load`` + ``store.commit`` timed
on its own, beside raw sqlite3's turn (the chat-turn workload, docs/benchmarks.md).

Run ``.venv/bin/python benchmarks/sqlite_profile.py [--n 1000,5000] [--reps 25]
[--rounds 3]``. Each figure is the least CPU time (``time.thread_time_ns``) of ``reps`` calls,
the least again over ``rounds`` fresh databases: on a shared machine the least is the figure
nearest to the uncontended cost. The steps are those of the store's own read:

- ``sql rows``: the SELECT of the window's rows (BLOBs), the store's own query;
- ``decode``: orjson on the rows, in the store's chunks (``_core.decode_rows``);
- ``history view``: ``Session.history``'s dicts built from the decoded rows (``_core``);
- ``load``, ``commit``, ``turn``: the public calls, everything included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import tether
from tether import Session, _core
from tether.stores._sqlite_sql import items_query
from tether.stores.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
import chat_turn as ct  # the workload: its messages and raw baseline


def least_us(call: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        started = time.thread_time_ns()
        call()
        samples.append(time.thread_time_ns() - started)
    return min(samples) / 1000


def decode(rows: Sequence[bytes]) -> list[object]:
    return list(_core.decode_rows("profile", list(rows)))


def profile(n: int, reps: int, root: Path) -> dict[str, float]:
    raw = ct.RawSQLite()
    raw.setup(root / "raw", n, 1)
    store = tether.open_store(f"sqlite:///{root / 'tether.db'}")
    assert isinstance(store, SQLiteStore)
    sid = store.create(Session(history=ct.history(n))).id
    sql, params = items_query(sid, [], 0)
    rows = [row[0] for row in store._conn.execute(sql, params)]
    records = decode(rows)
    version = [store.load(sid).version]
    user, assistant = ct.messages(n)

    def commit() -> None:
        version[0] = store.commit(sid, version[0], append=[user, assistant])

    def turn() -> None:
        session = store.load(sid)
        store.commit(sid, session.version, append=[user, assistant])

    steps: dict[str, Callable[[], object]] = {
        "raw SELECT": lambda: raw.load(0),
        "raw turn": lambda: raw.turn(0, user, assistant),
        "sql rows": lambda: [row[0] for row in store._conn.execute(sql, params)],
        "decode": lambda: decode(rows),
        "history view": lambda: _core.history_view(sid, records),  # type: ignore[arg-type]
        "load": lambda: store.load(sid),
        "commit": commit,
        "turn": turn,
    }
    try:
        return {name: least_us(call, reps) for name, call in steps.items()}
    finally:
        store.close()
        raw.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", default="1000,5000", help="history lengths, comma-separated")
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    for n in (int(x) for x in args.n.split(",")):
        least: dict[str, float] = {}
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="tether-profile-") as tmp:
                for name, us in profile(n, args.reps, Path(tmp)).items():
                    least[name] = min(least.get(name, us), us)
        print(f"n={n:,}  (µs, and µs per item)")
        for name, us in least.items():
            print(f"  {name:<13} {us:>9,.0f}  {us / n:6.2f}")
        print(f"  turn / raw turn: {least['turn'] / least['raw turn']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
