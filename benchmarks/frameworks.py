"""tether's framework adapters beside each framework's own backends, on the same workload.

Run ``.bench-venv/bin/python benchmarks/frameworks.py [--quick] [--only SECTIONS]
[--json OUT.json]`` from the repository root (``make bench`` runs it as the ``frameworks``
step, in the bench virtualenv: it has SQLAlchemy and asyncpg, which the SDK's
``SQLAlchemySession`` and ADK's ``DatabaseSessionService`` need; tether is imported from
``src/``). In the main virtualenv the same script runs without those two (each skipped with
its reason). Redis and PostgreSQL systems need the local servers (``TETHER_TEST_REDIS_URL`` /
``TETHER_TEST_POSTGRES_URL`` override the defaults); each system gets a PostgreSQL schema or
Redis key prefix of its own, dropped at the end, and a server that does not answer skips its
systems with a note.

Sections (``--only agents,langgraph,adk``; each module's docstring has the details):

- ``agents`` (``frameworks_agents.py``): OpenAI Agents SDK, ``TetherSession`` on SQLite,
  Redis and PostgreSQL beside ``SQLiteSession``, ``RedisSession`` and ``SQLAlchemySession`` on
  PostgreSQL: a turn's session calls, and a real ``Runner.run`` with a fixed model, at 10 to
  5,000 items, with one session object kept across turns and with a new one every turn;
- ``langgraph`` (``frameworks_langgraph.py``): a ``MessagesState`` chat graph for 300 turns on
  ``TetherSaver`` (SQLite, PostgreSQL) beside ``SqliteSaver`` and ``PostgresSaver``: per-turn
  latency along the thread, bytes stored, ``get_state_history``;
- ``adk`` (``frameworks_adk.py``): Google ADK, ``TetherSessionService`` on SQLite, Redis and
  PostgreSQL beside ``DatabaseSessionService`` (SQLite, PostgreSQL) and
  ``SqliteSessionService``: ``append_event`` and ``get_session`` at 10 to 5,000 events,
  ``list_sessions`` over 1,000 sessions.

``--quick`` is a smoke run (well under a minute, small sizes): its figures are not worth
quoting. Everything is measured in one run, systems interleaved: the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import frameworks_adk
import frameworks_agents
import frameworks_langgraph
import frameworks_report
from chat_turn import machine_info
from frameworks_common import Json, servers

SECTIONS: dict[str, Callable[..., Json]] = {
    "agents": frameworks_agents.run,
    "langgraph": frameworks_langgraph.run,
    "adk": frameworks_adk.run,
}
PACKAGES = (
    "openai-agents",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "google-adk",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "redis",
    "psycopg",
)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run, small sizes")
    parser.add_argument(
        "--only", help=f"comma-separated sections to run ({','.join(SECTIONS)}); default all"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    # a SIGTERM (a timeout, make interrupted) unwinds like ^C: every schema and key prefix
    # made so far is dropped on the way out
    signal.signal(signal.SIGTERM, _terminated)
    wanted = list(SECTIONS) if args.only is None else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    results: Json = {
        "machine": machine_info(),
        "versions": versions(),
        "settings": {"quick": args.quick, "sections": wanted},
        "notes": [],
        "failures": {},
    }
    started = time.perf_counter()
    for name in wanted:
        print(f"== {name}", flush=True)
        notes: list[str] = []
        t0 = time.perf_counter()
        try:
            with (
                tempfile.TemporaryDirectory(prefix=f"tether-fw-{name}-") as directory,
                servers(notes) as held,
            ):
                results[name] = SECTIONS[name](Path(directory), held, args.quick, notes)
        except (Exception, asyncio.CancelledError) as exc:  # reported; the others still run
            traceback.print_exc()
            results["failures"][name] = f"{type(exc).__name__}: {exc}"
        results[name + "_seconds"] = time.perf_counter() - t0
        results["notes"] += notes
    results["elapsed_s"] = time.perf_counter() - started
    print()
    print("\n".join(frameworks_report.render(results)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)  # minutes of figures: never lost
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
