"""The client: sends a message, then follows the session until the answer arrives.

``python -m worker_app.client http://127.0.0.1:8000 ticket-1 "My parcel is late"``
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any


def _call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def ask(base: str, session_id: str, text: str, *, timeout: float = 60.0) -> str:
    """Send ``text`` to the session and wait for the answer (polling how it stands).

    Like a chat window, it sends the next message only after the answer to the last: the
    session's newest answer is then this message's. (Messages sent while a turn runs are
    queued and run in order; a client following them would count the turns.)
    """
    _call(f"{base}/sessions/{session_id}/messages", {"text": text})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _call(f"{base}/sessions/{session_id}")
        if state["status"] == "finished" and state["answer"] is not None:
            return str(state["answer"])
        if state["status"] in ("waiting", "error"):
            raise RuntimeError(f"the turn needs a person: status {state['status']}")
        time.sleep(0.1)
    raise TimeoutError(f"no answer in {timeout}s: is a worker running?")


if __name__ == "__main__":
    print(ask(sys.argv[1], sys.argv[2], sys.argv[3]))
