"""``tether rm`` respects a runner's live lease, like every other write; ``--force`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tether
from tether.cli import cli


def _rm(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", url, "rm", *args])


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}"
    return f"file:{tmp_path / 'sessions'}"


def test_rm_refuses_a_claimed_session_and_force_deletes_it(url: str) -> None:
    with tether.open_store(url) as store:
        store.create(tether.Session(id="busy", history=[{"role": "user", "content": "hi"}]))
        lease = store.claim("busy", "worker-7", 300)

    refused = _rm(url, "busy", "--yes")
    assert refused.exit_code == 1, refused.output
    assert "Traceback" not in refused.output
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: ")
    assert "worker-7" in line
    assert "--force" in line
    with tether.open_store(url) as store:
        assert store.exists("busy")
        store.renew(lease, 300)  # the runner still holds it, untouched

    forced = _rm(url, "busy", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.strip() == "deleted busy"
    with tether.open_store(url) as store:
        assert not store.exists("busy")
        with pytest.raises(tether.LeaseLost):
            store.renew(lease, 300)


def test_rm_of_an_unclaimed_session_needs_no_force(url: str) -> None:
    with tether.open_store(url) as store:
        store.create(tether.Session(id="idle"))
        store.release(store.claim("idle", "worker-1", 300))
    assert _rm(url, "idle", "--yes").stdout.strip() == "deleted idle"
