"""``make bench`` keeps running (a smoke run: no time is asserted, only that it works).

The peers (their own virtualenv, built by ``make bench``) and the server benchmark (run by
``make bench`` against the real servers) are left to ``make bench``; this runs the rest of the
pipeline the way ``make bench BENCH_ARGS=--quick`` does: the benchmarks, then the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "chat_turn,processes,runtime,memory",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_the_quick_run_writes_every_figure(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    assert "raw sqlite3" in stdout
    assert "tether sqlite cached" in stdout
    data = json.loads((out / "chat_turn.json").read_text())
    assert {"machine", "settings", "durability"} <= set(data)
    for figure in ("figure_a", "figure_b", "figure_c", "figure_d", "figure_e", "figure_f"):
        assert data[figure], f"{figure} has no rows"
    processes = json.loads((out / "processes.json").read_text())
    modes = {row["mode"] for row in processes["figure_b_processes"]}
    assert len(modes) == 3, modes  # 1 process, separate sessions, one shared session
    memory = json.loads((out / "memory.json").read_text())
    assert len(memory["worker"]["rss_samples_kib"]) > 10
    assert {r["items"] for r in memory["long_session"]["reads"]} == {memory["settings"]["n"]}


def test_the_report_renders_the_targets_and_every_section(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    text = (out / "report.md").read_text()
    assert text.startswith(report.BEGIN)
    assert text.rstrip().endswith(report.END)
    for heading in (
        "Against the targets",
        "**A.",
        "**E.",
        "**F.",
        "Durability",
        "B with processes",
        "Memory",
    ):
        assert heading in text, heading
    assert "peers: not run in this run." in text  # left to make bench, and said so
    assert "(`--quick`: a smoke run, not figures to quote)" in text


def test_the_report_replaces_only_the_marked_block_of_the_docs(
    quick_run: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = quick_run
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{report.BEGIN}\nold\n{report.END}\n\nafter\n")
    report.splice(doc, report.render(out))
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nprose before\n\n")
    assert text.endswith("\n\nafter\n")
    assert "old" not in text
    assert "Against the targets" in text
    doc.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="no <!-- bench:begin -->"):
        report.splice(doc, "x")
