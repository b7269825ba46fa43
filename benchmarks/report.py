"""Render the results of one ``make bench`` run as Markdown: tables, the targets, the machine.

Run ``python benchmarks/report.py RESULTS_DIR [--docs docs/benchmarks.md]``. RESULTS_DIR holds
the ``--json`` files the benchmark scripts wrote in one run (``chat_turn.json``,
``peers.json``, ``processes.json``, ``server.json``, ``runtime.json``, ``memory.json``; a
missing one is reported as not run). The Markdown goes to ``RESULTS_DIR/report.md``; with
``--docs`` it also replaces the block between the ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` markers of that file, so the docs always show the latest full run,
with its date, machine and versions, and the block between ``<!-- bench-nats:begin -->`` and
``<!-- bench-nats:end -->`` (the NATS store beside SQLite) when the run measured NATS.
``--docs-nats FILE`` replaces only that block: for a run of the chat-turn step alone, such as
``benchmarks/chat_turn.py --stores sqlite,nats --json DIR/chat_turn.json``. Likewise the
framework adapters' figures (``frameworks.json``, from ``benchmarks/frameworks.py``) go to
``RESULTS_DIR/report-frameworks.md`` and, with ``--docs`` or ``--docs-frameworks FILE``, to the
block between ``<!-- bench-frameworks:begin -->`` and ``<!-- bench-frameworks:end -->``.

Every ratio is taken inside one run (the systems were measured side by side); the targets are
the chat-turn workload's (``docs/benchmarks.md``), each printed as met or missed with its
figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import frameworks_report

Json = dict[str, Any]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NATS_BEGIN, NATS_END = "<!-- bench-nats:begin -->", "<!-- bench-nats:end -->"
FW_BEGIN, FW_END = "<!-- bench-frameworks:begin -->", "<!-- bench-frameworks:end -->"
FLAT_TIME, FLAT_BYTES = 2.0, 1.25
"""The NATS target: a cached turn at the longest history within 2x its time at the shortest,
and the bytes a turn writes at 5,000 items within 1.25x those at 100."""
# the speed targets: the runtime near the store, the SQLite store writes near raw, the
# server stores near their drivers, a server fork that shares instead of copying
RUNTIME_RATIO = 1.2
BYTES_RATIO = 1.5
DRIVER_RATIO = {"redis": 0.9, "postgres": 0.8}
SERVER_FORK_US = 5000.0


def _load(directory: Path, name: str) -> Json | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _by(rows: Sequence[Json], key: str, value: object) -> list[Json]:
    return [row for row in rows if row.get(key) == value]


def _one(rows: Sequence[Json], **match: object) -> Json | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _grid(
    rows: Sequence[Json], key: str, cell: Callable[[Json | None], str]
) -> tuple[list[int], list[list[str]]]:
    """Rows as a grid: one line per system, one column per value of ``key`` (ascending)."""
    values = sorted({int(r[key]) for r in rows})
    body = [
        [system, *(cell(_one(rows, system=system, **{key: v})) for v in values)]
        for system in dict.fromkeys(r["system"] for r in rows)
    ]
    return values, body


def figure_a(ct: Json) -> list[str]:
    lengths, body = _grid(
        ct["figure_a"],
        "n",
        lambda row: (
            ""
            if row is None
            else f"{_n(row['median_us'])} ({_n(row['p95_us'])}) {row['ratio_to_raw']:.2f}×"
        ),
    )
    return [
        "**A. Per-turn latency by history length**: median µs (p95), × raw sqlite3 at the same "
        "length.",
        "",
        *_table(["system", *(f"n={_n(n)}" for n in lengths)], body),
    ]


def figure_b(ct: Json) -> list[str]:
    rows = ct["figure_b"]
    plan = rows[0]
    return [
        f"**B. Throughput**: {plan['sessions']} sessions × {plan['turns']} turns, round-robin, "
        "one process, sessions starting empty (median of the rounds); tether whole reads the "
        "history every turn, cached only what is new.",
        "",
        *_table(
            ["system", "turns/s", "× raw"],
            [[r["system"], _n(r["turns_per_s"]), f"{r['ratio_to_raw']:.2f}"] for r in rows],
        ),
    ]


def figure_c(ct: Json) -> list[str]:
    return [
        "**C. Load a 1,000-message history**: median µs (p95).",
        "",
        *_table(
            ["read", "median µs", "p95 µs", "× raw tuples"],
            [
                [r["system"], _n(r["median_us"]), _n(r["p95_us"]), f"{r['ratio_to_raw']:.2f}"]
                for r in ct["figure_c"]
            ],
        ),
    ]


def figure_d(ct: Json) -> list[str]:
    return [
        "**D. Bytes written per turn** (WAL growth; the payload is 1,000 bytes of text).",
        "",
        *_table(
            ["system", "n", "WAL bytes/turn", "WAL pages/turn"],
            [
                [
                    r["system"],
                    _n(r["n"]),
                    _n(r["wal_bytes_per_turn"]),
                    f"{r['wal_pages_per_turn']:.1f}",
                ]
                for r in ct["figure_d"]
            ],
        ),
    ]


def figure_d_kv(ct: Json) -> list[str]:
    rows = ct.get("figure_d_kv") or []
    if not rows:
        return []
    return [
        "**D (key-value kit). What a cached turn writes** through the backend's `put()` "
        "(every key and value: the new tail, the header, a sealed chunk every `chunk_items` "
        "items; the payload is 1,000 bytes of text), by history length.",
        "",
        *_table(
            ["system", "n", "bytes/turn", "puts/turn", "× payload", "mean µs/turn"],
            [
                [
                    r["system"],
                    _n(r["n"]),
                    _n(r["bytes_per_turn"]),
                    f"{r['puts_per_turn']:.2f}",
                    f"{r['bytes_per_turn'] / r['payload_bytes_per_turn']:.2f}",
                    _n(r["mean_us"]),
                ]
                for r in rows
            ],
        ),
    ]


def figure_e(ct: Json) -> list[str]:
    rows = ct["figure_e"]
    n = rows[0]["n"]
    return [
        f"**E. Fork of a {_n(n)}-message session**, beside one commit (a turn's two messages) "
        "on the same store: median µs (p95).",
        "",
        *_table(
            ["system", "operation", "median µs", "p95 µs"],
            [[r["system"], r["op"], _n(r["median_us"]), _n(r["p95_us"])] for r in rows],
        ),
    ]


def figure_f(ct: Json) -> list[str]:
    totals, body = _grid(
        ct["figure_f"],
        "sessions",
        lambda row: "not run" if row is None else _n(row["median_us"]),
    )
    return [
        "**F. List the newest 50 sessions of one owner** (10 owners) by total sessions: median µs.",
        "",
        *_table(["system", *(f"{_n(t)} sessions" for t in totals)], body),
    ]


def durability(ct: Json) -> list[str]:
    rows = ct.get("durability")
    if not rows:
        return []
    return [
        "**Durability.** The whole-history turn at n=100 with `synchronous=NORMAL` (the default:"
        " a returned commit survives the process being killed) and `synchronous=full` (an fsync"
        " per commit: it also survives power loss): median µs (p95).",
        "",
        *_table(
            ["system", "median µs", "p95 µs", "× raw NORMAL"],
            [
                [r["system"], _n(r["median_us"]), _n(r["p95_us"]), f"{r['ratio_to_raw']:.2f}"]
                for r in rows
            ],
        ),
    ]


def peers(data: Json) -> list[str]:
    out = [
        "**Beside the peers** (`benchmarks/peers.py`, each on its own SQLite file, used the "
        "way its docs recommend; versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(data.get("versions", {}).items()) if v)
        + "). Figure A, median µs and × raw sqlite3 in the same run:",
        "",
    ]
    lengths, body = _grid(
        data["figure_a"],
        "n",
        lambda row: "" if row is None else f"{_n(row['median_us'])} ({row['ratio_to_raw']:.1f}×)",
    )
    out += _table(["system", *(f"n={_n(n)}" for n in lengths)], body)
    for key, title in (
        ("figure_b", "B. throughput"),
        ("figure_c", "C. load 1,000 messages"),
        ("figure_d", "D. bytes written per turn"),
        ("figure_e", "E. fork"),
        ("figure_f", "F. list newest 50 of one owner"),
    ):
        rows = data.get(key) or []
        if not rows:
            continue
        out += [f"Peers, {title}:", ""]
        columns = [
            c
            for c in (
                "system",
                "n",
                "op",
                "sessions",
                "turns_per_s",
                "median_us",
                "p95_us",
                "bytes_per_turn",
                "wal_bytes_per_turn",
                "ratio_to_raw",
                "note",
            )
            if any(c in r for r in rows)
        ]
        out += _table(columns, [[_cell(r.get(c)) for c in columns] for r in rows])
    if data.get("notes"):
        out += ["Notes from the peers run: " + "; ".join(str(n) for n in data["notes"]), ""]
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else _n(value)
    if isinstance(value, int):
        return _n(value)
    return str(value)


def processes(data: Json) -> list[str]:
    rows = data["figure_b_processes"]
    plan = data["settings"]
    return [
        f"**B with processes** (`benchmarks/processes.py`): {plan['processes']} OS processes "
        f"released together, each with its own connection; {plan['sessions_per_process']} "
        f"sessions × {plan['turns']} whole-history turns per process, or {plan['turns']} turns "
        "per process on one shared session, where tether retries a turn whose commit met a "
        "newer version (raw sqlite3 waits for the write lock instead and has no versions to "
        "check). Median of "
        f"{plan['reps']} rounds; × raw sqlite3 in the same mode.",
        "",
        *_table(
            ["system", "mode", "turns/s", "× raw", "retries per turn"],
            [
                [
                    r["system"],
                    r["mode"],
                    _n(r["turns_per_s"]),
                    f"{r['ratio_to_raw']:.2f}",
                    f"{r['conflicts_per_turn']:.2f}",
                ]
                for r in rows
            ],
        ),
    ]


def servers(data: Json) -> list[str]:
    systems = data.get("systems", {})
    if not systems:
        return ["**Server stores**: not run (Redis or PostgreSQL unreachable).", ""]
    body = []
    base: dict[str, Json] = {}
    for name, row in systems.items():
        kind = name.split()[1]  # "raw redis", "tether redis cached"
        if name.startswith("raw"):
            base[kind] = row
        raw = base.get(kind)
        rt = row.get("round_trips_per_commit")
        body.append(
            [
                name,
                "" if rt is None else f"{rt:.2f}",
                _n(row["turns_per_s_1"]),
                _n(row["turns_per_s_8"]),
                ""
                if raw is None
                else f"{row['turns_per_s_1'] / raw['turns_per_s_1']:.2f} / "
                f"{row['turns_per_s_8'] / raw['turns_per_s_8']:.2f}",
            ]
        )
    return [
        f"**Server stores** (`benchmarks/server_turns.py`): {data['sessions']} sessions × "
        f"{data['turns']} turns per process, beside raw-driver loops.",
        "",
        *_table(
            [
                "system",
                "round trips / commit",
                "turns/s, 1 process",
                "turns/s, 8 processes",
                "× raw (1 / 8)",
            ],
            body,
        ),
    ]


def runtime(data: Json) -> list[str]:
    out = [
        "**The runtime** (`benchmarks/runtime.py`, `tether.Sessions` on SQLite): median µs per "
        "turn; the store's own cached turn (`load(after=)` + `commit`) beside `Sessions` "
        "(`get` + `execute`, and `execute` alone for a worker that keeps what it returns), "
        "ratios to the store's turn.",
        "",
    ]
    out += _table(
        ["history items", "store turn", "get + execute", "ratio", "execute", "ratio"],
        [
            [
                _n(r["n"]),
                _n(r["store_us"]),
                _n(r["get_execute_us"]),
                f"{r['get_execute_ratio']:.2f}×",
                _n(r["execute_us"]),
                f"{r['execute_ratio']:.2f}×",
            ]
            for r in data["turns"]
        ],
    )
    agent = data.get("agent")
    if agent:
        out += [
            f"An `Agent` turn (`ScriptedModel`, no tools, 10 items): {_n(agent['agent_us'])} µs "
            f"with {agent['writes']} writes, {agent['per_write_ratio']:.2f}× a plain commit "
            f"({_n(agent['commit_us'])} µs) per write; raw sqlite3: a two-row append "
            f"{_n(agent['raw_append_us'])} µs, a whole-history turn {_n(agent['raw_turn_us'])} µs.",
            "",
        ]
    fork = data["fork"]
    out += [
        f"`Sessions.fork` of {_n(fork['n'])} items: {_n(fork['fork_us'])} µs; one commit on the "
        f"same store: {_n(fork['commit_us'])} µs.",
        "",
    ]
    return out


def memory(data: Json) -> list[str]:
    worker, long = data["worker"], data["long_session"]
    reads = long["reads"]
    return [
        f"**Memory** (`benchmarks/memory.py`). A worker serving {_n(worker['turns'])} turns "
        f"({worker['open_conversations']} conversations open, {worker['turns_per_conversation']}"
        f" turns each, `Sessions(cache_size={worker.get('cache_size', '?')})`, SQLite): RSS "
        f"{worker['rss_warm_kib'] / 1024:.1f} MiB at turn {_n(worker['rss_warm_at_turn'])}, "
        f"{worker['rss_last_kib'] / 1024:.1f} MiB at the end "
        f"({worker['growth_per_10k_turns_kib']:+,.0f} KiB per 10,000 turns).",
        "",
        f"Reading a {_n(long['n'])}-message session:",
        "",
        *_table(
            ["read", "peak MiB allocated", "seconds"],
            [[r["read"], f"{r['peak_bytes'] / 2**20:.1f}", f"{r['seconds']:.2f}"] for r in reads],
        ),
    ]


def encryption(data: Json) -> list[str]:
    out = [
        "**Encryption at rest** (`benchmarks/encryption.py`, SQLite, `EncryptedStore` beside "
        f"the plain store): median µs; target: at most {data['target']}x plain (the turn "
        "after another writer has none: it shows what a whole-history load costs where the "
        "rows must be read and compared again).",
        "",
    ]
    out += _table(
        ["turn", "history items", "plain", "encrypted", "ratio"],
        [
            [
                r["turn"],
                _n(r["items"]),
                _n(r["plain_us"]),
                _n(r["encrypted_us"]),
                f"{r['ratio']:.2f}",
            ]
            for r in data["rows"]
        ],
    )
    frames = data.get("frames")  # absent from the runs before --frames, and without it
    if frames:
        half = len(frames) // 2
        out += [
            "WAL pages (frames of 4 KB) a turn's commit writes, counted untimed on files of "
            f"their own (`--frames`); an item row takes {frames[0]['row_bytes']:,.0f} bytes "
            f"plain and {frames[-1]['row_bytes']:,.0f} encrypted (base64 and the envelope):",
            "",
        ]
        out += _table(
            ["turn", "history items", "plain", "encrypted"],
            [
                [
                    plain["turn"],
                    _n(plain["items"]),
                    f"{plain['frames_per_commit']:.2f}",
                    f"{sealed['frames_per_commit']:.2f}",
                ]
                for plain, sealed in zip(frames[:half], frames[half:], strict=True)
            ],
        )
    return [*out, ""]


def targets(results: dict[str, Json | None]) -> list[str]:
    """Each target of the chat-turn workload: met or missed, with the figure that says so."""
    ct, server = results.get("chat_turn"), results.get("server")
    rows: list[list[str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    if ct:
        a = ct["figure_a"]
        for n in (1000, 5000):
            row = _one(a, system="tether sqlite whole", n=n)
            if row:
                rows.append(
                    [
                        f"whole-history turn within 1.3× raw at n={_n(n)}",
                        f"{row['ratio_to_raw']:.2f}×",
                        verdict(row["ratio_to_raw"] <= 1.3),
                    ]
                )
        small, big = (
            _one(a, system="tether sqlite cached", n=10),
            _one(a, system="tether sqlite cached", n=5000),
        )
        if small and big:
            ratio = big["median_us"] / small["median_us"]
            rows.append(
                [
                    "cached worker flat: n=5,000 within 2× its n=10 figure",
                    f"{ratio:.2f}× ({_n(big['median_us'])} against {_n(small['median_us'])} µs)",
                    verdict(ratio <= 2),
                ]
            )
        for kind in ("whole", "cached"):
            b = _one(ct["figure_b"], system=f"tether sqlite {kind}")
            if b:
                rows.append(
                    [
                        f"B at least half the raw baseline ({kind} turn)",
                        f"{b['ratio_to_raw']:.2f}×",
                        verdict(b["ratio_to_raw"] >= 0.5),
                    ]
                )
        fork = _one(ct["figure_e"], system="tether sqlite", op="fork")
        commit = _one(ct["figure_e"], system="tether sqlite", op="commit")
        if fork and commit:
            ratio = fork["median_us"] / commit["median_us"]
            rows.append(
                [
                    f"fork of {_n(fork['n'])} messages no dearer than one commit",
                    f"{_n(fork['median_us'])} against {_n(commit['median_us'])} µs ({ratio:.2f}×)",
                    verdict(ratio <= 1.0),
                ]
            )
        for kind in ("redis", "postgres"):
            server_fork = _one(ct["figure_e"], system=f"tether {kind}", op="fork")
            if server_fork:
                rows.append(
                    [
                        f"{kind}: fork of {_n(server_fork['n'])} messages under "
                        f"{SERVER_FORK_US / 1000:g} ms",
                        f"{server_fork['median_us'] / 1000:.2f} ms",
                        verdict(server_fork["median_us"] < SERVER_FORK_US),
                    ]
                )
        d_raw = _one(ct["figure_d"], system="raw sqlite3")
        d_tether = _one(ct["figure_d"], system="tether sqlite whole")
        if d_raw and d_tether:
            ratio = d_tether["wal_bytes_per_turn"] / d_raw["wal_bytes_per_turn"]
            rows.append(
                [
                    f"bytes written per turn on SQLite at most {BYTES_RATIO:g}× raw",
                    f"{ratio:.2f}× ({_n(d_tether['wal_bytes_per_turn'])} against "
                    f"{_n(d_raw['wal_bytes_per_turn'])} B)",
                    verdict(ratio <= BYTES_RATIO),
                ]
            )
        f_rows = _by(ct["figure_f"], "system", "tether sqlite")
        if len(f_rows) >= 2:
            few, many = f_rows[0], f_rows[-1]
            ratio = many["median_us"] / few["median_us"]
            rows.append(
                [
                    "listing independent of total sessions",
                    f"{_n(many['median_us'])} µs at {_n(many['sessions'])} against "
                    f"{_n(few['median_us'])} µs at {_n(few['sessions'])} ({ratio:.2f}×)",
                    verdict(ratio <= 1.5),
                ]
            )
        rows += nats_targets(ct)
    if server and server.get("systems"):
        systems = server["systems"]
        for kind in ("redis", "postgres"):
            raw = systems.get(f"raw {kind}")
            cached = systems.get(f"tether {kind} cached")
            if not raw or not cached:
                continue
            rt = cached["round_trips_per_commit"]
            rows.append([f"{kind}: one round trip per commit", f"{rt:.2f}", verdict(rt <= 1.05)])
            floor = DRIVER_RATIO[kind]
            ratio = min(
                cached["turns_per_s_1"] / raw["turns_per_s_1"],
                cached["turns_per_s_8"] / raw["turns_per_s_8"],
            )
            rows.append(
                [
                    f"{kind}: at least {floor:g}× a raw-driver loop's turns/s (cached turn, "
                    "worst of 1 and 8 processes)",
                    f"{ratio:.2f}×",
                    verdict(ratio >= floor),
                ]
            )
    rows += runtime_targets(results.get("runtime"), verdict)
    rows += encryption_targets(results.get("encryption"), verdict)
    return [
        "**Against the targets** (the workloads below), this run:",
        "",
        *_table(["target", "figure", "status"], rows),
    ]


def runtime_targets(data: Json | None, verdict: Callable[[bool], str]) -> list[list[str]]:
    """``tether.Sessions`` and the ``Agent`` against the store's own turn and a plain commit."""
    if not data:
        return []
    rows: list[list[str]] = []
    turns = data.get("turns") or []
    for key, what in (
        ("execute_ratio", "`Sessions.execute` (a worker keeping what it returns)"),
        ("get_execute_ratio", "`Sessions.get` + `execute`"),
    ):
        ratios = [r[key] for r in turns]
        if ratios:
            rows.append(
                [
                    f"{what} within {RUNTIME_RATIO:g}× the store's cached turn at every length "
                    f"({_n(turns[0]['n'])} to {_n(turns[-1]['n'])} items)",
                    f"{min(ratios):.2f}× to {max(ratios):.2f}×",
                    verdict(max(ratios) <= RUNTIME_RATIO),
                ]
            )
    agent = data.get("agent")
    if agent:
        rows.append(
            [
                f"`Agent` turn (no tools): each write within {RUNTIME_RATIO:g}× a plain commit",
                f"{agent['per_write_ratio']:.2f}× ({agent['writes']} writes, "
                f"{_n(agent['agent_us'])} µs a turn)",
                verdict(agent["per_write_ratio"] <= RUNTIME_RATIO),
            ]
        )
    throughput = data.get("throughput")
    if throughput:
        rows.append(
            [
                "B at least half the raw baseline (`Sessions` turn)",
                f"{throughput['ratio_to_raw']:.2f}×",
                verdict(throughput["ratio_to_raw"] >= 0.5),
            ]
        )
    return rows


def encryption_targets(data: Json | None, verdict: Callable[[bool], str]) -> list[list[str]]:
    """Each encrypted turn beside the plain one, against the issue's bound."""
    if not data:
        return []
    bound = float(data["target"])
    return [
        [
            f"encrypted {r['turn']} turn at {_n(r['items'])} items within {bound:g}× plain"
            + (f" ({r['store']})" if r.get("store") else ""),
            f"{r['ratio']:.2f}×",
            verdict(r["ratio"] <= bound),
        ]
        for r in data["rows"]
        if r.get("target", True)  # the turn after another writer is shown, not judged
    ]


def nats_targets(ct: Json) -> list[list[str]]:
    """The NATS store's commit cost flat in history length: time (figure A, cached turn, the
    shortest and the longest history) and bytes written (figure D kv), from this run."""
    cached = sorted(_by(ct["figure_a"], "system", "tether nats cached"), key=lambda r: r["n"])
    kv_rows = sorted(
        _by(ct.get("figure_d_kv") or [], "system", "tether nats cached"), key=lambda r: r["n"]
    )
    if len(cached) < 2 or len(kv_rows) < 2:
        return []
    small, big = cached[0], cached[-1]
    time_ratio = big["median_us"] / small["median_us"]
    few, many = kv_rows[0], kv_rows[-1]
    bytes_ratio = many["bytes_per_turn"] / few["bytes_per_turn"]
    met = time_ratio <= FLAT_TIME and bytes_ratio <= FLAT_BYTES
    return [
        [
            f"NATS commit cost flat in history length (cached turn at n={_n(big['n'])} within "
            f"{FLAT_TIME:g}× n={_n(small['n'])}; bytes/turn at {_n(many['n'])} within "
            f"{FLAT_BYTES:g}× {_n(few['n'])})",
            f"{time_ratio:.2f}× ({_n(big['median_us'])} against {_n(small['median_us'])} µs); "
            f"{bytes_ratio:.2f}× ({_n(many['bytes_per_turn'])} against "
            f"{_n(few['bytes_per_turn'])} B)",
            "met" if met else "**missed**",
        ]
    ]


def machine(ct: Json | None, elapsed: float | None) -> list[str]:
    if not ct:
        return []
    m = ct["machine"]
    python = str(m["python"]).split()[0]
    load = m.get("loadavg")
    return [
        f"Run {str(m['date'])[:16].replace('T', ' ')} UTC on {m['platform']}, "
        f"{m['cpu_count']} CPUs, Python {python}, SQLite {m['sqlite']}, tether {m['tether']}"
        + (f", load average {load[0]:.2f} at the start" if load else "")
        + (f"; the whole run took {elapsed / 60:.1f} minutes" if elapsed else "")
        + (" (`--quick`: a smoke run, not figures to quote)" if ct["settings"].get("quick") else "")
        + ".",
        "",
    ]


def render(directory: Path) -> str:
    results = {
        name: _load(directory, name)
        for name in ("chat_turn", "peers", "processes", "server", "runtime", "memory", "encryption")
    }
    meta = _load(directory, "run") or {}
    ct = results["chat_turn"]
    out: list[str] = [BEGIN, ""]
    out += machine(ct, meta.get("elapsed_s"))
    out += targets(results)
    if ct:
        out += ["![Chat-turn latency by history length, log-log](img/latency.png)", ""]
        parts = (
            figure_a,
            figure_b,
            figure_c,
            figure_d,
            figure_d_kv,
            figure_e,
            figure_f,
            durability,
        )
        for part in parts:
            out += part(ct)
    else:
        out += ["chat_turn: not run", ""]
    sections: tuple[tuple[str, Callable[[Json], list[str]]], ...] = (
        ("peers", peers),
        ("processes", processes),
        ("server", servers),
        ("runtime", runtime),
        ("memory", memory),
        ("encryption", encryption),
    )
    for name, section in sections:
        data = results[name]
        out += section(data) if data else [f"{name}: not run in this run.", ""]
    if meta.get("steps"):
        out += [
            "Steps and their times: "
            + "; ".join(f"`{s['command']}` {s['seconds']:.0f} s" for s in meta["steps"]),
            "",
        ]
    out.append(END)
    return "\n".join(out) + "\n"


def _nats_only(rows: Sequence[Json]) -> list[Json]:
    """The rows of raw sqlite3, tether's SQLite store and the NATS store."""
    keep = ("raw sqlite3", "tether sqlite", "tether nats")
    return [r for r in rows if str(r["system"]).startswith(keep) and "full" not in r["system"]]


def render_nats(directory: Path) -> str | None:
    """The NATS block: the store beside SQLite in the chat-turn figures of this run, and its
    target; None if the run did not measure NATS."""
    ct = _load(directory, "chat_turn")
    if not ct or not _by(ct.get("figure_d_kv") or [], "system", "tether nats cached"):
        return None
    stores = ",".join(ct["settings"].get("stores", []))
    quick = " --quick" if ct["settings"].get("quick") else ""
    mine = {key: _nats_only(ct[key]) for key in ("figure_a", "figure_c", "figure_e", "figure_f")}
    view = {**ct, **mine}
    out: list[str] = [NATS_BEGIN, ""]
    out += machine(ct, None)
    out += [
        f"Measured by `benchmarks/chat_turn.py{quick} --stores {stores}` (the chat-turn step "
        "of `make bench`), against the local NATS server: the NATS store (`nats://`, the "
        "key-value kit over a JetStream KV bucket, `chunk_items=32`) beside raw sqlite3 and "
        "tether's SQLite store, in the same run.",
        "",
        *_table(["target", "figure", "status"], nats_targets(ct)),
    ]
    for part in (figure_a, figure_c, figure_d_kv, figure_e, figure_f):
        out += part(view)
    out.append(NATS_END)
    return "\n".join(out) + "\n"


def render_frameworks(directory: Path) -> str | None:
    """The framework adapters' block (``frameworks.json``), or None if the run has none."""
    data = _load(directory, "frameworks")
    if not data:
        return None
    return (
        "\n".join([FW_BEGIN, "", *machine(data, None), *frameworks_report.render(data), FW_END])
        + "\n"
    )


def splice(doc: Path, block: str, begin: str = BEGIN, end: str = END) -> None:
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} block to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + block.rstrip("\n") + tail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("results", type=Path, help="the directory the run's JSON files are in")
    parser.add_argument("--docs", type=Path, help="also replace the bench block(s) of this file")
    parser.add_argument(
        "--docs-nats", type=Path, help="replace only the NATS block of this file (chat_turn runs)"
    )
    parser.add_argument(
        "--docs-frameworks",
        type=Path,
        help="replace only the framework adapters' block of this file (frameworks runs)",
    )
    args = parser.parse_args(argv)
    block = render(args.results)
    (args.results / "report.md").write_text(block)
    print(f"wrote {args.results / 'report.md'}")
    nats = render_nats(args.results)
    if nats is not None:
        (args.results / "report-nats.md").write_text(nats)
        print(f"wrote {args.results / 'report-nats.md'}")
    if args.docs:
        splice(args.docs, block)
        print(f"updated {args.docs}")
    if args.docs and NATS_BEGIN in args.docs.read_text():
        if nats is None:  # NATS was not measured: its block keeps the run that measured it
            print(f"the NATS block of {args.docs} is left as it was: this run has no NATS figures")
        else:
            splice(args.docs, nats, NATS_BEGIN, NATS_END)
            print(f"updated the NATS block of {args.docs}")
    if args.docs_nats:
        if nats is None:
            raise SystemExit(f"{args.results} has no NATS figures for {args.docs_nats}")
        splice(args.docs_nats, nats, NATS_BEGIN, NATS_END)
        print(f"updated the NATS block of {args.docs_nats}")
    frameworks = render_frameworks(args.results)
    if frameworks is not None:
        (args.results / "report-frameworks.md").write_text(frameworks)
        print(f"wrote {args.results / 'report-frameworks.md'}")
    fw_doc = args.docs_frameworks or (
        args.docs if args.docs and FW_BEGIN in args.docs.read_text() else None
    )
    if fw_doc is not None:
        if frameworks is None:
            if args.docs_frameworks:
                raise SystemExit(f"{args.results} has no framework figures for {fw_doc}")
            print(f"the framework block of {fw_doc} is left as it was: none in this run")
        else:
            splice(fw_doc, frameworks, FW_BEGIN, FW_END)
            print(f"updated the framework block of {fw_doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
