"""Draw figure A (per-turn latency by history length) from a ``peers.py --json`` result.

Run with the bench virtualenv, which has matplotlib::

    .bench-venv/bin/python benchmarks/peers.py --json peers.json
    .bench-venv/bin/python benchmarks/chart.py peers.json docs/img/latency.png

One line per system, log-log axes, medians; the title carries the date and machine so the
picture is never separated from where it was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="the JSON file peers.py --json wrote")
    parser.add_argument("output", help="the PNG (or SVG) to write")
    args = parser.parse_args()
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    with open(args.results) as handle:
        data: dict[str, Any] = json.load(handle)
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in data["figure_a"]:
        lines[row["system"]].append((int(row["n"]), float(row["median_us"])))
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    for system, points in lines.items():
        points.sort()
        style = "-" if system.startswith(("tether", "raw")) else "--"
        width = 2.6 if system.startswith("tether") else 1.4
        axes.plot(
            [n for n, _ in points],
            [us for _, us in points],
            style,
            marker="o",
            linewidth=width,
            label=system,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("messages already in the session")
    axes.set_ylabel("one chat turn, median µs (log)")
    machine = data.get("machine", {})
    when = str(machine.get("date", ""))[:10]
    axes.set_title(
        f"Chat-turn latency by history length ({when}, {machine.get('cpu_count', '?')} CPUs, "
        f"SQLite {machine.get('sqlite', '?')})",
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.25)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
