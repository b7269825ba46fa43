"""Sessions written by an older tether load, upgraded, and are written back upgraded.

The fixtures in ``tests/fixtures/schema_v1`` were written by tether itself at schema version 1
(commit 228c5bb, before claims added the lease fields): a file-store directory, and a SQLite
database kept as a SQL dump (databases are not committed as binaries).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import tether
from tether.stores import _sqlite_migrations
from tether.stores.file import FileStore
from tether.stores.sqlite import SQLiteStore

FIXTURES = Path(__file__).parent / "fixtures" / "schema_v1"
TEXTS = ["Where is order A1001?", "It shipped yesterday."]


@pytest.fixture
def v1_files(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "files", tmp_path / "files"))


@pytest.fixture
def v1_database(tmp_path: Path) -> Path:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "sqlite.sql").read_text())
    conn.close()
    return path


def _raw_file_header(directory: Path) -> dict[str, object]:
    wrapper = json.loads((directory / "support-42.json").read_text())
    session = wrapper["session"]
    assert isinstance(session, dict)
    return session


def test_the_fixtures_really_are_version_1(v1_files: Path, v1_database: Path) -> None:
    assert _raw_file_header(v1_files)["schema_version"] == 1
    assert "lease_fence" not in _raw_file_header(v1_files)
    conn = sqlite3.connect(v1_database)
    assert conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone() == (1,)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tether_sessions)")}
    assert "lease_fence" not in columns
    conn.close()


def test_file_store_upgrades_on_read_and_writes_back_on_commit(v1_files: Path) -> None:
    store = FileStore(v1_files)
    loaded = store.load("support-42")
    assert loaded.schema_version == tether.schema.CURRENT_SCHEMA_VERSION == 3
    assert (loaded.lease_owner, loaded.lease_fence, loaded.lease_expires_at) == (None, 0, None)
    assert [item["content"] for item in loaded.history] == TEXTS
    assert loaded.state == {"order": "A1001"}
    assert _raw_file_header(v1_files)["schema_version"] == 1, "a read must not write"

    store.commit("support-42", 1, append=[{"role": "user", "content": "Thanks!"}])
    raw = _raw_file_header(v1_files)
    assert raw["schema_version"] == 3
    assert raw["lease_fence"] == 0
    again = store.load("support-42")
    assert [item["content"] for item in again.history] == [*TEXTS, "Thanks!"]
    lease = store.claim("support-42", "worker", 30)  # the upgraded session takes claims
    assert lease.fence == 1


def test_sqlite_store_migrates_the_database_and_the_session(v1_database: Path) -> None:
    store = SQLiteStore(v1_database)  # applies database migrations 2 to the newest
    loaded = store.load("support-42")
    assert loaded.schema_version == 3
    assert [item["content"] for item in loaded.history] == TEXTS
    # the exact view: the items as stored then, without tether's seq and timestamp
    assert [entry.item for entry in loaded.items] == [
        {"role": role, "content": text}
        for role, text in zip(("user", "assistant"), TEXTS, strict=True)
    ]
    assert loaded.options["model"] == "gpt-4o"
    store.commit("support-42", 1, append=[{"role": "user", "content": "Thanks!"}])
    store.close()
    conn = sqlite3.connect(v1_database)
    newest = (len(_sqlite_migrations.MIGRATIONS),)
    assert conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone() == newest
    assert conn.execute(
        "SELECT schema_version, lease_fence FROM tether_sessions WHERE id = 'support-42'"
    ).fetchone() == (3, 0)
    # schema 3 rows: the item beside tether's fields, the old rows rewritten by that commit
    rows = [json.loads(r[0]) for r in conn.execute("SELECT data FROM tether_items ORDER BY seq")]
    assert [sorted(row) for row in rows] == [["item", "seq", "timestamp"]] * 3
    assert rows[0]["item"] == {"role": "user", "content": TEXTS[0]}
    conn.close()
