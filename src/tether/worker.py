"""``tether worker``: run queued agent turns from the store itself, without a task queue.

A :class:`Worker` polls the store's status index for sessions with work due (a pending turn,
``hibernated``; a message waiting in a session's inbox; a ``running`` turn whose lease expired
because its worker died), and runs each with :func:`~tether.worker_turns.drain` on one of
``concurrency`` threads. Each thread has its own agent, built by the application's factory on a
:class:`~tether.worker_store.FencedStore` (leases renewed in the background, every item stamped
with its lease's fence, writes refused once the lease is lost).

:meth:`Worker.stop` (``SIGTERM`` or ``SIGINT`` with :meth:`Worker.install_signal_handlers`)
takes no new session and checkpoints each running turn at its next safe commit (status
``hibernated``, resumed by any worker); :meth:`Worker.run` returns once the threads are done.

It works on every store with claims and a status index: SQLite (processes of one host), Redis
and PostgreSQL (many hosts).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from ._registry import open_store
from .errors import AlreadyClaimed, LeaseLost, TetherError
from .stores.base import Store
from .worker_store import FencedStore, current_lease, lease_lost
from .worker_turns import AgentFactory, Drained, build_agent, drain, due_sessions, load_factory

__all__ = ["Worker", "WorkerStats", "current_lease", "lease_lost"]

log = logging.getLogger("tether.worker")


@dataclass
class WorkerStats:
    """What a worker did, so far."""

    turns_finished: int = 0
    sessions_drained: int = 0
    busy_skips: int = 0
    """Sessions another runner held when this worker tried them (it moves on)."""
    leases_lost: int = 0
    checkpointed: int = 0
    failed: int = 0
    stopped: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs the due turns of ``store`` (a store or a URL) with agents made by ``factory``
    (``"module:function"`` or the function: ``factory(store) -> Agent``, building the agent on
    the store it is given). ``poll_interval`` is how long an idle worker waits before looking
    again; ``name`` prefixes the runner names in leases."""

    def __init__(
        self,
        store: Store | str,
        factory: AgentFactory | str,
        *,
        concurrency: int = 1,
        poll_interval: float = 0.5,
        name: str | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise TetherError(f"concurrency is a number of threads >= 1, not {concurrency!r}")
        if not poll_interval > 0:
            raise TetherError(f"poll_interval is a number of seconds > 0, not {poll_interval!r}")
        self._owns_store = isinstance(store, str)
        self.inner = open_store(store) if isinstance(store, str) else store
        if not isinstance(self.inner, Store):
            raise TetherError("tether worker runs sync stores: pass a Store or a URL")
        self.store = FencedStore(self.inner)
        self.factory = load_factory(factory)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.name = name
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pending: set[str] = set()  # queued or running here: never handed out twice
        self._lock = threading.Lock()
        self._idle = threading.Event()
        # the factory runs now, once, so a broken one fails at start and not in a thread
        build_agent(self.factory, self.store).close()

    # --- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new session; checkpoint each running turn at its next safe commit."""
        self._stop.set()
        self.store.request_stop()
        self._idle.set()

    def install_signal_handlers(self) -> None:
        """``SIGTERM`` and ``SIGINT`` call :meth:`stop` (from the main thread only)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after checkpointing the turns in progress", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- the loop ------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Poll and run turns until :meth:`stop` (or, with ``until_idle``, until nothing is
        due and every thread is free). Returns the stats."""
        threads = [
            threading.Thread(target=self._run_thread, args=(n,), name=f"tether-worker-{n}")
            for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            while not self._stop.is_set():
                # look again only when threads are about to run dry: a backlog of twice the
                # threads, refilled as turns end (or every poll_interval), never a busy loop
                backlog = self._queue.qsize()
                if backlog < self.concurrency:
                    due = self._dispatch(2 * self.concurrency - backlog)
                    if until_idle and not due and self._all_free():
                        break
                self._idle.wait(self.poll_interval)
                self._idle.clear()
        finally:
            self._stop.set()
            for _ in threads:
                self._queue.put(None)
            for thread in threads:
                thread.join()
            self.close()
        return self.stats

    def _all_free(self) -> bool:
        with self._lock:
            return not self._pending

    def _dispatch(self, want: int) -> int:
        """Queue up to ``want`` due sessions not already queued here; how many are due."""
        try:
            due = due_sessions(self.store)
        except Exception as exc:  # the store is unreachable: log and look again later
            log.warning("listing due sessions failed (%s: %s)", type(exc).__name__, exc)
            return 0
        with self._lock:
            fresh = [session_id for session_id in due if session_id not in self._pending]
        # oldest first, but shuffled among the oldest few: workers polling the same index
        # spread over different sessions instead of all claiming the same one
        head = max(want, 4 * self.concurrency)
        window = fresh[:head]
        random.shuffle(window)
        for session_id in (window + fresh[head:])[:want]:
            with self._lock:
                self._pending.add(session_id)
            self._queue.put(session_id)
        return len(due)

    def _run_thread(self, number: int) -> None:
        agent = build_agent(self.factory, self.store)
        if self.name:
            agent.runner = f"{self.name}/{number}:{agent.runner}"
        else:
            agent.runner = f"{agent.runner}/{number}"
        try:
            while True:
                session_id = self._queue.get()
                if session_id is None:
                    return
                try:
                    if not self._stop.is_set():
                        self._run_one(agent, session_id)
                finally:
                    with self._lock:
                        self._pending.discard(session_id)
                    self._idle.set()
        finally:
            agent.close()

    def _run_one(self, agent: object, session_id: str) -> None:
        from .agent import Agent

        assert isinstance(agent, Agent)
        try:
            result: Drained = drain(agent, session_id, stopping=self._stop.is_set)
        except AlreadyClaimed:
            self._count("busy_skips")  # another worker runs it (or its lease has not ended)
            return
        except LeaseLost:
            self._count("leases_lost")  # taken over mid-turn: the new holder finishes it
            log.warning("session %r: lease lost mid-turn; its new holder continues", session_id)
            return
        except Exception as exc:  # a failed turn is recorded on the session (status error)
            self._count("failed")
            log.error("session %r: the turn failed (%s)", session_id, type(exc).__name__,
                      exc_info=exc)  # fmt: skip
            return
        with self._lock:
            self.stats.turns_finished += result.finished
            self.stats.sessions_drained += 1
            self.stats.stopped[result.stopped] = self.stats.stopped.get(result.stopped, 0) + 1
            if result.stopped == "checkpointed":
                self.stats.checkpointed += 1

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def close(self) -> None:
        """Stop the lease renewer; close the store if the worker opened it."""
        self.store.close()
        if self._owns_store:
            self.inner.close()


def run_worker(
    url: str,
    factory: AgentFactory | str,
    *,
    concurrency: int = 1,
    poll_interval: float = 0.5,
    on_start: Callable[[Worker], None] | None = None,
) -> WorkerStats:
    """Run a worker until ``SIGTERM`` / ``SIGINT``, as ``tether worker`` does."""
    worker = Worker(url, factory, concurrency=concurrency, poll_interval=poll_interval)
    worker.install_signal_handlers()
    if on_start is not None:
        on_start(worker)
    started = time.monotonic()
    stats = worker.run()
    log.info("worker stopped after %.1fs: %s", time.monotonic() - started, stats)
    return stats
