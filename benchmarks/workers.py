"""Background workers under chaos: throughput, submit-to-answer latency, kills survived.

Run ``.venv/bin/python benchmarks/workers.py [--quick] [--turns N] [--json OUT.json]`` from the
repository root. Needs the local PostgreSQL, Redis and RabbitMQ (``TETHER_TEST_*_URL`` override
them); a server that does not answer skips its runs with a note.

Each turn is what ``tests/test_workers_chaos.py`` runs (same harness, larger): a model that
sleeps 50 ms (an I/O-bound stand-in for an LLM), a ``once`` tool appending to a ledger, the
model again. All turns are queued first (every session gets two messages; the second waits in
the session's inbox until the first has run), then the workers start.

- **throughput**: turns/s with 1, 2 and 4 ``tether worker`` processes (one thread each), no
  kills, on PostgreSQL: the turns wait on the model, so 4 workers should do >= 3x one;
- **chaos**: 4 workers (``tether worker``, and Celery over RabbitMQ), a random one SIGKILLed
  every ~2 s and replaced, on PostgreSQL and on Redis: turns/s, p50 / p99 from submit to
  answer (a queue of N turns: mostly time spent waiting in the queue), kills survived, turns
  left in review, duplicated effects (must be 0). Every guarantee the test checks is checked
  here too; a failure ends the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    POSTGRES_URL,
    RABBITMQ_URL,
    REDIS_URL,
    _reachable,
    drop_postgres_schema,
    wipe_redis_namespace,
    with_options,
)
from tests.test_workers_chaos import Chaos, Report, describe, run_chaos  # noqa: E402


def _store(kind: str) -> tuple[str, Any]:
    """A fresh schema / namespace, and how to remove it."""
    if kind == "postgres":
        schema = f"tether_t_{uuid.uuid4().hex[:16]}"
        return with_options(POSTGRES_URL, schema=schema), lambda: drop_postgres_schema(
            POSTGRES_URL, schema
        )
    namespace = f"t{uuid.uuid4().hex}"
    return with_options(REDIS_URL, namespace=namespace), lambda: wipe_redis_namespace(
        REDIS_URL, namespace
    )


def one_run(kind: str, runner: str, *, workers: int, turns: int, kill_every: float | None,
            concurrency: int) -> dict[str, Any]:  # fmt: skip
    url, cleanup = _store(kind)
    ledger_dir = Path(tempfile.mkdtemp(prefix="tether-bench-workers-"))
    sessions, messages = _shape(turns)
    chaos = Chaos(
        url,
        runner,
        ledger_dir / "ledger.jsonl",
        workers=workers,
        concurrency=concurrency,
        sessions=sessions,
        messages=messages,
        kill_every=kill_every,
        broker=RABBITMQ_URL if runner == "celery" else None,
        deadline=max(120.0, turns * 1.5),
    )
    try:
        report: Report = run_chaos(chaos)
    finally:
        cleanup()
    print(f"  {kind:8} {runner:6} {workers} worker(s): {describe(report)}", flush=True)
    return {
        "store": kind,
        "runner": runner,
        "workers": workers,
        "concurrency": concurrency,
        "kill_every_s": kill_every,
        "turns": report.turns,
        "seconds": round(report.seconds, 2),
        "turns_per_s": round(report.turns_per_second, 2),
        "p50_ms": round(report.percentile(0.5) * 1000),
        "p99_ms": round(report.percentile(0.99) * 1000),
        "kills": report.kills,
        "in_review": report.waiting_sessions,
        "duplicates": report.duplicates,
    }


def _shape(turns: int) -> tuple[int, int]:
    """(sessions, messages per session) for about ``turns`` turns: two messages each, the
    second one waiting in the session's inbox while the first runs."""
    return max(1, turns // 2), 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 60 turns")
    parser.add_argument("--turns", type=int, default=None, help="turns per chaos run (1000)")
    parser.add_argument(
        "--throughput-turns", type=int, default=None, help="turns per throughput run (200)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    turns = args.turns or (60 if args.quick else 1000)
    tp_turns = args.throughput_turns or (40 if args.quick else 200)
    up = {
        "postgres": _reachable(POSTGRES_URL, 5432) is None,
        "redis": _reachable(REDIS_URL, 6379) is None,
        "rabbitmq": _reachable(RABBITMQ_URL, 5672) is None,
    }
    notes = [f"{name} is not reachable: its runs are skipped" for name, ok in up.items() if not ok]
    for note in notes:
        print(f"  note: {note}")
    results: dict[str, Any] = {
        "turns": turns,
        "throughput_turns": tp_turns,
        "machine": {"cpu_count": os.cpu_count(), "loadavg": os.getloadavg()},
        "notes": notes,
        "throughput": [],
        "chaos": [],
    }
    started = time.perf_counter()
    if up["postgres"]:
        print("throughput (tether worker, PostgreSQL, no kills):", flush=True)
        for workers in (1, 2, 4):
            results["throughput"].append(
                one_run(
                    "postgres",
                    "worker",
                    workers=workers,
                    turns=tp_turns,
                    kill_every=None,
                    concurrency=1,
                )
            )
        one = results["throughput"][0]["turns_per_s"]
        four = results["throughput"][-1]["turns_per_s"]
        results["speedup_4_vs_1"] = round(four / one, 2) if one else None
        print(f"  4 workers / 1 worker: {results['speedup_4_vs_1']}x (target >= 3x)")
    print(f"chaos ({turns} turns, 4 workers, a SIGKILL every ~2 s):", flush=True)
    for kind in ("postgres", "redis"):
        for runner in ("worker", "celery"):
            if not up[kind] or (runner == "celery" and not up["rabbitmq"]):
                continue
            results["chaos"].append(
                one_run(kind, runner, workers=4, turns=turns, kill_every=2.0, concurrency=2)
            )
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["duplicates"] = sum(r["duplicates"] for r in results["chaos"])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
