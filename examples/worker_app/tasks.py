"""The Celery app: ``celery -A worker_app.tasks:app worker -Q tether.turns --pool threads``.

``WORKER_APP_BROKER`` (default: the local RabbitMQ) and ``WORKER_APP_STORE`` (default: a SQLite
file; use PostgreSQL or Redis when workers run on several hosts) configure it.
"""

from __future__ import annotations

import os
import tempfile

from celery import Celery

from tether.integrations.celery import TurnQueue

BROKER = os.environ.get("WORKER_APP_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
STORE = os.environ.get(
    "WORKER_APP_STORE", f"sqlite:///{os.path.join(tempfile.gettempdir(), 'worker_app.db')}"
)
QUEUE = os.environ.get("WORKER_APP_QUEUE", "tether.turns")

app = Celery("worker_app", broker=BROKER)
turns = TurnQueue(app, store=STORE, agent="worker_app.agent:make_agent", queue=QUEUE)
