"""The README and docs cannot rot: every ```python block in them runs here, and so does the demo.

Blocks fenced as ```py are shown, not run (fragments that need your own package).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tether

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "integrations").glob("*.md")),
]
# the frameworks of docs/integrations: their extras are in dev (installed in CI)
FRAMEWORKS = {"agents", "google", "langchain_core", "langgraph", "pydantic_ai"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for index, match in enumerate(BLOCK.finditer(doc.read_text())):
            found.append((f"{doc.relative_to(ROOT)}#{index + 1}", match.group(1)))
    return found


def test_docs_have_runnable_examples() -> None:
    names = {name.split("#")[0] for name, _ in _blocks()}
    assert {"README.md", "docs/model.md", "docs/stores.md"} <= names
    pages = ("adk", "langchain", "langgraph", "openai_agents", "pydantic_ai")
    assert {f"docs/integrations/{page}.md" for page in pages} <= names  # a runnable example each


@pytest.mark.parametrize(("name", "code"), _blocks(), ids=[name for name, _ in _blocks()])
def test_doc_example_runs(
    name: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_URL", raising=False)
    # an example may register_store(): keep that from leaking into other tests
    monkeypatch.setattr(tether._registry, "_SCHEMES", dict(tether._registry._SCHEMES))
    try:
        # dont_inherit: run as a reader's script runs, without this file's __future__ imports
        exec(compile(code, name, "exec", dont_inherit=True), {"__name__": "__doc_example__"})
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in FRAMEWORKS or os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{missing} is not installed: pip install -e '.[dev]'")


def test_the_quickstart_runs_twice_in_the_same_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader runs it, then runs it again: the SQLite file from the first run is still there."""
    [(name, code)] = [(n, c) for n, c in _blocks() if n == "README.md#1"]
    assert "sqlite:///demo.db" in code
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        exec(compile(code, name, "exec"), {"__name__": "__doc_example__"})
    with tether.open_store("sqlite:///demo.db") as store:
        assert len(store.list().sessions) == 2


def _run_demo(
    cwd: Path, *args: str, after: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_URL"}
    return subprocess.run(
        [sys.executable, "-m", "tether", *args, "demo", *after],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.heavy
def test_demo_on_the_embedded_default(tmp_path: Path) -> None:
    result = _run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "a support agent on sqlite:///.tether/sessions.db" in out
    assert (tmp_path / ".tether" / "sessions.db").exists()
    pids = set(re.findall(r"\[process (\d+)\]", out))
    assert len(pids) >= 5, "every step must run in its own OS process"
    assert "agent ran ['lookup_order']" in out
    assert "the turn hibernated (status waiting)" in out
    assert "$ tether approve" in out
    assert "the payment ledger shows 1 refund" in out, "the approved refund ran exactly once"
    assert "stale" in out
    assert "was refused (the store holds" in out
    assert "store credit" in out
    assert "review_approved" in out
    assert "Traceback" not in out + result.stderr
    # run again: a second story, both listed, the new one first
    again = _run_demo(tmp_path)
    assert again.returncode == 0, again.stderr
    listed = re.findall(r"^\s+(support-[0-9a-f]{8})\s+finished", again.stdout, re.MULTILINE)
    assert len(set(listed)) == 2


@pytest.mark.heavy
def test_demo_on_a_file_store_and_refused_on_memory(tmp_path: Path) -> None:
    # as documented: tether demo --store URL (and tether --store URL demo)
    result = _run_demo(tmp_path, after=("--store", f"file:{tmp_path / 'sessions'}"))
    assert result.returncode == 0, result.stderr
    assert "the payment ledger shows 1 refund" in result.stdout
    assert any((tmp_path / "sessions").glob("support-*.json"))
    refused = _run_demo(tmp_path, "--store", "memory://")
    assert refused.returncode != 0
    assert "memory:// store does not outlive its process" in refused.stderr
    assert "Traceback" not in refused.stderr
