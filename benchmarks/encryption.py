"""Encryption at rest: what a turn costs encrypted beside plain, on the embedded SQLite store.

Run ``.venv/bin/python benchmarks/encryption.py [--quick] [--stores sqlite,file] [--frames]
[--json PATH]``.
One machine, SQLite (WAL, synchronous=NORMAL) by default, or the file store too
(``--stores sqlite,file``), medians of many repetitions, the plain and the encrypted store
interleaved turn by turn (so a slow moment of the machine hits both alike), each on its own
database file (or directory) and session, at history lengths 10 and 1,000:

- *cached turn*: a worker that holds the history: ``load(id, after=last_seq)`` then
  ``commit(id, version, append=[user, assistant])`` (benchmarks/runtime.py's store turn).
  Encrypted, the load opens ``state`` and ``options`` and the commit seals two items; their
  seqs come from the version the load saw, so no header is read.
- *whole-history turn*: ``load(id)`` (the whole history) then the same commit: every item is
  opened on each turn (from the plaintext cache after the first, decoded and given its
  ``history`` entry each time). A cut of the history back to n items (``replace_tail``,
  untimed, a write of its own) follows each turn at 10 items and every tenth at 1,000: a
  turn loads n to n + 2% items (n + 18 at 1,000), not ever more.
- *whole-history turn after another writer* (no target; what the turn above costs where the
  encrypted store cannot know its verified rows are still the stored ones): the same turn,
  with the cut made before every turn by another connection to the same database. The
  encrypted load then reads every row and compares it with the one it verified before;
  on SQLite the turn above does not, while the store's change mark says nothing was written.

The ratio is encrypted over plain; the target is 1.25 at most (docs/encryption.md). Beside the
wall clock's medians, the CPU time of the same turns (``time.thread_time``, its 20th
percentile), which the machine's other work disturbs less.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tether
from tether import Session
from tether.encryption import EncryptedStore, Keyring

USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}
TARGET = 1.25


class CachedTurn:
    def __init__(self, store: tether.Store, n: int) -> None:
        self.store = store
        self.id = store.create(Session(history=[USER, ASSISTANT] * (n // 2))).id
        self.last_seq = store.load(self.id, last=0).last_seq

    def __call__(self) -> None:
        fresh = self.store.load(self.id, after=self.last_seq)
        self.store.commit(self.id, fresh.version, append=[USER, ASSISTANT])
        self.last_seq = fresh.last_seq + 2


class WholeTurn:
    GROWTH = 0.02
    """How far past n items the history grows (two items at least) before it is cut back."""

    def __init__(self, store: tether.Store, n: int, other: tether.Store | None = None) -> None:
        self.store = store
        self.id = store.create(Session(history=[USER, ASSISTANT] * (n // 2))).id
        self.n = n
        self.other = other
        self.turns = 0

    def __call__(self) -> None:
        session = self.store.load(self.id)
        assert session.history
        self.store.commit(self.id, session.version, append=[USER, ASSISTANT])

    def tidy(self) -> None:
        """Untimed: drop the turns' items once the history has grown past n by GROWTH (two
        items at least), so a turn loads n to n + 2% items, not ever more; or after every
        turn, through the other store if there is one."""
        self.turns += 1
        store = self.other or self.store
        if store is self.store and 2 * self.turns < max(2, self.GROWTH * self.n):
            return
        self.turns = 0
        header = store.load(self.id, last=0)
        store.replace_tail(self.id, header.version, header.first_seq - 1 + self.n)


def wal_frames(directory: Path, turns: int = 300) -> list[dict[str, Any]]:
    """Untimed: the pages a turn's commit writes to SQLite's write-ahead log (frames), plain
    beside encrypted, and the stored bytes of an item row. Each system on a fresh file of its
    own, with the timed figures' turns in their order (cached at 10 then 1,000 items, then
    whole-history at 10 and 1,000, each on a new session of the same file), ``turns`` of each.
    Before each turn the log is emptied (``wal_checkpoint(TRUNCATE)``, through a second
    connection); after it, that connection's ``wal_checkpoint(PASSIVE)`` counts the frames
    the turn's commit wrote. The first third of each turn's repetitions is not counted."""
    ring = Keyring({"bench": Keyring.new_key()}, current="bench")
    rows: list[dict[str, Any]] = []
    for name in ("plain", "encrypted"):
        path = directory / f"frames-{name}.db"
        store = tether.open_store(f"sqlite:///{path}")
        if name == "encrypted":
            store = EncryptedStore(store, ring)
        watcher = sqlite3.connect(path, isolation_level=None)
        for kind in TARGETED:
            for n in (10, 1000):
                turn: CachedTurn | WholeTurn = (
                    CachedTurn(store, n) if kind == "cached" else WholeTurn(store, n)
                )
                counted: list[int] = []
                for k in range(turns):
                    watcher.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    turn()
                    frames = watcher.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                    if k >= turns // 3:
                        counted.append(frames)
                    if isinstance(turn, WholeTurn):
                        turn.tidy()
                rows.append(
                    {
                        "turn": kind,
                        "items": n,
                        "system": name,
                        "frames_per_commit": statistics.mean(counted),
                    }
                )
        row_bytes = watcher.execute("SELECT avg(length(data)) FROM tether_items").fetchone()[0]
        for row in rows:
            row.setdefault("row_bytes", row_bytes)
        watcher.close()
        store.close()
    print("WAL frames (4 KB pages) a turn's commit writes (untimed):")
    print(f"{'turn':<16}{'items':>7}{'plain':>9}{'encrypted':>11}")
    for plain, sealed in zip(rows[: len(rows) // 2], rows[len(rows) // 2 :], strict=True):
        print(
            f"{plain['turn']:<16}{plain['items']:>7}{plain['frames_per_commit']:>9.2f}"
            f"{sealed['frames_per_commit']:>11.2f}"
        )
    print(
        f"bytes of an item row: plain {rows[0]['row_bytes']:,.0f}, "
        f"encrypted {rows[-1]['row_bytes']:,.0f}"
    )
    return rows


CPU_QUANTILE = 0.2
"""The CPU time quoted is this quantile of the turns': the machine's other work inflates a
turn's CPU time too (caches, frequency), upward only, so a low quantile is the steadier."""


def interleaved(
    systems: dict[str, Callable[[], None]], turns: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Per system, (the median wall time, the CPU_QUANTILE of the thread's CPU time) of its
    turns, in µs."""
    wall: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(turns):
        for name, turn in systems.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            turn()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
            tidy = getattr(turn, "tidy", None)
            if tidy is not None:
                tidy()
    return (
        {name: statistics.median(values) * 1e6 for name, values in wall.items()},
        {
            name: sorted(values)[int(len(values) * CPU_QUANTILE)] * 1e6
            for name, values in cpu.items()
        },
    )


TURNS = ("cached", "whole-history", "whole-history after another writer")
TARGETED = ("cached", "whole-history")
"""The turns the target is for; the last of TURNS is reported beside them."""


STORES: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda path: f"sqlite:///{path}.db",
    "file": lambda path: f"file://{path}",
}
"""The stores ``--stores`` can name: their URL for a path without its suffix."""


def figures(directory: Path, quick: bool, store: str = "sqlite") -> list[dict[str, Any]]:
    ring = Keyring({"bench": Keyring.new_key()}, current="bench")
    url = STORES[store]
    plain = tether.open_store(url(directory / f"{store}-plain"))
    sealed = EncryptedStore(tether.open_store(url(directory / f"{store}-sealed")), ring)
    # the same databases through other connections: "another writer"
    plain_other = tether.open_store(url(directory / f"{store}-plain"))
    sealed_other = EncryptedStore(tether.open_store(url(directory / f"{store}-sealed")), ring)
    rows: list[dict[str, Any]] = []
    print(f"{store}:")
    print(
        f"{'turn':<36}{'items':>7}{'plain µs':>11}{'encrypted µs':>14}{'ratio':>7}"
        f"{'cpu plain':>11}{'cpu enc.':>10}{'cpu ratio':>11}"
    )
    for kind in TURNS:
        for n in (10, 1000):
            turns = (40 if n == 10 else 15) if quick else (600 if n == 10 else 150)
            systems: dict[str, Callable[[], None]] = {}
            if kind == "cached":
                systems = {"plain": CachedTurn(plain, n), "encrypted": CachedTurn(sealed, n)}
            elif kind == "whole-history":
                systems = {"plain": WholeTurn(plain, n), "encrypted": WholeTurn(sealed, n)}
            else:
                systems = {
                    "plain": WholeTurn(plain, n, plain_other),
                    "encrypted": WholeTurn(sealed, n, sealed_other),
                }
            interleaved(systems, 5)  # settle: caches, the WAL
            medians, cpu = interleaved(systems, turns)
            ratio = medians["encrypted"] / medians["plain"]
            cpu_ratio = cpu["encrypted"] / cpu["plain"]
            rows.append(
                {
                    "store": store,
                    "turn": kind,
                    "items": n,
                    "plain_us": medians["plain"],
                    "encrypted_us": medians["encrypted"],
                    "ratio": ratio,
                    "cpu_plain_us": cpu["plain"],
                    "cpu_encrypted_us": cpu["encrypted"],
                    "cpu_ratio": cpu_ratio,
                    "turns": turns,
                    "target": kind in TARGETED,
                }
            )
            print(
                f"{kind:<36}{n:>7}{medians['plain']:>11,.0f}{medians['encrypted']:>14,.0f}"
                f"{ratio:>7.2f}{cpu['plain']:>11,.0f}{cpu['encrypted']:>10,.0f}{cpu_ratio:>11.2f}"
            )
    for opened in (plain, sealed, plain_other, sealed_other):
        opened.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run, figures not quotable")
    parser.add_argument(
        "--stores",
        default="sqlite",
        help=f"comma-separated, of {', '.join(STORES)} (default: sqlite, what make bench runs)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--frames",
        action="store_true",
        help="also count the WAL pages a commit writes, plain beside encrypted (untimed; "
        "SQLite; a checkpoint before every turn)",
    )
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = [name for name in stores if name not in STORES]
    if unknown or not stores:
        parser.error(f"--stores takes {', '.join(STORES)}, not {args.stores!r}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-enc-") as tmp:
        for store in stores:
            rows += figures(Path(tmp), args.quick, store)
        frames = wal_frames(Path(tmp)) if args.frames else None
    judged = [r for r in rows if r["target"]]
    for label, column in (("wall clock", "ratio"), ("CPU time", "cpu_ratio")):
        missed = [r for r in judged if r[column] > TARGET]
        print(
            f"target: encrypted at most {TARGET}x plain ({label}): "
            + ("met" if not missed else f"missed by {len(missed)} of {len(judged)} figures")
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"quick": args.quick, "target": TARGET, "rows": rows, "frames": frames}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
