"""The benchmark keeps running (a smoke run: no time is asserted, only that it works)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_chat_turn_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chat_turn.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "raw sqlite3" in result.stdout
    assert "tether sqlite cached" in result.stdout
    data = json.loads(out.read_text())
    assert {"machine", "settings", "figure_a", "figure_c"} <= set(data)
    assert data["figure_a"], "figure A has no rows"
