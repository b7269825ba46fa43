"""``.ci/ensure-services`` starts a NATS server with JetStream when none answers, and a missing
driver fails the NATS tests under ``CI=true`` instead of skipping them.

The shared server on 4222 is never touched: the script is pointed at a free port and a
directory of this test (``NATS_PORT``, ``NATS_DIR``), and the server it starts is stopped
by the pid it wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import tether

from .conftest import require_module

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.heavy
def test_ensure_services_starts_nats_when_it_is_down(tmp_path: Path) -> None:
    require_module("nats", "nats")
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed here: the script can only report")
    port, directory = _free_port(), tmp_path / "nats"
    env = {**os.environ, "NATS_PORT": str(port), "NATS_DIR": str(directory)}

    def ensure() -> str:
        done = subprocess.run(
            ["bash", str(ROOT / ".ci" / "ensure-services")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    pid_file = directory / "nats-server.pid"
    try:
        out = ensure()
        assert f"starting NATS (JetStream) on port {port}" in out
        assert "services: NATS is up" in out
        with tether.open_store(f"nats://127.0.0.1:{port}/tether_tci") as store:  # JetStream on
            created = store.create(tether.Session(history=[{"role": "user"}]))
            assert store.load(created.id).version == 1
        again = ensure()
        assert "services: NATS is up" in again
        assert "starting NATS" not in again  # up already: left alone
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def test_a_missing_driver_skips_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import conftest

    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="tether\\[nats\\]"):
        conftest.require_module("tether_no_such_driver", "nats")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.require_module("tether_no_such_driver", "nats")
