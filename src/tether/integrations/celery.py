"""Agent turns run by Celery workers: at-least-once delivery, each effect exactly once.

``pip install 'tether[celery]'`` (RabbitMQ through Celery's own AMQP client; a Redis broker also
needs ``tether[redis]``)::

    from celery import Celery
    from tether.integrations.celery import TurnQueue

    app = Celery("myapp", broker="amqp://guest:guest@127.0.0.1:5672//")
    turns = TurnQueue(app, store="postgresql://db/app", agent="myapp.agents:make_agent")

    turns.submit("ticket-42", "Where is my order?")   # in the web handler
    # celery -A myapp.tasks:app worker -Q tether.turns --pool threads --concurrency 8

:meth:`TurnQueue.submit` first records the message in the store (a pending turn, status
``hibernated``; or, behind a turn in progress, in the session's inbox: see
:mod:`tether.worker_turns`), **then** sends the task: a turn is never queued without its
prompt stored, and a message whose task was lost is found again by
:meth:`TurnQueue.requeue_stranded`.

The task runs what the session has due with the application's agent, built by the factory
(``"module:function"``, called with the store in each worker thread). Celery is configured for
at-least-once delivery (late acks, reject on worker lost, prefetch 1, JSON only); tether makes the
effect exactly-once: a redelivered task whose turns finished does nothing, one whose worker
died mid-turn continues from the last committed step, a ``once`` tool that may have run becomes
a review. A session another worker holds (``AlreadyRunning``) is retried with exponential
backoff. Leases are renewed in the background while a turn runs, and a worker whose lease was
lost stops writing (fencing). Two messages to one session run in order, never at once.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._extras import requires_extra

with requires_extra("celery", "Celery", "celery"):
    from celery import Celery, Task
    from celery import signals as celery_signals

from ..errors import AlreadyClaimed, ConfigurationError, LeaseLost
from ..stores.base import Store
from ..worker_store import FencedStore
from ..worker_turns import (
    AgentFactory,
    Drained,
    Submitted,
    build_agent,
    drain,
    due_sessions,
    load_factory,
    submit,
)

__all__ = ["AT_LEAST_ONCE", "TurnQueue", "configure"]

log = logging.getLogger("tether.worker")

AT_LEAST_ONCE: Mapping[str, Any] = {
    # a message is acknowledged after the task ran, and given back if its worker dies
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # a worker holds one message per free thread: a killed worker strands no extra message
    "worker_prefetch_multiplier": 1,
    # session content never travels pickled
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_ignore_result": True,
    "broker_connection_retry_on_startup": True,
}
"""What :func:`configure` sets on the Celery app."""


def configure(app: Celery) -> None:
    """Set :data:`AT_LEAST_ONCE` on ``app`` (late acks, reject on worker lost, prefetch 1,
    JSON only). With a Redis broker, also set ``broker_transport_options={"visibility_timeout":
    N}`` above your longest turn: Redis redelivers an unacknowledged message after N seconds."""
    app.conf.update(dict(AT_LEAST_ONCE))


class TurnQueue:
    """Submit turns and run them on Celery workers (module doc).

    ``store`` is the store's URL (each process opens its own connection), ``agent`` the factory
    (``"module:function"`` or the function): ``make_agent(store) -> Agent`` must build the
    agent on the store it is given. ``queue`` is the Celery queue its tasks go to, ``name``
    the task's name (unique per app). An ``AlreadyRunning`` session is retried after
    ``backoff`` seconds, doubling up to ``max_backoff``, with jitter.
    """

    def __init__(
        self,
        app: Celery,
        *,
        store: str,
        agent: str | AgentFactory,
        queue: str = "tether.turns",
        name: str = "tether.run_turns",
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        configure_app: bool = True,
    ) -> None:
        if not isinstance(store, str):
            raise ConfigurationError(
                "TurnQueue takes the store's URL: each worker process opens its own connection"
            )
        if not 0 < backoff <= max_backoff:
            raise ConfigurationError(
                f"need 0 < backoff <= max_backoff, not {backoff} and {max_backoff}"
            )
        if configure_app:
            configure(app)
        self.app = app
        self.url = store
        self.factory_spec = agent
        self.queue = queue
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._inner: Store | None = None
        self._fenced: FencedStore | None = None
        self._factory: AgentFactory | None = None
        self._local = threading.local()
        self.task: Task = app.task(
            name=name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=None,
            ignore_result=True,
            queue=queue,
        )(_make_task_body(self))
        celery_signals.worker_shutting_down.connect(self._on_shutdown, weak=False)
        celery_signals.worker_ready.connect(self._on_ready, weak=False)

    # --- the sending side ----------------------------------------------------------------------

    def submit(
        self, session_id: str, message: str | Mapping[str, Any], *, create: bool = True
    ) -> Submitted:
        """Store ``message`` as the session's next turn, then send the task that runs it."""
        submitted = submit(self.store(), session_id, message, create=create)
        self.enqueue(session_id)
        return submitted

    def enqueue(self, session_id: str, *, countdown: float | None = None) -> None:
        """Send a task that runs what ``session_id`` has due (after an approval, say). Sending
        one too many is harmless: it finds nothing to do."""
        self.task.apply_async(args=[session_id], queue=self.queue, countdown=countdown)

    def requeue_stranded(self, *, older_than: float = 60.0) -> list[str]:
        """Send a task for every session with work due (a pending turn, an inbox message, a
        ``running`` turn whose lease expired) not written for ``older_than`` seconds: a task
        lost with a broker or a worker. Run it from a periodic job; returns the ids sent."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than)
        stranded = due_sessions(self.store(), updated_before=cutoff)
        for session_id in stranded:
            self.enqueue(session_id)
        return stranded

    # --- the worker side -----------------------------------------------------------------------

    def store(self) -> Store:
        """This process's store connection (opened on first use; again after a fork)."""
        self._open()
        assert self._inner is not None
        return self._inner

    def _open(self) -> FencedStore:
        with self._lock:
            if self._pid != os.getpid() or self._fenced is None:
                from .._registry import open_store

                # a forked child (prefork pool) must not share its parent's connections
                self._inner = open_store(self.url)
                self._fenced = FencedStore(self._inner)
                self._local = threading.local()
                self._pid = os.getpid()
            return self._fenced

    def agent(self) -> Any:
        """This thread's agent, built by the factory on the process's fenced store."""
        fenced = self._open()
        agent = getattr(self._local, "agent", None)
        if agent is None:
            if self._factory is None:
                self._factory = load_factory(self.factory_spec)
            agent = build_agent(self._factory, fenced)
            self._local.agent = agent
        return agent

    def run_due(self, task: Task, session_id: str) -> str:
        """The task's body: drain the session; retry while another runner holds it."""
        try:
            drained: Drained = drain(self.agent(), session_id)
        except AlreadyClaimed as exc:
            retries = int(getattr(task.request, "retries", 0) or 0)
            raise task.retry(countdown=self.retry_delay(retries, exc.expires_at)) from None
        except LeaseLost:
            # our lease ended mid-turn and another runner took the session: it finishes
            log.warning("session %r: lease lost mid-turn; its new holder continues", session_id)
            return "lease-lost"
        if drained.stopped == "checkpointed":
            # the worker is stopping: the turn is checkpointed, another worker resumes it
            self.enqueue(session_id)
        return drained.stopped

    def retry_delay(self, retries: int, holder_expires_at: datetime | None) -> float:
        """Seconds before retry number ``retries + 1`` of a session another runner holds:
        ``backoff`` doubling up to ``max_backoff``, never much past the end of the holder's
        lease (a dead holder's session is free then), with jitter (x0.5 to x1.5) so retries
        of many tasks spread out."""
        delay = min(self.max_backoff, self.backoff * float(2 ** min(retries, 32)))
        if holder_expires_at is not None:
            left = (holder_expires_at - datetime.now(timezone.utc)).total_seconds()
            delay = min(delay, max(self.backoff, left + self.backoff))
        return delay * random.uniform(0.5, 1.5)

    def _on_ready(self, **_: Any) -> None:
        # a wrong store URL or factory fails the worker at start, not its first task
        fenced = self._open()
        if self._factory is None:
            self._factory = load_factory(self.factory_spec)
        build_agent(self._factory, fenced).close()

    def _on_shutdown(self, **_: Any) -> None:
        # warm shutdown: checkpoint the running turns at their next step instead of waiting
        if self._fenced is not None and self._pid == os.getpid():
            self._fenced.request_stop()

    def close(self) -> None:
        """Close this process's store connection, if one was opened."""
        with self._lock:
            if self._fenced is not None:
                self._fenced.close()
            if self._inner is not None:
                self._inner.close()
            self._fenced = self._inner = None


def _make_task_body(turns: TurnQueue) -> Any:
    def run_turns(task: Task, session_id: str) -> str:
        """Run what a tether session has due (tether.integrations.celery)."""
        return turns.run_due(task, session_id)

    return run_turns
