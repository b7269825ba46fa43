"""``make bench``: every benchmark in one run, then the report, the chart and the docs.

Run ``.venv/bin/python benchmarks/run.py [--quick] [--out DIR] [--docs]`` from the repository
root (``make bench`` does, after building ``.venv`` and the peers' ``.bench-venv``). Steps, one
after the other so they never share the CPU:

1. ``chat_turn.py``: figures A to F and durability, tether's stores beside raw sqlite3;
2. ``peers.py`` (in ``.bench-venv``): the same figures for the four peers, raw and tether;
3. ``processes.py``: figure B with 8 processes, on separate sessions and on one shared session
   (conflicts retried);
4. ``server_turns.py``: Redis and PostgreSQL beside raw redis-py / psycopg (skipped, with the
   reason, when a server is unreachable);
5. ``runtime.py``: ``tether.Sessions`` turns and fork;
6. ``memory.py``: RSS over 100,000 turns, paged loading of a 100,000-message session;
   then ``encryption.py``: turns on an encrypted SQLite store beside a plain one;
7. ``frameworks.py`` (in ``.bench-venv``): tether's adapters beside the OpenAI Agents SDK's,
   LangGraph's and ADK's own backends (SQLite, Redis, PostgreSQL);
   then ``inspector.py``: the web inspector's server time for its pages (docs/inspector.md);
8. ``chart.py`` (in ``.bench-venv``, which has matplotlib): the latency chart;
9. ``report.py``: Markdown tables and the targets, met or missed.

Each step writes ``DIR/<step>.json`` (``benchmarks/results/`` by default); a step that fails is
reported and the others still run, and the run exits non-zero. ``--docs`` (what a full
``make bench`` uses) then copies the chart to ``docs/img/latency.png`` and replaces the results
block of ``docs/benchmarks.md``. ``--quick`` is a smoke run (under 2 minutes) whose figures are
not worth quoting; it never touches the docs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"


def steps(out: Path, quick: bool) -> list[tuple[str, list[str]]]:
    flag = ["--quick"] if quick else []
    main, bench = str(MAIN_PYTHON), str(BENCH_PYTHON)
    return [
        (
            "chat_turn",
            [main, "benchmarks/chat_turn.py", *flag, "--json", str(out / "chat_turn.json")],
        ),
        ("peers", [bench, "benchmarks/peers.py", *flag, "--json", str(out / "peers.json")]),
        (
            "processes",
            [main, "benchmarks/processes.py", *flag, "--json", str(out / "processes.json")],
        ),
        ("server", [main, "benchmarks/server_turns.py", *flag, "--json", str(out / "server.json")]),
        ("runtime", [main, "benchmarks/runtime.py", *flag, "--json", str(out / "runtime.json")]),
        ("memory", [main, "benchmarks/memory.py", *flag, "--json", str(out / "memory.json")]),
        (
            "encryption",
            [
                main,
                "benchmarks/encryption.py",
                *flag,
                "--frames",
                "--json",
                str(out / "encryption.json"),
            ],
        ),
        (
            "frameworks",
            [bench, "benchmarks/frameworks.py", *flag, "--json", str(out / "frameworks.json")],
        ),
        (
            "inspector",
            [main, "benchmarks/inspector.py", *flag, "--json", str(out / "inspector.json")],
        ),
        ("workers", [main, "benchmarks/workers.py", *flag, "--json", str(out / "workers.json")]),
        (
            "chart",
            [bench, "benchmarks/chart.py", str(out / "peers.json"), str(out / "latency.png")],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run, under 2 minutes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--docs", action="store_true", help="update docs/benchmarks.md and its chart (full runs)"
    )
    parser.add_argument(
        "--only",
        help="comma-separated steps to run "
        "(chat_turn,peers,processes,server,runtime,memory,encryption,frameworks,inspector,workers,"
        "chart)",
    )
    args = parser.parse_args(argv)
    if args.docs and args.quick:
        parser.error("--docs takes a full run: quick figures are not worth publishing")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wanted = None if args.only is None else {s.strip() for s in args.only.split(",")}
    started = time.perf_counter()
    record: list[dict[str, object]] = []
    failed: list[str] = []
    for name, command in steps(out, args.quick):
        if wanted is not None and name not in wanted:
            continue
        if not Path(command[0]).exists():
            failed.append(name)
            print(f"\n== {name}: cannot run, {command[0]} is missing (make bench builds it)")
            continue
        (out / f"{name}.json").unlink(missing_ok=True)
        shown = " ".join(
            Path(c).name if c == command[0] else c.replace(f"{ROOT}/", "") for c in command
        )
        print(f"\n== {name}: {shown}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        seconds = time.perf_counter() - t0
        record.append({"step": name, "command": shown, "seconds": seconds, "exit": code})
        if code != 0:
            failed.append(name)
            print(f"== {name} FAILED (exit {code}) after {seconds:.0f} s")
    elapsed = time.perf_counter() - started
    if wanted is not None and (out / "run.json").exists():
        # a partial rerun: keep the other steps' records from the run it completes
        earlier = json.loads((out / "run.json").read_text())
        if earlier.get("quick") == args.quick:
            rerun = {r["step"] for r in record}
            kept = [r for r in earlier["steps"] if r["step"] not in rerun]
            record = [*kept, *record]
            elapsed = sum(float(str(r["seconds"])) for r in record)
    (out / "run.json").write_text(
        json.dumps({"quick": args.quick, "elapsed_s": elapsed, "steps": record}, indent=1)
    )
    report = [str(MAIN_PYTHON), "benchmarks/report.py", str(out)]
    if args.docs:
        report += ["--docs", str(ROOT / "docs" / "benchmarks.md")]
        if (out / "latency.png").exists():
            shutil.copyfile(out / "latency.png", ROOT / "docs" / "img" / "latency.png")
    if subprocess.run(report, cwd=ROOT, check=False).returncode != 0:
        failed.append("report")
    else:  # the verdicts last, where a reader of the terminal looks first
        text = (out / "report.md").read_text()
        start = text.find("**Against the targets**")
        if start >= 0:
            print("\n" + text[start : text.find("\n\n", text.find("| target", start))])
    print(f"\nmake bench: {elapsed / 60:.1f} minutes; results in {out}")
    if failed:
        print(f"failed steps: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
