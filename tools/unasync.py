"""Generate the sync side of tether from its hand-written async side.

The async code is the only version written by hand; this script rewrites it with a small
table of rules (the psycopg / httpcore way) and writes the sync module next to it. The output
is committed, and its first line is the one standard header::

    # generated from <source> by tools/unasync.py, do not edit

``--check`` (run by ``make test`` and ``make check``) fails when a generated file is stale, when
a rule no longer matches anything, or when a file in the repository carries the header but is
not in the FILES table (a twin whose source was removed or renamed), so the two sides cannot
drift.

    python tools/unasync.py          # regenerate
    python tools/unasync.py --check  # verify, change nothing
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (async source, generated sync file, rules for this file only)
FILES: list[tuple[Path, Path, list[tuple[str, str]]]] = [
    (
        ROOT / "src/tether/testing/_async_suite.py",
        ROOT / "src/tether/testing/_sync_suite.py",
        [
            (r"\bAsync(Core|Fork|Restore|Purge)Conformance\b", r"\1Conformance"),
            (r"\bAsync(History|Lifecycle)Clauses\b", r"\1Clauses"),
            (r"\b_async_(abilities|clauses_history|clauses_lifecycle)\b", r"_sync_\1"),
        ],
    ),
    (
        ROOT / "src/tether/testing/_async_clauses_history.py",
        ROOT / "src/tether/testing/_sync_clauses_history.py",
        [
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\bAsyncHistoryClauses\b", "HistoryClauses"),
            (r"~tether\.testing\.AsyncCoreConformance\b", "~tether.testing.CoreConformance"),
            (r"\b_async_abilities\b", "_sync_abilities"),
        ],
    ),
    (
        ROOT / "src/tether/testing/_async_clauses_lifecycle.py",
        ROOT / "src/tether/testing/_sync_clauses_lifecycle.py",
        [
            (r"\bAsyncLifecycleClauses\b", "LifecycleClauses"),
            (r"~tether\.testing\.AsyncCoreConformance\b", "~tether.testing.CoreConformance"),
            (r"\bAsync(Restores|Purges)\b", r"\1"),
            (r"\b_async_abilities\b", "_sync_abilities"),
        ],
    ),
    (
        ROOT / "src/tether/testing/_async_abilities.py",
        ROOT / "src/tether/testing/_sync_abilities.py",
        [
            (r"\bAsync(Fork|Restore|Purge)Conformance\b", r"\1Conformance"),
            (r"\bAsync(ForksInStore|Restores|Purges)\b", r"\1"),
        ],
    ),
    # --- the store contract: AsyncStore is the source, Store its twin --------------------
    (
        ROOT / "src/tether/stores/base_async.py",
        ROOT / "src/tether/stores/base_sync.py",
        [
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\bAsyncRestores\b", "Restores"),
            (r"\b__aenter__\b", "__enter__"),
            (r"\b__aexit__\b", "__exit__"),
            # an async generator's loop of yields is one `yield from` on the sync side
            (r"\bfor (\w+) in (page\.sessions|items):\n", r"yield from \2\n"),
            (r"^\s*yield (header|item)\n", ""),
        ],
    ),
    # --- the session runtime --------------------------------------------------------------
    (
        ROOT / "src/tether/_sessions_core_async.py",
        ROOT / "src/tether/_sessions_core_sync.py",
        [
            (r"\b_AsyncSessionsCore\b", "_SessionsCore"),
            (r"\bAsyncSessions\b", "Sessions"),
            (r"\bAsync(ForksInStore|Restores|Purges)\b", r"\1"),
            (r"\bcall_hook_async\b", "call_hook"),
            (r"\bpublish_async\b", "publish"),
        ],
    ),
    (
        ROOT / "src/tether/sessions_async.py",
        ROOT / "src/tether/sessions_sync.py",
        [
            (r"\b_AsyncSessionsCore\b", "_SessionsCore"),
            (r"\b_sessions_core_async\b", "_sessions_core_sync"),
            (r"\bAsyncSessions\b", "Sessions"),
            (r"\bAsync(ForksInStore|Restores|Purges)\b", r"\1"),
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\bcall_hook_async\b", "call_hook"),
            (r"\bpublish_async\b", "publish"),
            (r"\b__aenter__\b", "__enter__"),
            (r"\b__aexit__\b", "__exit__"),
        ],
    ),
    # --- agent turns ----------------------------------------------------------------------
    (
        ROOT / "src/tether/agent/agent_async.py",
        ROOT / "src/tether/agent/agent_sync.py",
        [
            (r"\bAsyncAgent\b", "Agent"),
            (r"\bAsyncSessions\b", "Sessions"),
            (r"\bsessions_async\b", "sessions_sync"),
            (r"\bcall_model\b", "call_model_sync"),
            (r"\.acall\(", ".call("),
            (r"\bAsyncClosing\b", "Closing"),
        ],
    ),
    # --- the runtime's tests ---------------------------------------------------------------
    (
        ROOT / "tests/test_runtime_async.py",
        ROOT / "tests/test_runtime_sync.py",
        [
            (r"\bAsyncSessions\b", "Sessions"),
            (r"\bAsync(File|Memory|SQLite|Redis|Postgres|Nats)Store\b", r"\1Store"),
            (r"\b(redis|postgres|nats)_async\b", r"\1_sync"),
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\basync with\b", "with"),
        ],
    ),
    # --- agent tests ----------------------------------------------------------------------
    (
        ROOT / "tests/test_agent_async.py",
        ROOT / "tests/test_agent_sync.py",
        [
            (r"\bAsyncAgent\b", "Agent"),
            (r"\bagent_async\b", "agent_sync"),
            (r"\bAsyncSessions\b", "Sessions"),
            (r"\b(redis|postgres|nats)_async\b", r"\1_sync"),
            (r"\bAsync(Memory|SQLite|File|Redis|Postgres|Nats)Store\b", r"\1Store"),
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\basync with\b", "with"),
        ],
    ),
    # --- redis: rules for the Redis store only --------------------------------------------
    (
        ROOT / "src/tether/stores/redis/store_async.py",
        ROOT / "src/tether/stores/redis/store_sync.py",
        [
            (r"\bredis\.asyncio\b", "redis"),
            (r"\bAsyncRedisStore\b", "RedisStore"),
            (r"\bAsyncScript\b", "Script"),
            (r"\b_AsyncAddingStore\b", "_AddingStore"),
            (r"\b_adding_async\b", "_adding_sync"),
            (r"\b_AsyncScriptCalls\b", "_ScriptCalls"),
            (r"\b_calls_async\b", "_calls_sync"),
            (r"\.aclose\(\)", ".close()"),
            (
                r"asyncio side \(hand-written; tools/unasync\.py generates store_sync\.py\)\.",
                "sync side.",
            ),
        ],
    ),
    (
        ROOT / "src/tether/stores/redis/_calls_async.py",
        ROOT / "src/tether/stores/redis/_calls_sync.py",
        [
            (r"\bredis\.asyncio\b", "redis"),
            (r"\bAsyncScript\b", "Script"),
            (r"\b_AsyncScriptCalls\b", "_ScriptCalls"),
            (r"\bAsyncRedisStore\b", "RedisStore"),
            (
                r"The asyncio side \(hand-written; tools/unasync\.py generates _calls_sync\.py\)\.",
                "The sync side.",
            ),
        ],
    ),
    # --- a store whose commit, stamped commit and append are one _add ----------------------
    (
        ROOT / "src/tether/stores/_adding_async.py",
        ROOT / "src/tether/stores/_adding_sync.py",
        [(r"\b_AsyncAddingStore\b", "_AddingStore")],
    ),
    # --- the key-value kit ----------------------------------------------------------------
    (
        ROOT / "src/tether/stores/_kv_backend_async.py",
        ROOT / "src/tether/stores/_kv_backend_sync.py",
        [(r"\bAsyncKV(Backend|Store)\b", r"KV\1"), (r"\b_AsyncKVBlobs\b", "_KVBlobs")],
    ),
    (
        ROOT / "src/tether/stores/kv_async.py",
        ROOT / "src/tether/stores/kv_sync.py",
        [
            (r"\bAsyncKV(Backend|Store)\b", r"KV\1"),
            (r"\b_AsyncKVBlobs\b", "_KVBlobs"),
            (r"\b_AsyncAddingStore\b", "_AddingStore"),
            (r"\b_(kv_backend|adding)_async\b", r"_\1_sync"),
        ],
    ),
    # --- encryption at rest: the wrapping store ------------------------------------------
    (
        ROOT / "src/tether/encryption_async.py",
        ROOT / "src/tether/encryption_sync.py",
        [
            (r"\bAsyncEncryptedStore\b", "EncryptedStore"),
            (r"\bAsyncWrappingStore\b", "WrappingStore"),
            (r"\bwrapping_async\b", "wrapping_sync"),
        ],
    ),
    # --- a store that wraps another: forwards everything to inner --------------------------
    (
        ROOT / "src/tether/stores/wrapping_async.py",
        ROOT / "src/tether/stores/wrapping_sync.py",
        [
            (r"\bAsyncWrappingStore\b", "WrappingStore"),
            (r"\b_AsyncAddingStore\b", "_AddingStore"),
            (r"\b_adding_async\b", "_adding_sync"),
            (r"\bAwaitable\[(\w+)\]", r"\1"),
            (r"\bAwaitable, ", ""),
            (r"\bbase_async\b", "base_sync"),
        ],
    ),
    # --- postgres: rules for the PostgreSQL store only ------------------------------------
    (
        ROOT / "src/tether/stores/postgres/_base_async.py",
        ROOT / "src/tether/stores/postgres/_base_sync.py",
        [
            (r"\b_AsyncPostgresBase\b", "_PostgresBase"),
            (
                r"~tether\.stores\.postgres\.AsyncPostgresStore\b",
                "~tether.stores.postgres.PostgresStore",
            ),
            (r"\bAsyncConnectionPool\b", "ConnectionPool"),
            (r"\bAsyncConnection\b", "Connection"),
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\basynccontextmanager\b", "contextmanager"),
            (r"\basync with\b", "with"),
            (r"\b_conn_async\b", "_conn_sync"),
            (r"^import asyncio$", "import threading"),
            (r"\basyncio\.Lock\(\)", "threading.Lock()"),
            (
                r"^The async side is written by hand; _base_sync\.py is generated from it by "
                r"tools/unasync\.py\.$",
                "The sync side.",
            ),
        ],
    ),
    (
        ROOT / "src/tether/stores/postgres/_forks_async.py",
        ROOT / "src/tether/stores/postgres/_forks_sync.py",
        [
            (r"\b_AsyncPostgres(Base|Forks)\b", r"_Postgres\1"),
            (
                r"~tether\.stores\.postgres\.AsyncPostgresStore\b",
                "~tether.stores.postgres.PostgresStore",
            ),
            (r"\b_(base|conn)_async\b", r"_\1_sync"),
            (r"\basync with\b", "with"),
            (
                r"^The async side is written by hand; _forks_sync\.py is generated from it by "
                r"tools/unasync\.py\.$",
                "The sync side.",
            ),
        ],
    ),
    (
        ROOT / "src/tether/stores/postgres/store_async.py",
        ROOT / "src/tether/stores/postgres/store_sync.py",
        [
            (r"\bAsyncPostgresStore\b", "PostgresStore"),
            (r"\b_AsyncPostgresForks\b", "_PostgresForks"),
            (r"\b_AsyncAddingStore\b", "_AddingStore"),
            (r"\b_(base|forks|conn|adding)_async\b", r"_\1_sync"),
            (r"\basync with\b", "with"),
            (
                r"^The async side is written by hand; store_sync\.py is generated from it by "
                r"tools/unasync\.py\.$",
                "The sync side.",
            ),
        ],
    ),
    (
        ROOT / "src/tether/stores/postgres/_conn_async.py",
        ROOT / "src/tether/stores/postgres/_conn_sync.py",
        [
            (r"\bAsyncConnection\b", "Connection"),
            (r"\bAsyncIterator\b", "Iterator"),
            (r"\basynccontextmanager\b", "contextmanager"),
            (r"\bmigrate_async\b", "migrate"),
            (r"\basync with\b", "with"),
            (
                r"^The async side is written by hand; _conn_sync\.py is generated from it by "
                r"tools/unasync\.py\.$",
                "The sync side.",
            ),
        ],
    ),
]

# Shared rules, applied in order to every line of every file (after the file's own rules).
# Every rule must match somewhere, or --check fails.
RULES: list[tuple[str, str]] = [
    (r"^\s*pytestmark = pytest\.mark\.asyncio\n", ""),
    (r"\bAsyncStoreConformance\b", "StoreConformance"),
    (r"\bAsyncStore\b", "Store"),
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\bgather_tasks\b", "gather_threads"),
    (r"\brace_tasks\b", "race_threads"),
    (r"\bclaim_race_tasks\b", "claim_race_threads"),
    (r"\bappend_with_retry_async\b", "append_with_retry"),
    (r"\bopen_async_store\b", "open_store"),
    (r"\bis_async = True\b", "is_async = False"),
    (r"async side; tools/unasync\.py writes the sync side from it\.", "sync side."),
    (r"for an :class:`~tether\.Store`", "for a :class:`~tether.Store`"),
]


HEADER = "# generated from {source} by tools/unasync.py, do not edit\n"
"""The first line of every generated file; ``--check`` verifies it against FILES."""
# Where generated files may live: --check reads the first line of every .py file below these.
SEARCHED = ("src", "tests", "tools", "benchmarks", "examples")


def header(source: Path) -> str:
    return HEADER.format(source=source.relative_to(ROOT).as_posix())


def orphans(targets: set[Path]) -> list[Path]:
    """Files whose first line says they are generated but that FILES does not generate."""
    prefix, suffix = HEADER.split("{source}")
    found = []
    for folder in SEARCHED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            with path.open(encoding="utf-8") as file:
                first = file.readline()
            if first.startswith(prefix) and first.endswith(suffix) and path not in targets:
                found.append(path.relative_to(ROOT))
    return found


def convert(source: str, rules: list[tuple[str, str]], used: set[str]) -> str:
    out = []
    for original in source.splitlines(keepends=True):
        line = original
        for pattern, replacement in rules:
            line, count = re.subn(pattern, replacement, line)
            if count:
                used.add(pattern)
        out.append(line)
    return "".join(out)


def formatted(text: str, path: Path) -> str:
    """Sort imports and format with ruff, so the output is what `make lint` expects."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (
        [ruff, "check", "--select", "I", "--fix", "--quiet", "--stdin-filename", str(path), "-"],
        [ruff, "format", "--stdin-filename", str(path), "-"],
    ):
        text = subprocess.run(
            command, input=text, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if output is stale")
    args = parser.parse_args()
    used: set[str] = set()
    stale = []
    all_rules = list(RULES)
    for source, target, own_rules in FILES:
        if not source.exists():
            print(f"unasync: {source.relative_to(ROOT)} does not exist yet", file=sys.stderr)
            if target.exists():
                stale.append(target.relative_to(ROOT))
            continue
        all_rules += own_rules
        # a file's own rules run first, so they can match before the shared ones rewrite
        converted = header(source) + convert(source.read_text(), own_rules + RULES, used)
        text = formatted(converted, target)
        current = target.read_text() if target.exists() else None
        if current != text:
            stale.append(target.relative_to(ROOT))
            if not args.check:
                target.write_text(text)
    unused = [pattern for pattern, _ in all_rules if pattern not in used]
    if unused:
        print(f"unasync: rules that matched nothing (remove them): {unused}", file=sys.stderr)
        return 1
    stray = orphans({target for _, target, _ in FILES})
    if stray:
        print(
            f"unasync: {', '.join(map(str, stray))} carry the generated-file header but no "
            "FILES entry makes them: add the entry, or remove the file (or its header)",
            file=sys.stderr,
        )
        return 1
    if stale and args.check:
        print(
            f"unasync: generated files are stale: {', '.join(map(str, stale))}; "
            "run `python tools/unasync.py` and commit the result",
            file=sys.stderr,
        )
        return 1
    for target in stale:
        print(f"unasync: wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
