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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402

# minutes: make check leaves it out, make test runs it
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "chat_turn,processes,runtime,memory,encryption",
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
        # the speed targets of the runtime, the agent and encryption sit in the same table
        "`Sessions.execute` (a worker keeping what it returns) within 1.2",
        "`Agent` turn (no tools): each write within 1.2",
        "bytes written per turn on SQLite at most 1.5",
        "encrypted whole-history turn at 1,000 items within 1.25",
    ):
        assert heading in text, heading
    # the encrypted turn after another writer is shown beside the others, not judged
    assert "| whole-history after another writer |" in text
    # the pages a commit writes, plain beside encrypted (run.py passes --frames)
    assert "WAL pages (frames of 4 KB) a turn's commit writes" in text
    assert "encrypted whole-history after another writer turn" not in text
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


def _with_nats(data: dict[str, Any], kv_bytes: tuple[float, float]) -> dict[str, Any]:
    """The run's figures plus a NATS store's rows (the quick run measures NATS only when its
    server answers): its figure A copied from the SQLite store's, its kv bytes given."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    a = [r for r in out["figure_a"] if r["system"] != "tether nats cached"]
    a += [{**r, "system": "tether nats cached"} for r in a if r["system"] == "tether sqlite cached"]
    out["figure_a"] = a
    out["figure_d_kv"] = [
        {
            "system": "tether nats cached",
            "n": n,
            "bytes_per_turn": b,
            "puts_per_turn": 2.06,
            "mean_us": 900.0,
            "payload_bytes_per_turn": 1000,
        }
        for n, b in zip((100, 5000), kv_bytes, strict=True)
    ]
    return out


def test_the_report_renders_the_nats_store_and_its_target(
    quick_run: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = quick_run
    data = json.loads((out / "chat_turn.json").read_text())
    flat = _with_nats(data, (11_600.0, 11_800.0))
    (tmp_path / "chat_turn.json").write_text(json.dumps(flat))
    text = report.render(tmp_path)
    assert "**D (key-value kit). What a cached turn writes**" in text
    assert "| tether nats cached | 5,000 | 11,800 | 2.06 | 11.80 | 900 |" in text
    [target] = [line for line in text.splitlines() if "NATS commit cost flat" in line]
    assert "1.02\u00d7 (11,800 against 11,600 B)" in target
    assert target.endswith("| met |")
    block = report.render_nats(tmp_path)
    assert block is not None
    assert block.startswith(report.NATS_BEGIN)
    assert block.rstrip().endswith(report.NATS_END)
    assert "--stores " in block
    assert "tether nats cached" in block
    assert "tether file" not in block
    assert "tether memory" not in block

    # bytes per turn growing with the history: the target is missed, and says so
    (tmp_path / "chat_turn.json").write_text(json.dumps(_with_nats(data, (11_600.0, 30_000.0))))
    [target] = [line for line in report.render(tmp_path).splitlines() if "NATS commit" in line]
    assert target.endswith("| **missed** |")

    # --docs replaces both blocks; a run without NATS leaves the NATS block as it was
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"top\n{report.BEGIN}\nold\n{report.END}\nmid\n{report.NATS_BEGIN}\nold nats\n"
        f"{report.NATS_END}\nend\n"
    )
    (tmp_path / "chat_turn.json").write_text(json.dumps(flat))
    assert report.main([str(tmp_path), "--docs", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text
    assert text.count("NATS commit cost flat") == 2
    assert text.startswith("top\n")
    assert "\nmid\n" in text
    assert text.endswith("\nend\n")
    without = {k: v for k, v in data.items() if k != "figure_d_kv"}
    (tmp_path / "chat_turn.json").write_text(json.dumps(without))
    assert report.main([str(tmp_path), "--docs", str(doc)]) == 0
    assert doc.read_text().count("NATS commit cost flat") == 1  # the NATS block, kept
    with pytest.raises(SystemExit, match="no NATS figures"):
        report.main([str(tmp_path), "--docs-nats", str(doc)])
