"""Google ADK: tether's ``TetherSessionService`` beside ADK's own session services.

A section of ``benchmarks/frameworks.py`` (run that). Systems, each on its own file or schema:

- ``tether sqlite`` / ``tether redis`` / ``tether postgres``:
  ``TetherSessionService(tether.open_async_store(url))``;
- ``DatabaseSessionService (sqlite)``: ``DatabaseSessionService("sqlite+aiosqlite:///...")``;
- ``DatabaseSessionService (postgres)``: ``DatabaseSessionService("postgresql+asyncpg://...")``
  with its own ``search_path`` (schema);
- ``SqliteSessionService``: ADK's aiosqlite service, ``SqliteSessionService(path)``.

Events alternate a user's (~200 characters of text) and the model's (~800), built the way a
``Runner`` builds them. Measured at n = 10, 100, 1,000 and 5,000 stored events:

- ``append_event``: one event appended to a session holding n events, with the ``Session``
  object the previous append returned (as a ``Runner`` does); sessions hold at most ~10% more
  than n while they are timed;
- ``get_session``: the whole session (all its events) read back (fewer reads at 1,000 and
  5,000 events, where one read takes a large part of a second with every service);

and ``list_sessions`` of one app holding 1,000 sessions (10 users): the whole app, and one
user's 100. Pre-fills (untimed) go through each service's own ``create_session`` /
``append_event``, on a second instance of the service with durability relaxed (see
``System.prefill``), all systems at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from frameworks_common import POSTGRES_URL, Json, Loop, Servers, interleave, summarize, text

import tether

LENGTHS, QUICK_LENGTHS = (10, 100, 1000, 5000), (10, 100)
LISTED, QUICK_LISTED = 1000, 100
USERS = 10
APP = "bench"


def event(turn: int) -> Any:
    from google.adk.events.event import Event
    from google.genai import types

    user = turn % 2 == 0
    return Event(
        invocation_id=f"inv-{turn // 2}",
        author="user" if user else "assistant",
        content=types.Content(
            role="user" if user else "model",
            parts=[types.Part(text=text(turn, 200 if user else 800))],
        ),
    )


class System:
    """One session service, and a second one on the same storage for untimed pre-fills."""

    name: str
    service: Any
    prefill: Any
    """The same service class on the same database with durability relaxed (SQLite
    ``synchronous=OFF``, PostgreSQL ``synchronous_commit=off``): pre-fills of thousands of
    events take seconds instead of minutes, and store exactly what the timed service would."""

    async def close(self) -> None:
        return None


class TetherSystem(System):
    def __init__(self, kind: str, url: str, prefill_url: str | None = None) -> None:
        from tether.integrations.adk import TetherSessionService

        self.name = f"tether {kind}"
        self._store = tether.open_async_store(url)
        self.service = TetherSessionService(self._store)
        self._prefill_store = tether.open_async_store(prefill_url) if prefill_url else None
        self.prefill = (
            TetherSessionService(self._prefill_store) if self._prefill_store else self.service
        )

    async def close(self) -> None:
        await self._store.close()
        if self._prefill_store is not None:
            await self._prefill_store.close()


def _no_sync(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


class DatabaseSystem(System):
    def __init__(self, kind: str, url: str, **engine: Any) -> None:
        from google.adk.sessions import DatabaseSessionService

        self.name = f"DatabaseSessionService ({kind})"
        self.service = DatabaseSessionService(url, **engine)
        if kind == "sqlite":
            self.prefill = DatabaseSessionService(url, **engine)
            sa_event = importlib.import_module("sqlalchemy.event")
            sa_event.listen(self.prefill.db_engine.sync_engine, "connect", _no_sync)
        else:
            relaxed = dict(engine.get("connect_args", {}))
            relaxed["server_settings"] = {
                **relaxed.get("server_settings", {}),
                "synchronous_commit": "off",
            }
            self.prefill = DatabaseSessionService(url, **{**engine, "connect_args": relaxed})

    async def close(self) -> None:
        await self.service.close()
        await self.prefill.close()


class SqliteServiceSystem(System):
    name = "SqliteSessionService"

    def __init__(self, path: Path) -> None:
        from google.adk.sessions.sqlite_session_service import SqliteSessionService

        class Relaxed(SqliteSessionService):
            """ADK's service with ``synchronous=OFF`` on each connection it opens."""

            @contextlib.asynccontextmanager
            async def _get_db_connection(self) -> AsyncIterator[Any]:
                async with super()._get_db_connection() as db:
                    await db.execute("PRAGMA synchronous=OFF")
                    yield db

        self.service = SqliteSessionService(str(path))
        self.prefill = Relaxed(str(path))


def systems(directory: Path, servers: Servers, notes: list[str]) -> list[System]:
    made: list[System] = [TetherSystem("sqlite", f"sqlite:///{directory / 'tether-adk.db'}")]
    try:
        importlib.import_module("sqlalchemy.ext.asyncio")
    except ImportError as exc:
        notes.append(
            f"DatabaseSessionService skipped: {exc} (make bench runs this step in .bench-venv, "
            "which has SQLAlchemy)"
        )
        print(f"note: {notes[-1]}")
        sqlalchemy = False
    else:
        sqlalchemy = True
        made.append(DatabaseSystem("sqlite", f"sqlite+aiosqlite:///{directory / 'adk-db.db'}"))
    made.append(SqliteServiceSystem(directory / "adk-sqlite.db"))
    if servers.redis_ok:
        made.append(TetherSystem("redis", servers.tether_url("redis")))
    if servers.postgres_ok:
        url = servers.tether_url("postgres")
        made.append(TetherSystem("postgres", url, url + "&options=--synchronous_commit%3Doff"))
        try:
            importlib.import_module("asyncpg")
        except ImportError as exc:
            if sqlalchemy:
                notes.append(f"DatabaseSessionService (postgres) skipped: {exc}")
                print(f"note: {notes[-1]}")
        else:
            if sqlalchemy:
                made.append(
                    DatabaseSystem(
                        "postgres",
                        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1),
                        connect_args={"server_settings": {"search_path": servers.schema()}},
                    )
                )
    return made


PAIRS = (
    ("tether sqlite", "DatabaseSessionService (sqlite)"),
    ("tether sqlite", "SqliteSessionService"),
    ("tether postgres", "DatabaseSessionService (postgres)"),
)


async def _fill(system: System, session_ids: Sequence[str], events: int) -> None:
    """Sessions of ``events`` events each, through the system's pre-fill service."""
    for session_id in session_ids:
        session = await system.prefill.create_session(
            app_name=APP, user_id="u0", session_id=session_id
        )
        for k in range(events):
            await system.prefill.append_event(session, event(k))


async def _fill_all(made: Sequence[System], session_ids: Sequence[str], events: int) -> None:
    # every system at once: most of a pre-fill waits on its own database, not on the CPU
    await asyncio.gather(*(_fill(system, session_ids, events) for system in made))


async def _get(system: System, session_id: str) -> Any:
    got = await system.service.get_session(app_name=APP, user_id="u0", session_id=session_id)
    if got is None:
        raise RuntimeError(f"{system.name}: the pre-filled session {session_id} is missing")
    return got


def measure_events(
    loop: Loop, made: Sequence[System], lengths: Sequence[int], reps: int
) -> list[Json]:
    rows: list[Json] = []
    for n in lengths:
        per = max(1, min(reps, n // 10))  # timed appends per session: it grows by <= 10%
        ids = [f"n{n}-{s}" for s in range(-(-reps // per))]
        loop.run(_fill_all(made, ids, n))
        loop.run(_fill_all(made, [f"warm-{n}"], min(n, 10)))
        # the timed service reads what the pre-fill wrote (its revision marker included)
        held = [[loop.run(_get(system, sid)) for sid in ids] for system in made]
        for system in made:  # warm-up: connections, statement caches
            warm = loop.run(_get(system, f"warm-{n}"))
            loop.run(system.service.append_event(warm, event(n)))

        def append(
            i: int, r: int, held: list[list[Any]] = held, per: int = per, n: int = n
        ) -> None:
            loop.run(made[i].service.append_event(held[i][r // per], event(n + r)))

        def read(i: int, r: int, held: list[list[Any]] = held, n: int = n) -> None:
            got = loop.run(_get(made[i], held[i][r % len(held[i])].id))
            if len(got.events) < n:
                raise RuntimeError(f"{made[i].name} read {len(got.events)} events, not {n}")

        # a read of n events costs ~n times a small one (every service validates each event):
        # fewer reads at the longest lengths keep the section within its minutes
        reads = reps if n <= 100 else max(5, reps * 100 // n * 5)
        for op, call, count in (("append_event", append, reps), ("get_session", read, reads)):
            samples = interleave(len(made), count, call, block=min(10, count))
            for system, ns in zip(made, samples, strict=True):
                rows.append({"op": op, "system": system.name, "n": n, **summarize(ns)})
            print(
                f"  adk {op:<12} n={n:>5}: "
                + ", ".join(
                    f"{r['system']} {r['median_us']:,.0f}"
                    for r in rows
                    if r["n"] == n and r["op"] == op
                )
                + " µs (median)",
                flush=True,
            )
    return rows


def measure_listing(loop: Loop, made: Sequence[System], total: int, reps: int) -> list[Json]:
    app = f"{APP}-list"

    async def create(system: System) -> None:
        for k in range(total):
            await system.prefill.create_session(
                app_name=app, user_id=f"user-{k % USERS}", session_id=f"s-{k}"
            )

    async def create_all() -> None:
        await asyncio.gather(*(create(system) for system in made))

    loop.run(create_all())
    rows: list[Json] = []
    for scope, user in (("app", None), ("one user", "user-0")):
        expected = total if user is None else total // USERS

        def listing(i: int, r: int, user: str | None = user, expected: int = expected) -> None:
            got = loop.run(made[i].service.list_sessions(app_name=app, user_id=user))
            assert len(got.sessions) == expected, (made[i].name, len(got.sessions), expected)

        for system in made:  # warm-up
            loop.run(system.service.list_sessions(app_name=app, user_id=user))
        samples = interleave(len(made), reps, listing, block=5)
        for system, ns in zip(made, samples, strict=True):
            rows.append(
                {
                    "op": f"list_sessions ({scope})",
                    "system": system.name,
                    "sessions": total,
                    "listed": expected,
                    **summarize(ns),
                }
            )
        print(
            f"  adk list_sessions ({scope}, {expected} of {total}): "
            + ", ".join(
                f"{r['system']} {r['median_us']:,.0f}"
                for r in rows
                if r["op"] == f"list_sessions ({scope})"
            )
            + " µs (median)",
            flush=True,
        )
    return rows


def run(directory: Path, servers: Servers, quick: bool, notes: list[str]) -> Json:
    lengths = QUICK_LENGTHS if quick else LENGTHS
    reps = 8 if quick else 30
    listed = QUICK_LISTED if quick else LISTED
    loop = Loop()
    made = systems(directory, servers, notes)
    try:
        rows = measure_events(loop, made, lengths, reps)
        listing = measure_listing(loop, made, listed, 5 if quick else 15)
    finally:
        loop.close_all(system.close for system in made)
    return {
        "settings": {"lengths": list(lengths), "reps": reps, "listed_sessions": listed},
        "systems": [s.name for s in made],
        "pairs": [list(p) for p in PAIRS],
        "rows": rows,
        "listing": listing,
    }
