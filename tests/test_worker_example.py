"""examples/worker_app end to end: web endpoint, workers (tether worker, Celery), client."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether

from .conftest import require_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from worker_app import client, web  # noqa: E402


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "WORKER_APP_STORE": f"sqlite:///{tmp_path / 'desk.db'}",
        "WORKER_APP_TICKETS": str(tmp_path / "tickets.jsonl"),
        "WORKER_APP_DELAY": "0.05",
        "WORKER_APP_QUEUE": f"tether-example-{uuid.uuid4().hex[:10]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env, "PYTHONPATH": str(EXAMPLES)}


@contextlib.contextmanager
def serve(store: tether.Store, send: web.Submit) -> Iterator[str]:
    server = web.make_server(store, send)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tickets(env: dict[str, str]) -> list[dict[str, object]]:
    lines = Path(env["WORKER_APP_TICKETS"]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_web_endpoint_tether_worker_and_client(app_env: dict[str, str]) -> None:
    with tether.open_store(app_env["WORKER_APP_STORE"]) as store:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tether", "worker", "--store", app_env["WORKER_APP_STORE"],
             "--agent", "worker_app.agent:make_agent", "--concurrency", "2",
             "--poll-interval", "0.05"],
            cwd=EXAMPLES, env=app_env,
        )  # fmt: skip
        try:
            with serve(store, web.store_submitter(store)) as base:
                answer = client.ask(base, "ticket-1", "My parcel is late")
                assert "ticket" in answer
                assert client.ask(base, "ticket-1", "Thanks") == answer  # a second turn
        finally:
            stop(worker)
        assert [t["summary"] for t in tickets(app_env)] == ["My parcel is late", "Thanks"]
        assert all(isinstance(t["fence"], int) for t in tickets(app_env))


@pytest.mark.heavy
def test_web_endpoint_celery_worker_and_client(
    app_env: dict[str, str], rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("celery", "celery")
    monkeypatch.setenv("WORKER_APP_BROKER", rabbitmq_url)
    app_env["WORKER_APP_BROKER"] = rabbitmq_url
    tasks = importlib.import_module("worker_app.tasks")
    tasks = importlib.reload(tasks)  # its app and queue from this test's environment
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker_app.tasks:app", "worker",
         "-Q", app_env["WORKER_APP_QUEUE"], "--pool", "threads", "-c", "2",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=EXAMPLES, env=app_env,
    )  # fmt: skip
    store = tasks.turns.store()
    try:
        with serve(store, lambda sid, text: tasks.turns.submit(sid, text).queued) as base:
            answer = client.ask(base, "ticket-2", "Where is my refund?")
            assert "ticket" in answer
    finally:
        stop(worker)
        with tasks.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(app_env["WORKER_APP_QUEUE"])
        tasks.turns.close()
    assert [t["summary"] for t in tickets(app_env)] == ["Where is my refund?"]
