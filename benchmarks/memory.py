"""Memory: a worker's RSS over 100,000 turns, and loading a 100,000-message session in pages.

Run ``.venv/bin/python benchmarks/memory.py [--quick] [--json OUT.json]``. One process, the
embedded SQLite store (WAL, synchronous=NORMAL), in a temp directory.

1. **A long-running worker** serves conversations through ``tether.Sessions`` (the runtime,
   its session cache bounded to 64 sessions): 20 conversations open at a time, round-robin,
   each turn ``get(id)`` for the prompt then ``execute(id, AppendMessages(user, assistant))``; a
   conversation ends after 50 turns and a new one takes its place. 100,000 turns in all
   (``--quick``: 10,000). The process's resident set size (``VmRSS``) is sampled every 5% of
   the run: once the session cache has filled it must stay flat, because nothing a
   turn leaves behind outlives the bounded session cache.
2. **A 100,000-message session** (``--quick``: 10,000) read two ways: ``store.load(id)`` (the
   whole history in memory at once) and ``store.iter_history(id, page_size=1000)`` (one page at
   a time). Peak memory allocated by Python while reading is measured with ``tracemalloc``
   (which slows both alike; the times printed are without it).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chat_turn import history, machine_info, messages, write_json  # noqa: E402

import tether  # noqa: E402
from tether import AppendMessages, Session  # noqa: E402

Json = dict[str, Any]
OPEN_CONVERSATIONS, TURNS_PER_CONVERSATION, CACHE_SIZE = 20, 50, 64


def rss_kib() -> int:
    """The resident set size now (Linux ``/proc``; else the peak, from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker_rss(directory: Path, turns: int) -> Json:
    """Part 1: RSS sampled over ``turns`` turns of a worker serving rolling conversations."""
    store = tether.open_store(f"sqlite:///{directory / 'worker.db'}")
    sessions = tether.Sessions(store, cache_size=CACHE_SIZE)
    every = max(1, turns // 20)
    open_ids = [sessions.create().id for _ in range(OPEN_CONVERSATIONS)]
    done = [0] * OPEN_CONVERSATIONS
    samples: list[tuple[int, int]] = [(0, rss_kib())]
    started = time.perf_counter()
    for t in range(1, turns + 1):
        slot = t % OPEN_CONVERSATIONS
        session_id = open_ids[slot]
        sessions.get(session_id)  # the prompt
        sessions.execute(session_id, AppendMessages(*messages(done[slot])))
        done[slot] += 1
        if done[slot] == TURNS_PER_CONVERSATION:  # the conversation ends; a new one starts
            open_ids[slot], done[slot] = sessions.create().id, 0
        if t % every == 0:
            samples.append((t, rss_kib()))
    elapsed = time.perf_counter() - started
    store.close()
    # warm: once the session cache has filled (CACHE_SIZE conversations seen) and a bit more
    warm_turn = max(turns // 5, CACHE_SIZE * TURNS_PER_CONVERSATION * 6 // 5)
    warm = next(sample for sample in samples if sample[0] >= warm_turn)
    last = samples[-1]
    return {
        "turns": turns,
        "open_conversations": OPEN_CONVERSATIONS,
        "cache_size": CACHE_SIZE,
        "turns_per_conversation": TURNS_PER_CONVERSATION,
        "turns_per_s": turns / elapsed,
        "rss_samples_kib": samples,
        "rss_warm_kib": warm[1],
        "rss_warm_at_turn": warm[0],
        "rss_last_kib": last[1],
        "growth_after_warm_kib": last[1] - warm[1],
        "growth_per_10k_turns_kib": (last[1] - warm[1]) * 10_000 / max(1, last[0] - warm[0]),
    }


def _peak(read: Callable[[], int]) -> tuple[int, int, float]:
    """(items read, peak bytes traced, seconds untraced) for one read."""
    gc.collect()
    started = time.perf_counter()
    count = read()
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    try:
        read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak, seconds


def long_session(directory: Path, n: int, page_size: int) -> Json:
    """Part 2: a session of ``n`` messages, loaded whole and in pages."""
    store = tether.open_store(f"sqlite:///{directory / 'long.db'}")
    chunk = 10_000
    session = store.create(Session(history=history(min(n, chunk))))
    version, written = session.version, min(n, chunk)
    while written < n:
        batch = [messages(i // 2)[i % 2] for i in range(written, min(n, written + chunk))]
        version = store.commit(session.id, version, append=batch)
        written += len(batch)

    def whole() -> int:
        return len(store.load(session.id).history)

    def paged() -> int:
        count = 0
        for _ in store.iter_history(session.id, page_size=page_size):
            count += 1
        return count

    rows = []
    for label, read in (("load() whole", whole), (f"iter_history(page_size={page_size})", paged)):
        count, peak, seconds = _peak(read)
        if count != n:
            raise SystemExit(f"{label} read {count} items, expected {n}")
        rows.append({"read": label, "items": count, "peak_bytes": peak, "seconds": seconds})
    store.close()
    return {"n": n, "page_size": page_size, "reads": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10,000 turns, 10,000 messages")
    parser.add_argument("--json", type=Path, help="write the figures and machine info here")
    args = parser.parse_args(argv)
    turns, n = (10_000, 10_000) if args.quick else (100_000, 100_000)
    results: Json = {"machine": machine_info(), "settings": {"turns": turns, "n": n}}
    with tempfile.TemporaryDirectory(prefix="tether-memory-") as tmp:
        root = Path(tmp)
        # the worker first, in a fresh process: reading the long session whole raises the
        # RSS high-water mark (freed memory is kept by the allocator), which would hide growth
        results["worker"] = worker = worker_rss(root, turns)
        print(
            f"\nM1. a worker's RSS over {turns:,} turns ({OPEN_CONVERSATIONS} conversations open, "
            f"{TURNS_PER_CONVERSATION} turns each, Sessions(cache_size={CACHE_SIZE}), SQLite)"
        )
        print(f"{'turn':>8}{'RSS MiB':>10}")
        for t, kib in worker["rss_samples_kib"][:: max(1, len(worker["rss_samples_kib"]) // 10)]:
            print(f"{t:>8,}{kib / 1024:>10.1f}")
        print(
            f"after turn {worker['rss_warm_at_turn']:,}: {worker['rss_warm_kib'] / 1024:.1f} MiB;"
            f" at the end: {worker['rss_last_kib'] / 1024:.1f} MiB "
            f"({worker['growth_per_10k_turns_kib']:+,.0f} KiB per 10,000 turns); "
            f"{worker['turns_per_s']:,.0f} turns/s"
        )
        results["long_session"] = long = long_session(root, n, 1000)
        print(f"\nM2. reading a {n:,}-message session (SQLite)")
        print(f"{'read':<28}{'peak MiB traced':>16}{'seconds':>9}")
        for row in long["reads"]:
            print(f"{row['read']:<28}{row['peak_bytes'] / 2**20:>16,.1f}{row['seconds']:>9.2f}")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
