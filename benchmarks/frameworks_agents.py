"""OpenAI Agents SDK: tether's ``TetherSession`` beside the SDK's own session backends.

A section of ``benchmarks/frameworks.py`` (run that). Systems, each on its own file, schema or
key prefix:

- ``tether sqlite`` / ``tether redis`` / ``tether postgres``: ``TetherSession(id, store)`` on
  one ``tether.open_async_store(url)`` per system;
- ``SQLiteSession``: the SDK's ``agents.SQLiteSession(id, path)`` (one file);
- ``RedisSession``: ``agents.extensions.memory.RedisSession`` on one ``redis.asyncio`` client;
- ``SQLAlchemySession (postgres)``: ``agents.extensions.memory.SQLAlchemySession`` on one
  ``postgresql+asyncpg`` engine, its schema its own.

Two operations, on sessions pre-filled (untimed, one ``add_items``) with n items, half user
messages (~200 characters), half assistant messages (~800), as the Responses API shapes them:

- ``session``: what ``Runner.run`` does to its session in a turn: ``get_items()``, then
  ``add_items([user, assistant])``;
- ``Runner.run``: a real ``Runner.run(agent, text, session=session)`` with a model that returns
  a fixed ~800-character message at once (no network; tracing disabled), so the session, the
  runner's own handling of the history and nothing else is measured; up to 1,000 items (see
  :data:`RUNNER_LONGEST`).

Each in the two ways applications hold a session (:data:`MODES`), every system alike:

- ``kept``: one session object per conversation, reused turn after turn (a worker that keeps
  it in memory). It read the history once, untimed, before its timed turns: what is timed is
  the steady state (a ``TetherSession`` then reads only what is new);
- ``new``: a new session object every turn (a web handler doing ``TetherSession(id, store)``,
  ``SQLiteSession(id, path)``, ``RedisSession(id, redis_client=...)`` per request, as the SDK's
  docs show), made inside the timed turn, on the system's one store, client or engine: every
  ``get_items()`` is a first read. ``SQLAlchemySession`` objects made per turn pass
  ``create_tables=False`` (the tables exist by then): its cheapest per-request form.
"""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from frameworks_common import Json, Loop, Servers, interleave, summarize, text

import tether

LENGTHS = (10, 100, 1000, 5000)
QUICK_LENGTHS = (10, 100)
OPS = ("session", "Runner.run")
MODES = ("kept", "new")
"""``kept``: one session object across a conversation's turns; ``new``: a new object every
turn (see the module docstring)."""
RUNNER_LONGEST = 1000
"""``Runner.run`` is timed up to this length: past it the runner's own handling of the history
(the same for every backend) takes most of a second a turn and would only dilute the ratios."""
RUNNER_TURNS = 96
"""Timed ``Runner.run`` turns per system and length: 24 blocks of :data:`BLOCK`, because the
runner's own work is most of a turn and the backends differ by a few percent of it."""
BLOCK = 4
"""Timed turns a system runs back to back before the next system's turn (rotating order, see
``chat_turn.interleave``): many small blocks, so a burst of load on a shared machine lands on
every system's blocks alike. A row's ``median_us`` is the median of its blocks' medians, which
one slow block cannot move; ``p95_us`` and ``mean_us`` are over every turn."""


def user_item(turn: int) -> dict[str, Any]:
    return {"role": "user", "content": text(turn, 200)}


def assistant_item(turn: int) -> dict[str, Any]:
    return {
        "id": f"msg_{turn}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text(turn, 800), "annotations": []}],
    }


def history(n: int) -> list[dict[str, Any]]:
    return [user_item(i // 2) if i % 2 == 0 else assistant_item(i // 2) for i in range(n)]


def _agent() -> Any:
    from agents import Agent, Model, ModelResponse, Usage, set_tracing_disabled
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    set_tracing_disabled(True)  # no exporter thread, no network

    class Fixed(Model):
        """Answers every call at once with one ~800-character assistant message."""

        def __init__(self) -> None:
            self.calls = 0

        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            self.calls += 1
            part = ResponseOutputText(
                type="output_text", text=text(self.calls, 800), annotations=[]
            )
            message = ResponseOutputMessage(
                type="message",
                id=f"msg_run_{self.calls}",
                role="assistant",
                status="completed",
                content=[part],
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the benchmark's model does not stream")

    return Agent(name="bench", model=Fixed())


# --- the systems -------------------------------------------------------------------------------


class System:
    """One session backend: ``session(id)`` makes the SDK session object for an id (``fresh``:
    one made for a single turn, see :data:`MODES`); ``release`` closes such an object."""

    name: str

    def session(self, session_id: str, fresh: bool = False) -> Any:
        raise NotImplementedError

    async def release(self, session: Any) -> None:
        return None

    async def close(self) -> None:
        return None


class TetherSystem(System):
    def __init__(self, kind: str, url: str) -> None:
        from tether.integrations.openai_agents import TetherSession

        self.name = f"tether {kind}"
        self._cls = TetherSession
        self._store = tether.open_async_store(url)

    def session(self, session_id: str, fresh: bool = False) -> Any:
        return self._cls(session_id, self._store)

    async def release(self, session: Any) -> None:
        await session.close()  # the store is the system's: this closes nothing shared

    async def close(self) -> None:
        await self._store.close()


class SQLiteSystem(System):
    name = "SQLiteSession"

    def __init__(self, path: Path) -> None:
        from agents import SQLiteSession

        self._cls = SQLiteSession
        self._path = str(path)
        self._open: list[Any] = []

    def session(self, session_id: str, fresh: bool = False) -> Any:
        made = self._cls(session_id, self._path)
        self._open.append(made)
        return made

    async def release(self, session: Any) -> None:
        session.close()  # its connections, and its share of the file lock
        self._open.remove(session)

    async def close(self) -> None:
        for made in self._open:
            made.close()


class RedisSystem(System):
    name = "RedisSession"

    def __init__(self, redis_url: str, prefix: str) -> None:
        import redis.asyncio
        from agents.extensions.memory import RedisSession

        self._cls = RedisSession
        self._client = redis.asyncio.Redis.from_url(redis_url)
        self._prefix = prefix

    def session(self, session_id: str, fresh: bool = False) -> Any:
        return self._cls(session_id, redis_client=self._client, key_prefix=self._prefix)

    async def release(self, session: Any) -> None:
        await session.close()  # the client is injected: it stays open

    async def close(self) -> None:
        await self._client.aclose()


class SQLAlchemySystem(System):
    name = "SQLAlchemySession (postgres)"

    def __init__(self, postgres_url: str, schema: str) -> None:
        from agents.extensions.memory import SQLAlchemySession

        asyncio_ext = importlib.import_module("sqlalchemy.ext.asyncio")
        self._cls = SQLAlchemySession
        self._engine = asyncio_ext.create_async_engine(
            postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1),
            connect_args={"server_settings": {"search_path": schema}},
        )

    def session(self, session_id: str, fresh: bool = False) -> Any:
        # a per-turn object skips create_all (the kept ones made the tables): its cheapest form
        return self._cls(session_id, engine=self._engine, create_tables=not fresh)

    async def close(self) -> None:
        await self._engine.dispose()


def systems(directory: Path, servers: Servers, notes: list[str]) -> list[System]:
    """Every system that can run here (a missing driver or server is a note, not a failure)."""
    from frameworks_common import POSTGRES_URL, REDIS_URL

    made: list[System] = [
        TetherSystem("sqlite", f"sqlite:///{directory / 'tether.db'}"),
        SQLiteSystem(directory / "sdk.db"),
    ]
    if servers.redis_ok:
        made.append(TetherSystem("redis", servers.tether_url("redis")))
        made.append(RedisSystem(REDIS_URL, servers.redis_prefix()))
    if servers.postgres_ok:
        made.append(TetherSystem("postgres", servers.tether_url("postgres")))
        try:
            importlib.import_module("sqlalchemy.ext.asyncio")
            importlib.import_module("asyncpg")
        except ImportError as exc:
            notes.append(
                f"SQLAlchemySession skipped: {exc} (make bench runs this step in .bench-venv, "
                "which has SQLAlchemy and asyncpg)"
            )
            print(f"note: {notes[-1]}")
        else:
            made.append(SQLAlchemySystem(POSTGRES_URL, servers.schema()))
    return made


# --- the measurement ---------------------------------------------------------------------------

PAIRS = (
    ("tether sqlite", "SQLiteSession"),
    ("tether redis", "RedisSession"),
    ("tether postgres", "SQLAlchemySession (postgres)"),
)
"""tether on a backend beside the SDK's own on the same kind of backend: the targets."""


def _per_session(n: int, reps: int) -> int:
    """Timed turns per pre-filled session: the history grows by at most ~10% of n."""
    return max(1, min(reps, n // 20))


def measure(
    loop: Loop, made: Sequence[System], lengths: Sequence[int], reps: dict[str, int]
) -> list[Json]:
    agent = _agent()
    from agents import Runner

    async def session_turn(session: Any, turn: int) -> None:
        await session.get_items()
        await session.add_items([user_item(turn), assistant_item(turn)])

    async def runner_turn(session: Any, turn: int) -> None:
        await Runner.run(agent, text(turn, 200), session=session)

    ops: dict[str, Callable[[Any, int], Any]] = {
        "session": session_turn,
        "Runner.run": runner_turn,
    }
    rows: list[Json] = []
    for n in lengths:
        prefill = history(n)
        for op, call in ops.items():
            if op == "Runner.run" and n > RUNNER_LONGEST:
                continue
            for mode in MODES:
                rows += _measure_one(loop, made, call, prefill, op=op, mode=mode, reps=reps[op])
                print(
                    f"  agents {op:<10} {mode:<4} n={n:>5}: "
                    + ", ".join(
                        f"{r['system']} {r['median_us']:,.0f}"
                        for r in rows
                        if r["n"] == n and r["op"] == op and r["mode"] == mode
                    )
                    + " µs (median)",
                    flush=True,
                )
    return rows


def _measure_one(
    loop: Loop,
    made: Sequence[System],
    call: Callable[[Any, int], Any],
    prefill: list[dict[str, Any]],
    *,
    op: str,
    mode: str,
    reps: int,
) -> list[Json]:
    """One operation in one mode at one length, every system interleaved."""
    n = len(prefill)
    per = _per_session(n, reps)
    count = -(-reps // per) + 1  # the first session takes the warm-up turn
    kept: list[list[Any]] = []
    ids: list[list[str]] = []
    for i, system in enumerate(made):
        names = [f"fw-{op}-{mode}-{n}-{i}-{s}" for s in range(count)]
        sessions = [system.session(name) for name in names]
        for session in sessions:
            loop.run(session.add_items(prefill))
        loop.run(call(sessions[0], n))  # warm-up: connections, prepared statements
        if mode == "kept":
            for session in sessions[1:]:
                loop.run(session.get_items())  # the read a kept object made at its first turn
            kept.append(sessions[1:])
        else:
            for session in sessions:
                loop.run(system.release(session))
            ids.append(names[1:])
    used: list[tuple[System, Any]] = []

    def timed(i: int, r: int) -> None:
        if mode == "kept":
            loop.run(call(kept[i][r // per], n + r))
            return
        # made inside the timed turn, as a request handler makes it; closed after, untimed
        session = made[i].session(ids[i][r // per], fresh=True)
        used.append((made[i], session))
        loop.run(call(session, n + r))

    samples = interleave(len(made), reps, timed, block=BLOCK)
    for system, session in used:
        loop.run(system.release(session))
    for system, sessions in zip(made, kept, strict=False):
        for session in sessions:
            loop.run(system.release(session))
    return [
        {"op": op, "mode": mode, "system": system.name, "n": n, **_figures(ns)}
        for system, ns in zip(made, samples, strict=True)
    ]


def _figures(samples_ns: list[int]) -> Json:
    """``summarize``'s figures, the median being the median of the blocks' medians (see
    :data:`BLOCK`; a system's samples are in the order taken, one block after another)."""
    figures = summarize(samples_ns)
    medians = [
        statistics.median(samples_ns[i : i + BLOCK]) for i in range(0, len(samples_ns), BLOCK)
    ]
    figures["median_us"] = statistics.median(medians) / 1000
    figures["blocks"] = len(medians)
    return figures


def run(directory: Path, servers: Servers, quick: bool, notes: list[str]) -> Json:
    lengths = QUICK_LENGTHS if quick else LENGTHS
    reps = {"session": 8, "Runner.run": 8} if quick else {"session": 40, "Runner.run": RUNNER_TURNS}
    loop = Loop()
    made = systems(directory, servers, notes)
    try:
        rows = measure(loop, made, lengths, reps)
    finally:
        loop.close_all(system.close for system in made)
    return {
        "settings": {
            "lengths": list(lengths),
            "runner_longest": RUNNER_LONGEST,
            "turns": reps,
            "ops": list(OPS),
            "modes": list(MODES),
        },
        "systems": [s.name for s in made],
        "pairs": [list(p) for p in PAIRS],
        "rows": rows,
    }
