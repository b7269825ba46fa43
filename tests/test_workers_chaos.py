"""Chaos: worker processes SIGKILLed while they run turns; every effect still happens once.

Each turn calls a model that sleeps (an I/O-bound stand-in for an LLM), then a ``once`` tool
that appends a line to a ledger file this test owns, then the model again. A chaos loop kills a
random worker every ~1 s and starts a new one. At the end:

* every session is finished or waiting in review (nothing lost, nothing stuck), its messages
  run in the order they were submitted;
* every finished turn's tool effect is in the ledger exactly once, and no effect twice;
* no session ever had two writers: the fences stamped on its history never go down.

Run with ``tether worker`` processes and with Celery workers over RabbitMQ, on PostgreSQL and
on Redis, each in its own schema / namespace / queue. ``benchmarks/workers.py`` runs the same
harness at full size. The module is also the workers' application: ``make_agent`` is the agent
factory they load, and ``celery_app`` their Celery app (built from environment variables set
by the harness).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.agent import Agent, ModelReply, ModelRequest, ScriptedModel, ToolCall, tool
from tether.worker import current_lease
from tether.worker_turns import due_sessions, inbox_id, submit

from .conftest import drop_postgres_schema, require_module, wipe_redis_namespace, with_options

ROOT = Path(__file__).resolve().parent.parent
ENV_LEDGER = "TETHER_CHAOS_LEDGER"
ENV_DELAY = "TETHER_CHAOS_DELAY"
ENV_TTL = "TETHER_CHAOS_TTL"

# --- the workers' application ---------------------------------------------------------------------


@tool(rerun="once")
def record(note: str) -> str:
    """Append one line to the ledger: the effect that must happen once per turn."""
    lease = current_lease()
    line = json.dumps({"note": note, "fence": lease.fence if lease else None, "pid": os.getpid()})
    fd = os.open(os.environ[ENV_LEDGER], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())  # one O_APPEND write: whole lines, never mixed
    finally:
        os.close(fd)
    return f"recorded {note}"


def _reply(request: ModelRequest) -> ModelReply | str:
    time.sleep(float(os.environ.get(ENV_DELAY, "0.05")))  # the model's latency
    last = request.messages[-1]
    if last["role"] == "user":
        call = ToolCall(id=f"c{len(request.messages)}", name="record",
                        arguments={"note": last["content"]})  # fmt: skip
        return ModelReply(tool_calls=[call])
    return f"answer: {last['content']}"


def _ready_file(ledger: Path, pid: int) -> Path:
    return ledger.parent / f"ready-{pid}"


def _mark_ready(**_: Any) -> None:
    _ready_file(Path(os.environ[ENV_LEDGER]), os.getpid()).touch()


def _go_file(ledger: Path) -> Path:
    return ledger.parent / "go"


def make_agent(store: tether.Store) -> Agent:
    """The agent factory the chaos workers load (``tests.test_workers_chaos:make_agent``)."""
    _mark_ready()  # built on the store: this worker is up (a kill now hits real work)
    go = _go_file(Path(os.environ[ENV_LEDGER]))
    while not go.exists():  # the first workers wait until every turn is queued
        time.sleep(0.02)
    ttl = float(os.environ.get(ENV_TTL, "2"))
    return Agent(store, llm=ScriptedModel(_reply), tools=[record], lease_ttl=ttl)


celery_app: Any = None
if os.environ.get("TETHER_CHAOS_BROKER"):  # in a Celery worker process started by the harness
    from celery import Celery

    from tether.integrations.celery import TurnQueue

    celery_app = Celery("tether-chaos", broker=os.environ["TETHER_CHAOS_BROKER"])
    _turns = TurnQueue(
        celery_app,
        store=os.environ["TETHER_CHAOS_STORE"],
        agent=make_agent,
        queue=os.environ["TETHER_CHAOS_QUEUE"],
        name=f"tether.chaos.{os.environ['TETHER_CHAOS_QUEUE']}",
        backoff=0.1,
        max_backoff=1.0,
    )


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class Chaos:
    """One run: ``runner`` is ``"worker"`` (tether worker) or ``"celery"``."""

    store_url: str
    runner: str
    ledger: Path
    workers: int = 3
    concurrency: int = 2
    sessions: int = 30
    messages: int = 2
    kill_every: float | None = 1.0
    delay: float = 0.05
    lease_ttl: float = 2.0
    broker: str | None = None
    deadline: float = 90.0
    queue: str = field(default_factory=lambda: f"tether-chaos-{uuid.uuid4().hex[:12]}")


@dataclass
class Report:
    """``seconds`` run from the moment every turn is queued and the workers may start;
    ``latencies`` from a turn's submission (or that moment, if later) to its answer."""

    turns: int
    seconds: float
    kills: int
    finished_sessions: int
    waiting_sessions: int
    duplicates: int
    latencies: list[float]

    @property
    def turns_per_second(self) -> float:
        return self.turns / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Pool:
    """Worker processes of one kind, killed and replaced on demand."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = chaos.ledger.parent / f"{chaos.queue}.log"
        self.env = {
            **os.environ,
            ENV_LEDGER: str(chaos.ledger),
            ENV_DELAY: str(chaos.delay),
            ENV_TTL: str(chaos.lease_ttl),
            "PYTHONPATH": str(ROOT),
            "PYTHONFAULTHANDLER": "1",
        }
        if chaos.runner == "celery":
            assert chaos.broker, "celery runs need a broker"
            self.env.update(
                TETHER_CHAOS_BROKER=chaos.broker,
                TETHER_CHAOS_STORE=chaos.store_url,
                TETHER_CHAOS_QUEUE=chaos.queue,
            )

    def command(self) -> list[str]:
        c = self.chaos
        if c.runner == "worker":
            return [sys.executable, "-m", "tether", "worker", "--store", c.store_url,
                    "--agent", "tests.test_workers_chaos:make_agent",
                    "--concurrency", str(c.concurrency), "--poll-interval", "0.1"]  # fmt: skip
        return [sys.executable, "-m", "celery", "-A", "tests.test_workers_chaos:celery_app",
                "worker", "-Q", c.queue, "--pool", "threads", "-c", str(c.concurrency),
                "--without-heartbeat", "--without-gossip", "--without-mingle",
                "-l", "warning", "-n", f"{c.queue}-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip

    def start(self) -> None:
        with open(self.logs, "ab") as log:
            self.procs.append(
                subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=log)
            )

    def kill_one(self) -> bool:
        """SIGKILL a random worker that is up (has built its agent), start a new one; False
        if none is up yet (a worker killed while importing proves nothing)."""
        ready = [p for p in self.procs if _ready_file(self.chaos.ledger, p.pid).exists()]
        if not ready:
            return False
        victim = random.choice(ready)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.procs.remove(victim)
        self.start()
        return True

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(_ready_file(self.chaos.ledger, p.pid).exists() for p in self.procs):
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not up after {timeout}s; log: {self.logs}")
            time.sleep(0.05)

    def dump_stacks(self) -> None:
        """Every worker's thread stacks into the log (faulthandler, on SIGABRT)."""
        for proc in self.procs:
            proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def _submitter(chaos: Chaos, store: tether.Store) -> tuple[Any, Any]:
    """A function submitting one message, and what to close after."""
    if chaos.runner == "worker":
        return (lambda sid, text: submit(store, sid, text)), None
    from celery import Celery

    from tether.integrations.celery import TurnQueue

    app = Celery("tether-chaos-client", broker=chaos.broker)
    turns = TurnQueue(app, store=chaos.store_url, agent=make_agent, queue=chaos.queue,
                      name=f"tether.chaos.{chaos.queue}")  # fmt: skip
    return turns.submit, (app, turns)


def run_chaos(chaos: Chaos) -> Report:
    """Run ``chaos``; check every guarantee (AssertionError if one fails); return the figures."""
    store = tether.open_store(chaos.store_url)
    pool = Pool(chaos)
    send, closing = _submitter(chaos, store)
    ids = [f"chaos-{n:04d}" for n in range(chaos.sessions)]
    submitted: dict[str, float] = {}
    kills = 0
    try:
        for _ in range(chaos.workers):
            pool.start()
        pool.wait_ready(timeout=120)  # every worker up, not importing, held at the gate
        for m in range(chaos.messages):  # round-robin: the inboxes get their second messages
            for session_id in ids:
                note = f"{session_id}/m{m}"
                submitted[note] = time.time()
                send(session_id, note)
        started = time.time()  # every turn queued: the workers go, the clock starts
        _go_file(chaos.ledger).touch()
        next_kill = time.monotonic() + (chaos.kill_every or 0)
        while True:
            # done: nothing due and no turn running (a running turn's lease is live: not due)
            if not due_sessions(store) and not store.list(status="running", limit=1).sessions:
                break
            if time.time() - started > chaos.deadline:
                pool.dump_stacks()
                raise AssertionError(
                    f"not done after {chaos.deadline}s; still due: {_describe_due(store)}; "
                    f"worker log: {pool.logs}"
                )
            if chaos.kill_every and time.monotonic() >= next_kill:
                kills += pool.kill_one()
                next_kill = time.monotonic() + chaos.kill_every * random.uniform(0.5, 1.5)
            time.sleep(0.1)
        finished_at = time.time()
    finally:
        pool.stop()
        if closing is not None:
            app, turns = closing
            turns.close()
            with contextlib.suppress(Exception), app.connection_for_write() as conn:
                conn.default_channel.queue_delete(chaos.queue)
    try:
        return _check(chaos, store, ids, submitted, started, finished_at, kills)
    finally:
        store.close()


def _describe_due(store: tether.Store) -> list[dict[str, Any]]:
    """What a stuck run left behind, for the failure message."""
    found = []
    for session_id in due_sessions(store):
        header = store.load(session_id, last=3)
        snapshot = (header.state.get("_tether") or {}).get("snapshot") or {}
        inbox = (
            store.load(inbox_id(session_id), last=0) if store.exists(inbox_id(session_id)) else None
        )
        found.append(
            {
                "id": session_id,
                "status": header.status.value,
                "lease": (header.lease_owner, header.lease_fence, str(header.lease_expires_at)),
                "step": snapshot.get("step"),
                "last": [(i.get("role"), i.get("event")) for i in header.history],
                "inbox": None if inbox is None else (inbox.status.value, inbox.state),
            }
        )
    return found


def _check(
    chaos: Chaos,
    store: tether.Store,
    ids: list[str],
    submitted: dict[str, float],
    started: float,
    finished_at: float,
    kills: int,
) -> Report:
    ledger: dict[str, list[dict[str, Any]]] = {}
    if chaos.ledger.exists():
        for line in chaos.ledger.read_text().splitlines():
            entry = json.loads(line)
            ledger.setdefault(entry["note"], []).append(entry)
    duplicates = sum(len(v) - 1 for v in ledger.values() if len(v) > 1)
    assert duplicates == 0, {k: v for k, v in ledger.items() if len(v) > 1}
    finished = waiting = turns = 0
    latencies: list[float] = []
    for session_id in ids:
        session = store.load(session_id)
        status = session.status.value
        assert status in ("finished", "waiting"), (session_id, status)  # none lost, none stuck
        history = session.history
        # one writer at a time: fences never go down along the history (the commit log)
        fences = [item["fence"] for item in history if "fence" in item]
        assert len(fences) == len(history), f"{session_id}: an item without its writer's fence"
        assert fences == sorted(fences), f"{session_id}: two writers interleaved: {fences}"
        users = [i for i in history if i["role"] == "user"]
        notes = [u["content"] for u in users]
        expected = [f"{session_id}/m{m}" for m in range(chaos.messages)]
        assert notes == expected[: len(notes)], (session_id, notes)  # in submission order
        if status == "finished":
            finished += 1
            assert notes == expected, (session_id, notes)
        else:
            waiting += 1
            [review] = Agent(store).pending_reviews(session_id)
            assert review.tool == "record"
        for index, user in enumerate(users):
            note = user["content"]
            in_review = status == "waiting" and index == len(users) - 1
            if in_review:
                assert len(ledger.get(note, [])) <= 1  # maybe ran, asked to a human: never twice
                continue
            assert len(ledger.get(note, [])) == 1, (note, ledger.get(note))  # exactly once
            turns += 1
            answer = next(
                i for i in history if i["seq"] > user["seq"] and i.get("event") == "turn_finished"
            )
            answered = datetime.fromisoformat(answer["timestamp"]).timestamp()
            latencies.append(answered - max(submitted[note], started))
        if status == "finished" and store.exists(inbox_id(session_id)):
            assert store.load(inbox_id(session_id), last=0).status.value == "finished"
    return Report(turns, finished_at - started, kills, finished, waiting, duplicates, latencies)


def describe(report: Report) -> str:
    return (
        f"{report.turns} turns in {report.seconds:.1f}s ({report.turns_per_second:.1f}/s), "
        f"p50 {report.percentile(0.5) * 1000:.0f} ms, p99 {report.percentile(0.99) * 1000:.0f} ms, "
        f"{report.kills} kills, {report.waiting_sessions} in review, "
        f"{report.duplicates} duplicates"
    )


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture
def pg_store_url(postgres_url: str) -> Iterator[str]:
    require_module("psycopg", "postgres")
    schema = f"tether_t_{uuid.uuid4().hex[:16]}"
    yield with_options(postgres_url, schema=schema)
    drop_postgres_schema(postgres_url, schema)


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    require_module("redis", "redis")
    namespace = f"t{uuid.uuid4().hex}"
    yield with_options(redis_url, namespace=namespace)
    wipe_redis_namespace(redis_url, namespace)


@pytest.fixture(params=["postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = {"postgres": "pg_store_url", "redis": "redis_store_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.mark.slow
def test_tether_worker_survives_kills(store_url: str, tmp_path: Path) -> None:
    report = run_chaos(Chaos(store_url, "worker", tmp_path / "ledger.jsonl"))
    print(describe(report))
    assert report.kills >= 1
    assert report.finished_sessions + report.waiting_sessions == 30


@pytest.mark.slow
def test_celery_workers_survive_kills(store_url: str, rabbitmq_url: str, tmp_path: Path) -> None:
    require_module("celery", "celery")
    report = run_chaos(Chaos(store_url, "celery", tmp_path / "ledger.jsonl", broker=rabbitmq_url))
    print(describe(report))
    assert report.kills >= 1
    assert report.finished_sessions + report.waiting_sessions == 30
