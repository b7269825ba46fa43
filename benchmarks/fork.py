"""Figure E alone: fork a session of n messages on the server stores, beside one commit.

Run ``.venv/bin/python benchmarks/fork.py [--stores redis,postgres] [--n 10000] [--reps 60]
[--json OUT.json]``. ``chat_turn.py`` runs figure E with every other figure (tens of minutes);
this runs only E, on the stores named, in one process, timed side by side (``interleave``):

- ``fork (fork_session)``: the store's own fork, what ``Sessions.fork`` calls;
- ``fork (copy: load + create)``: what a fork cost on a store without ``fork_session`` (the
  parent loaded, the child created from its history): the "before" of issue 18, measured in
  the same run;
- ``commit``: a turn's two messages committed to another session of n messages;
- ``create (empty session)``: the floor a fork can reach.

Each fork forks the same parent at its last seq into a new child; the children are left in
place (the store grows by one header per fork, not by n items). Ratios, not absolute times,
are what to compare: the machine is shared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from chat_turn import (
    Json,
    _Committer,
    _create_empty,
    _table,
    dropping_server_data,
    history,
    interleave,
    machine_info,
    store_factories,
    summarize,
    write_json,
)

from tether import Session, Store


def _copy(store: Store, parent_id: str, at: int, r: int) -> object:
    parent = store.load(parent_id)
    return store.create(Session(parent_id=parent_id, fork_seq=at, history=parent.history))


def _fork(store: Store, parent_id: str, at: int, r: int) -> object:
    fork_session = getattr(store, "fork_session")  # noqa: B009 (an optional ability)
    return fork_session(Session(parent_id=parent_id), at)


def figure(stores: dict[str, Callable[[Path], Store]], n: int, reps: int, root: Path) -> list[Json]:
    ops: list[tuple[str, str, Callable[[int], object]]] = []
    opened: list[Store] = []
    for name, factory in stores.items():
        store = factory(root / name)
        opened.append(store)
        parent = store.create(Session(history=history(n)))
        system = f"tether {name}"
        if hasattr(store, "fork_session"):
            ops.append((system, "fork (fork_session)", partial(_fork, store, parent.id, n)))
        ops.append((system, "fork (copy: load + create)", partial(_copy, store, parent.id, n)))
        ops.append((f"tether {name}", "commit", _Committer(store, n)))
        ops.append((f"tether {name}", "create (empty session)", partial(_create_empty, store)))
    for _, _, op in ops:
        op(-1)  # warm-up
    samples = interleave(len(ops), reps, lambda i, r: ops[i][2](r), block=5)
    for store in opened:
        store.close()
    rows = [
        {"system": system, "op": op, "n": n, **summarize(samples[i])}
        for i, (system, op, _) in enumerate(ops)
    ]
    for row in rows:  # each store's ops against its own commit
        commit = next(r for r in rows if r["system"] == row["system"] and r["op"] == "commit")
        row["ratio_to_commit"] = row["median_us"] / commit["median_us"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stores", default="redis,postgres")
    parser.add_argument("--n", type=int, default=10_000, help="messages in the parent")
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    notes: list[str] = []
    stores = store_factories([s.strip() for s in args.stores.split(",") if s.strip()], notes)
    results: Json = {"machine": machine_info(), "settings": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory(prefix="tether-fork-") as tmp, dropping_server_data():
        results["figure_e"] = rows = figure(stores, args.n, args.reps, Path(tmp))
    _table(
        f"E. fork a session of {args.n:,} messages, beside one commit of a turn's two "
        "messages on the same store",
        rows,
        "system op median_us p95_us ratio_to_commit",
    )
    results["notes"] = notes
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
