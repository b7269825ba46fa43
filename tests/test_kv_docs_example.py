"""The "in four methods" example of docs/stores.md is a complete store: the whole conformance
suite runs on the backend defined in that very block (its threads race where processes would)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.stores import KVStore
from tether.testing import FakeClock, StoreConformance

DOC = Path(__file__).resolve().parent.parent / "docs" / "stores.md"


def _example() -> dict[str, Any]:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.DOTALL | re.MULTILINE)
    [block] = [b for b in blocks if "class SQLiteKV(KVBackend)" in b]
    assert len(block.splitlines()) < 100, "the docs promise a store in under 100 lines"
    definitions = block.split("\nwith KVStore(", 1)[0]  # the classes, not the demo
    namespace: dict[str, Any] = {"__name__": "kv_docs_example"}
    exec(compile(definitions, f"{DOC}", "exec"), namespace)
    return namespace


class TestDocsExampleKVStore(StoreConformance):
    # SQLite without WAL: every write syncs. The races run small here: this run proves the
    # example is a complete store; the dict and NATS runs race the same kit at full size.
    appends_per_writer = 20
    claim_rounds = 50

    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[KVStore]:
        backend = _example()["SQLiteKV"](str(tmp_path / "sessions.kv"))
        with KVStore(backend, clock=clock, chunk_items=4) as store:
            yield store
