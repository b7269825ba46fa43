"""The web endpoint: records a message and queues its turn; answers how a session stands.

    POST /sessions/<id>/messages   {"text": "..."}  -> 202 {"session": id, "queued": "turn"}
    GET  /sessions/<id>                             -> {"status": ..., "answer": ...}

``python -m worker_app.web --store URL [--celery] [--port 8000]``: with ``--celery`` a message
goes through the Celery app of ``worker_app.tasks``; without, it is only recorded and
``tether worker`` picks it up from the store. The standard library's HTTP server: an example,
not a production server.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tether
from tether.worker_turns import submit

Submit = Callable[[str, str], str]
_PATH = re.compile(r"^/sessions/([A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,100})(/messages)?$")


def make_server(store: tether.Store, send: Submit, port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` (0: any free port) over ``store``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            match = _PATH.match(self.path)
            if match is None or not match.group(2):
                return self._reply(404, {"error": "POST /sessions/<id>/messages"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                text = json.loads(self.rfile.read(min(length, 65536)))["text"]
            except (ValueError, KeyError, TypeError):
                return self._reply(400, {"error": 'send {"text": "..."}'})
            if not isinstance(text, str) or not text.strip():
                return self._reply(400, {"error": "text must be a non-empty string"})
            queued = send(match.group(1), text)
            return self._reply(202, {"session": match.group(1), "queued": queued})

        def do_GET(self) -> None:
            match = _PATH.match(self.path)
            if match is None or match.group(2):
                return self._reply(404, {"error": "GET /sessions/<id>"})
            try:
                header = store.load(match.group(1), last=0)
            except tether.SessionNotFound:
                return self._reply(404, {"error": "no such session"})
            result = (header.state.get("_tether") or {}).get("result") or {}
            return self._reply(
                200,
                {
                    "session": header.id,
                    "status": header.status.value,
                    "version": header.version,
                    "answer": result.get("text") if header.status.value == "finished" else None,
                },
            )

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()  # session content goes out as JSON, never as HTML
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def store_submitter(store: tether.Store) -> Submit:
    """Record only: ``tether worker`` finds the turn in the store."""
    return lambda session_id, text: submit(store, session_id, text).queued


def main() -> None:
    parser = argparse.ArgumentParser(description="the worker_app web endpoint")
    parser.add_argument("--store", required=True)
    parser.add_argument("--celery", action="store_true", help="queue turns through Celery")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    store = tether.open_store(args.store)
    send = store_submitter(store)
    if args.celery:
        from .tasks import turns

        send = lambda session_id, text: turns.submit(session_id, text).queued  # noqa: E731
    server = make_server(store, send, args.port)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
