"""Markdown for the figures of ``benchmarks/frameworks.py``: tables, ratios, the targets.

``render(results)`` takes the JSON that ``frameworks.py --json`` writes and returns lines of
Markdown; ``benchmarks/report.py`` puts them in the report of a ``make bench`` run, and
``frameworks.py`` prints them at the end of its own run. Standard library only (it runs in
either virtualenv).

The targets (from the issues that asked for the adapters): under the OpenAI Agents SDK,
tether at least as fast as the SDK's own backend on the same kind of store at every history
length; under LangGraph, faster per turn than ``SqliteSaver`` and ``PostgresSaver`` and less
storage than either (each judged on its own database: tether's SQLite store against
``SqliteSaver``, its PostgreSQL store against ``PostgresSaver``). ADK's figures are shown
beside its services without a stated target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Json = dict[str, Any]
TIMES = "\u00d7"  # the multiplication sign of every ratio


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _one(rows: Sequence[Json], **match: object) -> Json | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _ratio(mine: Json | None, theirs: Json | None, key: str = "median_us") -> float | None:
    if mine is None or theirs is None or not theirs[key]:
        return None
    return float(mine[key]) / float(theirs[key])


def _ratios_cell(ratios: Sequence[tuple[str, float | None]]) -> str:
    return ", ".join(f"{r:.2f}{TIMES} at {label}" for label, r in ratios if r is not None)


# --- OpenAI Agents SDK -------------------------------------------------------------------------


_AGENT_MODES = {
    "kept": "one session object kept across turns",
    "new": "a new session object every turn",
}


def _agent_modes(data: Json) -> list[str | None]:
    """The run's modes (``kept`` / ``new``); ``[None]`` for a run from before they existed."""
    return list(data["settings"].get("modes") or [None])


def _agent_row(rows: Sequence[Json], mode: str | None, **match: object) -> Json | None:
    return _one(rows, **match) if mode is None else _one(rows, mode=mode, **match)


def _agent_op(op: str, mode: str | None) -> str:
    return f"`{op}`" if mode is None else f"`{op}`, {_AGENT_MODES.get(mode, mode)}"


def agents_targets(data: Json) -> list[list[str]]:
    rows = data["rows"]
    lengths = data["settings"]["lengths"]
    out = []
    for mine, theirs in data["pairs"]:
        for op in data["settings"]["ops"]:
            for mode in _agent_modes(data):
                ratios = [
                    (
                        f"n={_n(n)}",
                        _ratio(
                            _agent_row(rows, mode, op=op, system=mine, n=n),
                            _agent_row(rows, mode, op=op, system=theirs, n=n),
                        ),
                    )
                    for n in lengths
                ]
                found = [r for _, r in ratios if r is not None]
                if not found:
                    continue
                out.append(
                    [
                        f"OpenAI Agents, {_agent_op(op, mode)}: {mine} at least as fast as "
                        f"{theirs} at every length",
                        _ratios_cell(ratios),
                        _verdict(all(r <= 1.0 for r in found)),
                    ]
                )
    return out


def agents(data: Json) -> list[str]:
    rows = data["rows"]
    lengths = data["settings"]["lengths"]
    out: list[str] = []
    for op in data["settings"]["ops"]:
        what = (
            "`get_items()` then `add_items([user, assistant])`"
            if op == "session"
            else "`Runner.run(agent, text, session=session)` with a fixed model"
        )
        for mode in _agent_modes(data):
            how = "" if mode is None else f", {_AGENT_MODES.get(mode, mode)}"
            out += [
                f"**OpenAI Agents SDK, {what}{how}**, on a session holding n items: "
                "median µs (p95).",
                "",
            ]
            body = []
            for system in data["systems"]:
                cells = []
                for n in lengths:
                    row = _agent_row(rows, mode, op=op, system=system, n=n)
                    cells.append(
                        "" if row is None else f"{_n(row['median_us'])} ({_n(row['p95_us'])})"
                    )
                body.append([system, *cells])
            out += _table(["system", *(f"n={_n(n)}" for n in lengths)], body)
    ratio_rows = []
    for mine, theirs in data["pairs"]:
        for op in data["settings"]["ops"]:
            for mode in _agent_modes(data):
                cells = []
                for n in lengths:
                    r = _ratio(
                        _agent_row(rows, mode, op=op, system=mine, n=n),
                        _agent_row(rows, mode, op=op, system=theirs, n=n),
                    )
                    cells.append("" if r is None else f"{r:.2f}{TIMES}")
                if any(cells):
                    ratio_rows.append([f"{mine} ÷ {theirs}", _agent_op(op, mode), *cells])
    if ratio_rows:
        out += ["Side by side (tether's median ÷ the SDK backend's; below 1 is faster):", ""]
        out += _table(["pair", "operation", *(f"n={_n(n)}" for n in lengths)], ratio_rows)
    return out


# --- LangGraph ---------------------------------------------------------------------------------


def langgraph_targets(data: Json) -> list[list[str]]:
    latency, stored, history = data["latency"], data["stored"], data["history"]
    windows = list(dict.fromkeys(r["turns"] for r in latency))
    out = []
    for mine, theirs in data["pairs"]:
        ratios = [
            (
                f"turns {w}",
                _ratio(_one(latency, system=mine, turns=w), _one(latency, system=theirs, turns=w)),
            )
            for w in windows
        ]
        found = [r for _, r in ratios if r is not None]
        if found:
            out.append(
                [
                    f"LangGraph: {mine} faster per turn than {theirs} (median, every window)",
                    _ratios_cell(ratios),
                    _verdict(all(r < 1.0 for r in found)),
                ]
            )
        r = _ratio(_one(history, system=mine), _one(history, system=theirs))
        if r is not None:
            out.append(
                [
                    f"LangGraph: {mine} `get_state_history` faster than {theirs}",
                    f"{r:.2f}{TIMES}",
                    _verdict(r < 1.0),
                ]
            )
    # storage is judged on the same database: PostgreSQL compresses large values (TOAST),
    # SQLite does not, so a SQLite file beside a PostgreSQL schema says little about a saver
    for mine, theirs in data["pairs"]:
        a, b = _one(stored, system=mine), _one(stored, system=theirs)
        if a is None or b is None or not b["bytes"]:
            continue
        ratio = a["bytes"] / b["bytes"]
        out.append(
            [
                f"LangGraph: {mine} stores less than {theirs}",
                f"{ratio:.2f}{TIMES} ({_n(a['bytes'] / 2**20, 1)} against "
                f"{_n(b['bytes'] / 2**20, 1)} MiB)",
                _verdict(ratio < 1.0),
            ]
        )
    return out


def langgraph(data: Json) -> list[str]:
    latency, stored, history = data["latency"], data["stored"], data["history"]
    turns = data["settings"]["turns"]
    windows = list(dict.fromkeys(r["turns"] for r in latency))
    out = [
        f"**LangGraph, a `MessagesState` chat graph for {_n(turns)} turns** (one `invoke` per "
        "turn: a user message in, an AI message out), systems taking each turn in rotating "
        "order: median ms (p95) per turn, over turns of the thread.",
        "",
    ]
    body = []
    for system in data["systems"]:
        cells = []
        for w in windows:
            row = _one(latency, system=system, turns=w)
            cells.append(
                "" if row is None else f"{row['median_us'] / 1000:.1f} ({row['p95_us'] / 1000:.1f})"
            )
        body.append([system, *cells])
    out += _table(["system", *(f"turns {w}" for w in windows)], body)
    out += [
        f"Stored after {_n(turns)} turns (SQLite: file and WAL after a checkpoint; PostgreSQL: "
        "`pg_total_relation_size` of the system's tables), and iterating "
        "`graph.get_state_history(config)` in full at the end:",
        "",
    ]
    rows = []
    for row in stored:
        h = _one(history, system=row["system"])
        rows.append(
            [
                row["system"],
                _n(row["bytes"] / 2**20, 1),
                _n(row["bytes_per_turn"]),
                _n(row["checkpoints"]),
                "" if h is None else _n(h["median_us"] / 1000, 1),
            ]
        )
    out += _table(
        ["system", "MiB stored", "bytes / turn", "checkpoints", "get_state_history ms"], rows
    )
    return out


# --- Google ADK --------------------------------------------------------------------------------


def adk_comparisons(data: Json) -> list[list[str]]:
    rows, listing = data["rows"], data["listing"]
    lengths = data["settings"]["lengths"]
    out = []
    for mine, theirs in data["pairs"]:
        for op in ("append_event", "get_session"):
            ratios = [
                (
                    f"n={_n(n)}",
                    _ratio(
                        _one(rows, op=op, system=mine, n=n), _one(rows, op=op, system=theirs, n=n)
                    ),
                )
                for n in lengths
            ]
            if any(r is not None for _, r in ratios):
                out.append([f"ADK `{op}`: {mine} ÷ {theirs}", _ratios_cell(ratios)])
        for scope in ("app", "one user"):
            op = f"list_sessions ({scope})"
            r = _ratio(_one(listing, op=op, system=mine), _one(listing, op=op, system=theirs))
            if r is not None:
                out.append([f"ADK `{op}`: {mine} ÷ {theirs}", f"{r:.2f}{TIMES}"])
    return out


def adk(data: Json) -> list[str]:
    rows, listing = data["rows"], data["listing"]
    lengths = data["settings"]["lengths"]
    out: list[str] = []
    for op in ("append_event", "get_session"):
        out += [
            f"**Google ADK, `{op}`** on a session holding n events: median µs (p95).",
            "",
        ]
        body = []
        for system in data["systems"]:
            cells = []
            for n in lengths:
                row = _one(rows, op=op, system=system, n=n)
                cells.append("" if row is None else f"{_n(row['median_us'])} ({_n(row['p95_us'])})")
            body.append([system, *cells])
        out += _table(["system", *(f"n={_n(n)}" for n in lengths)], body)
    if listing:
        total = listing[0]["sessions"]
        out += [
            f"**Google ADK, `list_sessions`** of an app holding {_n(total)} sessions of "
            "10 users: median µs (p95).",
            "",
        ]
        scopes = list(dict.fromkeys(r["op"] for r in listing))
        body = []
        for system in data["systems"]:
            cells = []
            for op in scopes:
                row = _one(listing, op=op, system=system)
                cells.append("" if row is None else f"{_n(row['median_us'])} ({_n(row['p95_us'])})")
            body.append([system, *cells])
        header = [
            f"{op.split('(')[1].rstrip(')')}: {_n(_one(listing, op=op)['listed'])} sessions"  # type: ignore[index]
            for op in scopes
        ]
        out += _table(["system", *header], body)
    comparisons = adk_comparisons(data)
    if comparisons:
        out += ["Side by side (tether's median ÷ ADK's; below 1 is faster):", ""]
        out += _table(["pair and operation", "ratio"], comparisons)
    return out


# --- the whole step ----------------------------------------------------------------------------


def targets(results: Json) -> list[list[str]]:
    rows: list[list[str]] = []
    if results.get("agents"):
        rows += agents_targets(results["agents"])
    if results.get("langgraph"):
        rows += langgraph_targets(results["langgraph"])
    return rows


def render(results: Json) -> list[str]:
    """The step's Markdown: versions, the targets met or missed, then every table."""
    versions = ", ".join(f"{k} {v}" for k, v in sorted(results.get("versions", {}).items()) if v)
    quick = (
        " (`--quick`: a smoke run, not figures to quote)" if results["settings"]["quick"] else ""
    )
    out = [
        "**The framework adapters** (`benchmarks/frameworks.py`, "
        f"{results.get('elapsed_s', 0):.0f} s{quick}; versions: {versions}).",
        "",
    ]
    verdicts = targets(results)
    if verdicts:
        out += ["Against the adapters' targets, this run:", ""]
        out += _table(["target", "figure", "status"], verdicts)
    for name, section in (("agents", agents), ("langgraph", langgraph), ("adk", adk)):
        if results.get(name):
            out += section(results[name])
        elif name in results.get("failures", {}):
            out += [f"{name}: failed in this run ({results['failures'][name]}).", ""]
    if results.get("notes"):
        out += ["Notes: " + "; ".join(str(n) for n in results["notes"]), ""]
    return out
