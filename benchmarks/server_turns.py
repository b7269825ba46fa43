"""Chat turns on the server stores, beside raw redis-py and psycopg loops in the same run.

Run ``.venv/bin/python benchmarks/server_turns.py [--quick] [--json OUT.json] [--stores ...]``.
Needs the local Redis and PostgreSQL (``TETHER_TEST_REDIS_URL`` / ``TETHER_TEST_POSTGRES_URL``
override the defaults); a server that does not answer is skipped with a note.

One turn appends a user message (~200 bytes) and an assistant message (~800 bytes) to a session
that starts with 20 messages. Measured per system:

- **round trips per commit**: read from the server's own counters around 200 commits:
  Redis ``INFO commandstats`` (commands executed), PostgreSQL ``pg_stat_database.xact_commit``
  (transactions committed; one statement in autocommit is one transaction);
- **turns/s from 1 process** and **from 8 processes** (each on its own sessions), for:
  - ``raw redis-py``: ``LRANGE`` the history, then ``RPUSH`` the two messages (2 round trips);
  - ``raw psycopg``: in one transaction ``SELECT`` the history rows, ``INSERT`` two rows;
  - ``tether <store> cached``: a worker holding the session fetches what is new
    (``load(id, after=last_seq)``) and commits (2 round trips);
  - ``tether <store> whole``: ``load(id)`` then ``commit``.

Every figure counts turns only: one process times its loop; with 8, each process sets its
sessions up (creates, prefills, loads), waits at a barrier, and the run is timed from the
barrier to the last process's last turn (see ``Gate``).

Raw loops use the same servers and the same durability (Redis as configured; PostgreSQL with
its default ``synchronous_commit=on``). Each repetition runs every system of a server in turn
(best of the repetitions kept), so noise on a shared machine falls on all alike; ratios from
one run are what to compare. ``--stores postgres`` measures one server only; ``--cpu`` adds
the client and server CPU per turn of each server's loops in one process (the server's from
``/proc``: PostgreSQL's backends, or the whole ``redis-server``, so give Redis a private
server), which bound the 8-process figures on a machine whose cores clients and server share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import tether

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
USER = {"role": "user", "content": "u" * 200}
ASSISTANT = {"role": "assistant", "content": "a" * 800}
PREFILL = 20

TurnLoop = Callable[..., float]
"""(sessions, turns per session[, gate]) -> seconds its turns took, run inside one process;
the gate (8 processes, see :class:`Gate`) opens when every process has set its sessions up."""


# --- raw baselines -------------------------------------------------------------------------------


def raw_redis_loop(tag: str, meter: CpuMeter | None = None) -> TurnLoop:
    def run(sessions: int, turns: int, gate: Gate | None = None) -> float:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = [f"bench:{tag}:{uuid.uuid4().hex}" for _ in range(sessions)]
        payload = json.dumps(USER), json.dumps(ASSISTANT)
        for key in keys:
            client.rpush(key, *([payload[0]] * PREFILL))
        if meter is not None:
            meter.start(meter.backends())
        if gate is not None:
            gate.open()
        start = time.perf_counter()
        for _ in range(turns):
            for key in keys:
                [json.loads(item) for item in client.lrange(key, 0, -1)]
                client.rpush(key, *payload)
        elapsed = time.perf_counter() - start
        if gate is not None:
            gate.close()
        if meter is not None:
            meter.stop()
        client.delete(*keys)
        client.close()
        return elapsed

    return run


def raw_postgres_loop(tag: str, meter: CpuMeter | None = None) -> TurnLoop:
    def run(sessions: int, turns: int, gate: Gate | None = None) -> float:
        import psycopg

        table = f"bench_{tag}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE {table} (session_id text, seq int, role text, content text, "
                "PRIMARY KEY (session_id, seq))"
            )
            ids = [uuid.uuid4().hex for _ in range(sessions)]
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                    [(i, n, "user", USER["content"]) for i in ids for n in range(PREFILL)],
                )
            conn.autocommit = False
            if meter is not None:
                meter.start([conn.info.backend_pid])
            if gate is not None:
                gate.open()
            start = time.perf_counter()
            for _ in range(turns):
                for session_id in ids:
                    with conn.transaction():
                        rows = conn.execute(
                            f"SELECT seq, role, content FROM {table} WHERE session_id = %s "
                            "ORDER BY seq",
                            (session_id,),
                        ).fetchall()
                        last = rows[-1][0]
                        with conn.cursor() as cur:
                            cur.executemany(
                                f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                                [
                                    (session_id, last + 1, "user", USER["content"]),
                                    (session_id, last + 2, "assistant", ASSISTANT["content"]),
                                ],
                            )
            elapsed = time.perf_counter() - start
            if gate is not None:
                gate.close()
            if meter is not None:
                meter.stop()
            conn.autocommit = True
            conn.execute(f"DROP TABLE {table}")
        return elapsed

    return run


# --- tether --------------------------------------------------------------------------------------


def tether_url(kind: str) -> str:
    suffix = uuid.uuid4().hex[:12]
    if kind == "redis":
        sep = "&" if "?" in REDIS_URL else "?"
        return f"{REDIS_URL}{sep}namespace=bench-{suffix}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}schema=bench_{suffix}"


def tether_loop(url: str, cached: bool, meter: CpuMeter | None = None) -> TurnLoop:
    def run(sessions: int, turns: int, gate: Gate | None = None) -> float:
        with tether.open_store(url) as store:
            held = {}
            for _ in range(sessions):
                session = store.create(tether.Session(history=[USER] * PREFILL))
                held[session.id] = store.load(session.id)
            if meter is not None:
                meter.start(meter.backends())
            if gate is not None:
                gate.open()
            start = time.perf_counter()
            for _ in range(turns):
                for session_id, cache in held.items():
                    if cached:
                        new = store.load(session_id, after=cache.last_seq)
                        cache.history += new.history
                        store.commit(session_id, new.version, append=[USER, ASSISTANT])
                        cache.version, cache.last_seq = new.version + 1, new.last_seq + 2
                    else:
                        loaded = store.load(session_id)
                        store.commit(session_id, loaded.version, append=[USER, ASSISTANT])
            elapsed = time.perf_counter() - start
            if gate is not None:
                gate.close()
            if meter is not None:
                meter.stop()
            for session_id in held:
                store.delete(session_id)
        return elapsed

    return run


def cleanup(url: str) -> None:
    """Drop what a tether run left: the Redis namespace's keys or the PostgreSQL schema."""
    if url.startswith("redis"):
        import redis

        namespace = url.rsplit("namespace=", 1)[1]
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"tether:{{{namespace}}}:*", count=1000):
            client.delete(key)
        client.close()
    else:
        import psycopg
        from psycopg import sql

        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- where the time goes (--cpu) ----------------------------------------------------------------


class CpuMeter:
    """CPU seconds of this process and of the server's processes over a timed loop.

    Read from ``/proc/<pid>/stat`` (utime + stime: Linux, a server on this machine). For
    PostgreSQL, its backends: a tether store's are found by the ``application_name`` its URL
    sets. For Redis, the whole ``redis-server`` (its ``process_id``): on a server that other
    clients use too, their work counts as well, so measure Redis on a private server.
    """

    def __init__(self, application_name: str = "", *, redis_server: bool = False) -> None:
        self.application_name = application_name
        self.redis_server = redis_server
        self.client = self.server = 0.0
        self._pids: list[int] = []

    def backends(self) -> list[int]:
        if self.redis_server:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            pid = int(client.info("server")["process_id"])
            client.close()
            return [pid]
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (self.application_name,),
            ).fetchall()
        return [int(pid) for (pid,) in rows]

    @staticmethod
    def _server(pids: list[int]) -> float:
        ticks = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def start(self, pids: list[int]) -> None:
        self._pids = pids
        self.client, self.server = time.process_time(), self._server(pids)

    def stop(self) -> None:
        self.client = time.process_time() - self.client
        # a connection the store's pool opened during the loop counts whole
        pids = self._pids
        if self.application_name and not self.redis_server:
            pids = sorted({*self._pids, *self.backends()})
        self.server = self._server(pids) - self.server


def _cpu_loops(kind: str, url: str) -> tuple[dict[str, TurnLoop], dict[str, CpuMeter]]:
    """The loops of one server, each with the meter that times it."""
    if kind == "redis":
        meters = {name: CpuMeter(redis_server=True) for name in ("raw redis-py", "cached", "whole")}
        raw, store_url = raw_redis_loop("cpu", meters["raw redis-py"]), url
    else:
        name = f"bench_cpu_{uuid.uuid4().hex[:12]}"
        meters = {"raw psycopg": CpuMeter(), "cached": CpuMeter(name), "whole": CpuMeter(name)}
        raw, store_url = (
            raw_postgres_loop("cpu", meters["raw psycopg"]),
            f"{url}&application_name={name}",
        )
    loops = {
        next(iter(meters)): raw,
        f"tether {kind} cached": tether_loop(store_url, True, meters["cached"]),
        f"tether {kind} whole": tether_loop(store_url, False, meters["whole"]),
    }
    by_system = dict(zip(loops, meters.values(), strict=True))
    return loops, by_system


def cpu_per_turn(kind: str, sessions: int, turns: int, reps: int) -> dict[str, dict[str, float]]:
    """Client and server CPU milliseconds per turn of one server's loops, one process (the
    least of ``reps`` runs each, taken in turn): on a machine whose cores the clients and the
    server share, what bounds the 8-process throughput."""
    figures: dict[str, dict[str, float]] = {}
    for _ in range(reps):
        url = tether_url(kind)
        loops, meters = _cpu_loops(kind, url)
        try:
            for system, loop in loops.items():
                loop(sessions, turns)
                meter, n = meters[system], sessions * turns
                client, server = meter.client / n * 1e3, meter.server / n * 1e3
                best = figures.setdefault(system, {"client_ms": client, "server_ms": server})
                if client + server < best["client_ms"] + best["server_ms"]:
                    figures[system] = {"client_ms": client, "server_ms": server}
        finally:
            cleanup(url)
    return figures


# --- measurement ---------------------------------------------------------------------------------


class Gate:
    """Where a process of a multi-process run starts and ends its turns. Every process sets
    its sessions up (creates, prefills, loads) and then waits at the gate for all the others:
    the run is timed from the gate's opening to the last process's last turn, so turns/s count
    turns only, as they do in one process (before, the 8-process figures also timed each
    process's setup and clean-up, which a raw loop's 20 ``RPUSH`` make cheaper than 20
    creates and loads)."""

    def __init__(self, barrier: Any) -> None:
        self.barrier = barrier
        self.began = self.ended = 0.0

    def open(self) -> None:
        self.barrier.wait(timeout=600)
        self.began = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes

    def close(self) -> None:
        self.ended = time.perf_counter()


def _child(loop: TurnLoop, sessions: int, turns: int, out: Any, barrier: Any) -> None:
    gate = Gate(barrier)
    loop(sessions, turns, gate)
    out.put((gate.began, gate.ended))


def turns_per_second(loop: TurnLoop, processes: int, sessions: int, turns: int) -> float:
    if processes == 1:
        return sessions * turns / loop(sessions, turns)
    ctx = multiprocessing.get_context("fork")  # closures cannot be pickled for spawn
    out, barrier = ctx.Queue(), ctx.Barrier(processes)
    procs = [
        ctx.Process(target=_child, args=(loop, sessions, turns, out, barrier))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    spans: list[tuple[float, float]] = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError("a benchmark process failed")
    elapsed = max(end for _, end in spans) - min(began for began, _ in spans)
    return processes * sessions * turns / elapsed


def redis_commands() -> int:
    """Requests clients sent: every top-level command, not those a script runs inside Redis.

    ``INFO commandstats`` also counts the commands a Lua script runs; those are not round
    trips, so a script's inner commands are subtracted by counting only the script calls and
    transactions tether sends, plus any other top-level command it might send.
    """
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    stats = client.info("commandstats")
    client.close()
    requests = ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval", "cmdstat_exec")
    return sum(int(stats[k]["calls"]) for k in requests if k in stats)


def postgres_transactions() -> int:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _counted(kind: str, url: str, session_id: str, commits: int) -> int:
    """The server counter's growth around a fresh store that makes ``commits`` commits.

    The store is closed before the second reading: a PostgreSQL backend reports its
    transaction counts when it exits, not at once.
    """
    counter = redis_commands if kind == "redis" else postgres_transactions
    before = counter()
    with tether.open_store(url) as store:
        version = store.load(session_id, last=0).version
        for _ in range(commits):
            version = store.commit(session_id, version, append=[USER, ASSISTANT])
    if kind == "postgres":
        time.sleep(1.2)  # the statistics collector's reporting interval
    return counter() - before


def round_trips_per_commit(kind: str, url: str, commits: int = 200) -> float:
    """Server requests per tether commit, from the server's own counters.

    A run with no commits measures what opening, loading and closing cost; the difference to a
    run with ``commits`` commits, divided by ``commits``, is the cost of one commit.
    """
    with tether.open_store(url) as store:
        session_id = store.create(tether.Session(history=[USER])).id
    if kind == "postgres":
        time.sleep(1.2)
    base = _counted(kind, url, session_id, 0)
    full = _counted(kind, url, session_id, commits)
    return (full - base) / commits


def available(kind: str) -> str | None:
    url = tether_url(kind)
    try:
        with tether.open_store(url) as store:
            store.exists("probe")
    except tether.TetherError as exc:
        return str(exc)
    finally:
        with contextlib.suppress(Exception):  # a server that is down has nothing to clean
            cleanup(url)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--stores",
        default="redis,postgres",
        help="comma-separated servers to measure (redis, postgres; default both)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="also the client and server CPU per turn of each server's loops (1 process; "
        "for Redis, a private server: all of its CPU counts)",
    )
    args = parser.parse_args()
    kinds = [kind for kind in ("redis", "postgres") if kind in args.stores.split(",")]
    sessions, turns, reps = (5, 10, 1) if args.quick else (20, 25, 3)
    results: dict[str, Any] = {"sessions": sessions, "turns": turns, "systems": {}}
    print(f"server turns: {sessions} sessions x {turns} turns per process, best of {reps} runs")
    columns = ("RT/commit", "1 proc t/s", "8 proc t/s", "x raw 1p", "x raw 8p")
    widths = (10, 12, 12, 10, 10)
    print(f"{'system':<26}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for kind in kinds:
        why = available(kind)
        if why is not None:
            print(f"{kind}: skipped ({why})")
            continue
        raw = raw_redis_loop(kind) if kind == "redis" else raw_postgres_loop(kind)
        rows: list[tuple[str, TurnLoop, float | None]] = [(f"raw {kind}", raw, None)]
        urls = []
        for cached in (True, False):
            url = tether_url(kind)
            urls.append(url)
            rows.append(
                (f"tether {kind} {'cached' if cached else 'whole'}", tether_loop(url, cached), None)
            )
        rt_url = tether_url(kind)
        urls.append(rt_url)
        round_trips = round_trips_per_commit(kind, rt_url)
        try:
            # Each repetition runs every system in turn, so that a noisy moment on a shared
            # machine falls on all of them alike; the best repetition of each is kept.
            best = {name: {1: 0.0, 8: 0.0} for name, _, _ in rows}
            for _ in range(reps):
                for procs in (1, 8):
                    for name, loop, _ in rows:
                        rate = turns_per_second(loop, procs, sessions, turns)
                        best[name][procs] = max(best[name][procs], rate)
            base = best[rows[0][0]]
            for name, _, _ in rows:
                figures = best[name]
                rt = "" if name.startswith("raw") else f"{round_trips:.2f}"
                print(
                    f"{name:<26}{rt:>10}{figures[1]:>12,.0f}{figures[8]:>12,.0f}"
                    f"{figures[1] / base[1]:>10.2f}{figures[8] / base[8]:>10.2f}"
                )
                results["systems"][name] = {
                    "turns_per_s_1": figures[1],
                    "turns_per_s_8": figures[8],
                    "round_trips_per_commit": None if name.startswith("raw") else round_trips,
                }
        finally:
            for url in urls:
                cleanup(url)
    cpu: dict[str, dict[str, float]] = {}
    for kind in kinds:
        if args.cpu and f"raw {kind}" in results["systems"]:
            cpu.update(cpu_per_turn(kind, sessions, turns, reps))
    if cpu:
        results["cpu_ms_per_turn"] = cpu
        print(f"\n{'CPU ms per turn, 1 process':<26}{'client':>10}{'server':>10}{'total':>10}")
        for system, parts in cpu.items():
            total = parts["client_ms"] + parts["server_ms"]
            print(
                f"{system:<26}{parts['client_ms']:>10.3f}{parts['server_ms']:>10.3f}{total:>10.3f}"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
