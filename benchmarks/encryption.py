"""Encryption at rest: what a turn costs encrypted beside plain, on the embedded SQLite store.

Run ``.venv/bin/python benchmarks/encryption.py [--quick] [--stores sqlite,file] [--json PATH]``.
One machine, SQLite (WAL, synchronous=NORMAL) by default, or the file store too
(``--stores sqlite,file``), medians of many repetitions, the plain and the encrypted store
interleaved turn by turn (so a slow moment of the machine hits both alike), each on its own
database file (or directory) and session, at history lengths 10 and 1,000:

- *cached turn*: a worker that holds the history: ``load(id, after=last_seq)`` then
  ``commit(id, version, append=[user, assistant])`` (benchmarks/runtime.py's store turn).
  Encrypted, the load opens ``state`` and ``options`` and the commit seals two items; their
  seqs come from the version the load saw, so no header is read.
- *whole-history turn*: ``load(id)`` (the whole history) then the same commit: every item is
  opened on each turn (from the plaintext cache after the first, but checked, decoded and
  given its ``history`` entry each time).

The ratio is encrypted over plain; the target is 1.25 at most (docs/encryption.md). Beside the
wall clock's medians, the CPU time of the same turns (``time.thread_time``, its 20th
percentile), which the machine's other work disturbs less.
"""

from __future__ import annotations

import argparse
import json
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
    def __init__(self, store: tether.Store, n: int) -> None:
        self.store = store
        self.id = store.create(Session(history=[USER, ASSISTANT] * (n // 2))).id
        self.n = n

    def __call__(self) -> None:
        session = self.store.load(self.id)
        assert session.history
        self.store.commit(self.id, session.version, append=[USER, ASSISTANT])

    def tidy(self) -> None:
        """Untimed: drop the turn's two items, so every turn loads n items, not n + 2 more."""
        header = self.store.load(self.id, last=0)
        self.store.replace_tail(self.id, header.version, header.first_seq - 1 + self.n)


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
    rows: list[dict[str, Any]] = []
    print(f"{store}:")
    print(
        f"{'turn':<14}{'items':>7}{'plain µs':>11}{'encrypted µs':>14}{'ratio':>7}"
        f"{'cpu plain':>11}{'cpu enc.':>10}{'cpu ratio':>11}"
    )
    for kind, cls in (("cached", CachedTurn), ("whole-history", WholeTurn)):
        for n in (10, 1000):
            turns = (40 if n == 10 else 15) if quick else (600 if n == 10 else 150)
            systems: dict[str, Callable[[], None]] = {
                "plain": cls(plain, n),
                "encrypted": cls(sealed, n),
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
                }
            )
            print(
                f"{kind:<14}{n:>7}{medians['plain']:>11,.0f}{medians['encrypted']:>14,.0f}"
                f"{ratio:>7.2f}{cpu['plain']:>11,.0f}{cpu['encrypted']:>10,.0f}{cpu_ratio:>11.2f}"
            )
    plain.close()
    sealed.close()
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
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = [name for name in stores if name not in STORES]
    if unknown or not stores:
        parser.error(f"--stores takes {', '.join(STORES)}, not {args.stores!r}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-enc-") as tmp:
        for store in stores:
            rows += figures(Path(tmp), args.quick, store)
    for label, column in (("wall clock", "ratio"), ("CPU time", "cpu_ratio")):
        missed = [r for r in rows if r[column] > TARGET]
        print(
            f"target: encrypted at most {TARGET}x plain ({label}): "
            + ("met" if not missed else f"missed by {len(missed)} of {len(rows)} figures")
        )
    if args.json:
        args.json.write_text(
            json.dumps({"quick": args.quick, "target": TARGET, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
