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
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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


@pytest.mark.parametrize(("name", "code"), _blocks(), ids=[name for name, _ in _blocks()])
def test_doc_example_runs(
    name: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_URL", raising=False)
    # an example may register_store(): keep that from leaking into other tests
    monkeypatch.setattr(tether._registry, "_SCHEMES", dict(tether._registry._SCHEMES))
    exec(compile(code, name, "exec"), {"__name__": "__doc_example__"})


def _run_demo(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_URL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_on_the_embedded_default(tmp_path: Path) -> None:
    out = _run_demo(tmp_path)
    assert "tether demo on sqlite:///.tether/sessions.db" in out
    assert (tmp_path / ".tether" / "sessions.db").exists()
    pids = set(re.findall(r"\[process (\d+)\]", out))
    assert len(pids) >= 5, "every step must run in its own OS process"
    assert "stale write was refused: expected version 2, the store holds 3" in out
    assert "retry committed: version 4" in out
    assert "#6      user: Thanks, that's all!" in out
    # run again: a second session, both listed, newest first
    again = _run_demo(tmp_path)
    listed = re.findall(r"(\S+)  v4 ", again)
    assert len(listed) == 2
    assert again.index("<- this run") < again.rindex("  v4 ")


@pytest.mark.parametrize("scheme", ["file", "memory-not-allowed"])
def test_demo_on_another_store(tmp_path: Path, scheme: str) -> None:
    if scheme == "file":
        out = _run_demo(tmp_path, "--store", f"file:{tmp_path / 'sessions'}")
        assert "retry committed: version 4" in out
        assert any((tmp_path / "sessions").glob("*.json"))
    else:
        # each step is a new process, so a memory store cannot carry the session: it must fail
        # loudly, not pretend
        env = {k: v for k, v in os.environ.items() if k != "TETHER_URL"}
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo.py"), "--store", "memory://"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2
        assert "memory:// store does not outlive its process" in result.stderr
        assert "Traceback" not in result.stderr
