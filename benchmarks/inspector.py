"""The web inspector's server time: the sessions page among 1,000 / 10,000 / 100,000 sessions and
a session page of a 1,000 / 100,000-item history, on SQLite.

Run ``.venv/bin/python benchmarks/inspector.py [--quick] [--json FILE]``. Each figure is the
median of in-process ASGI calls to ``tether.web.create_app(...)`` (no socket, no browser: the
time the server spends, from the request to the last byte of the page), after a few warm-up
calls. The target: under 50 ms at the median, and flat from 1,000 to 100,000.

- **sessions page**: ``GET /`` (the newest 50), ``GET /?owner=...`` (a filter) and
  ``GET /?status=waiting`` (a status that few sessions have), among N sessions of one store.
- **counts**: ``GET /counts``, the counts by status the sessions page loads after it shows
  (the stores keep no counts: each status is one listing, capped at 1,000, shown as "1000+",
  and kept for 5 s; the figure is an uncached call).
- **session page**: ``GET /s/ID`` (the newest 50 items, what a session opens at),
  ``GET /s/ID?before=...`` (a page from the middle) and ``GET /s/ID/poll?after=...`` (the live
  page's poll when nothing is new), for a history of N items.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import tether
from tether.web import create_app

TOKEN = "bench-token-0123456789"
Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


async def call(app: App, path: str) -> tuple[int, int]:
    """One GET through the ASGI app: (status, bytes of the body)."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }
    status = 0
    size = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    await app(scope, receive, send)
    return status, size


async def median_ms(app: App, path: str, repeats: int, *, before: Any = None) -> dict[str, Any]:
    for _ in range(3):  # warm-up: templates compiled, statements prepared
        if before is not None:
            before()
        await call(app, path)
    times = []
    size = 0
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        status, size = await call(app, path)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"{path}: HTTP {status}")
    return {"path": path, "median_ms": statistics.median(times), "bytes": size, "n": repeats}


def grow(url: str, have: int, want: int) -> None:
    """Sessions up to ``want``: owners o0..o99, every 50th waiting, a user message each."""
    with tether.open_store(url) as store:
        for n in range(have, want):
            store.create(
                tether.Session(
                    id=f"s{n:06d}",
                    agent="support",
                    owner=f"o{n % 100}",
                    status="waiting" if n % 50 == 0 else "finished",
                    metadata={"channel": "web" if n % 2 else "mail"},
                    history=[{"role": "user", "content": f"question {n}"}],
                )
            )


def long_session(url: str, session_id: str, items: int) -> None:
    with tether.open_store(url) as store:
        session = store.create(tether.Session(id=session_id, agent="support", owner="bench"))
        version, batch = session.version, 1000
        for start in range(0, items, batch):
            count = min(batch, items - start)
            chunk = [
                {"role": "user" if (start + i) % 2 else "assistant", "content": "x" * 200}
                for i in range(count)
            ]
            version = store.commit(session_id, version, append=chunk)


async def measure(
    directory: Path, repeats: int, session_counts: list[int], history_sizes: list[int]
) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'inspector.db'}"
    results: dict[str, Any] = {"sessions_page": [], "session_page": []}
    have = 0
    for total in session_counts:
        print(f"  {total:,} sessions: seeding...", flush=True)
        grow(url, have, total)
        have = total
        async with tether.AsyncSessions(url, cache_size=0) as sessions:
            app = create_app(sessions, token=TOKEN)
            inspector = app.state.inspector
            row: dict[str, Any] = {"sessions": total}
            for name, path in [
                ("list", "/"),
                ("owner", "/?owner=o7"),
                ("waiting", "/?status=waiting"),
            ]:
                row[name] = await median_ms(app, path, repeats)
            row["counts"] = await median_ms(
                app, "/counts", max(3, repeats // 10), before=inspector.count_cache.clear
            )
            results["sessions_page"].append(row)
            print(
                "  "
                + ", ".join(
                    f"{k} {v['median_ms']:.1f} ms" for k, v in row.items() if isinstance(v, dict)
                ),
                flush=True,
            )
    for items in history_sizes:
        sid = f"long-{items}"
        print(f"  a {items:,}-item history: seeding...", flush=True)
        long_session(url, sid, items)
        async with tether.AsyncSessions(url, cache_size=0) as sessions:
            app = create_app(sessions, token=TOKEN)
            row = {"items": items}
            for name, path in [
                ("newest", f"/s/{sid}"),
                ("middle", f"/s/{sid}?before={items // 2}"),
                ("poll", f"/s/{sid}/poll?after={items}"),
            ]:
                row[name] = await median_ms(app, path, repeats)
            results["session_page"].append(row)
            print(
                "  "
                + ", ".join(
                    f"{k} {v['median_ms']:.1f} ms" for k, v in row.items() if isinstance(v, dict)
                ),
                flush=True,
            )
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| sessions | `GET /` | `GET /?owner=` | `GET /?status=waiting` | `GET /counts` (lazy) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["sessions_page"]:
        cells = [f"{row[k]['median_ms']:.1f} ms" for k in ("list", "owner", "waiting", "counts")]
        lines.append(f"| {row['sessions']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| history | `GET /s/ID` (newest 50) | `GET /s/ID?before=` (middle) | `GET .../poll` |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in results["session_page"]:
        cells = [f"{row[k]['median_ms']:.1f} ms" for k in ("newest", "middle", "poll")]
        lines.append(f"| {row['items']:,} items | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return sorted(int(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10,000 at most")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--sessions", type=_sizes, help="session counts (e.g. 1000,10000)")
    parser.add_argument("--histories", type=_sizes, help="history lengths (e.g. 1000,100000)")
    parser.add_argument("--repeats", type=int, help="calls per figure")
    args = parser.parse_args(argv)
    repeats = args.repeats or (15 if args.quick else 60)
    sessions = args.sessions or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    histories = args.histories or ([1_000, 10_000] if args.quick else [1_000, 100_000])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tether-inspector-bench-") as tmp:
        results = asyncio.run(measure(Path(tmp), repeats, sessions, histories))
    pages = [
        row[key]["median_ms"]
        for row in results["sessions_page"]
        for key in ("list", "owner", "waiting")
    ] + [row[key]["median_ms"] for row in results["session_page"] for key in ("newest", "middle")]
    verdict = "met" if max(pages) < 50 else "missed"
    print()
    print(table(results))
    print(f"\ntarget: pages under 50 ms at the median: {verdict} (slowest {max(pages):.1f} ms)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                    "seconds": time.perf_counter() - started,
                    "target_ms": 50,
                    "verdict": verdict,
                    **results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
