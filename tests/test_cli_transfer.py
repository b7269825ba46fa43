"""tether export / import / copy: lossless, resumable, and clear about bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tether
from tether.cli import cli

FIVE_COPIED = (
    "5 copied, 0 unchanged, 0 differing, 0 skipped (newer schema); "
    "verified: the target holds 5 sessions exactly as in the source"
)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def seed(url: str, sessions: int = 5, items: int = 7) -> None:
    with tether.Sessions(url) as runtime:
        for n in range(sessions):
            runtime.create(
                "support",
                session_id=f"s{n}",
                owner=f"owner-{n % 2}",
                metadata={"n": n, "nested": {"unicode": "日本語 ✓"}},
                history=[{"role": "user", "content": f"m{i}"} for i in range(items)],
            )
            runtime.execute(f"s{n}", tether.SetState(turn=n))
        runtime.archive("s0")
        lease = runtime.store.claim("s1", "runner", 60)
        runtime.store.release(lease)


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    seed(url)
    return url


def test_export_import_export_is_byte_identical(source: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert run("--store", source, "export", "--all", "-o", str(first)).exit_code == 0
    target = f"file:{tmp_path / 'files'}"
    imported = run("--store", target, "import", str(first))
    assert imported.exit_code == 0, imported.output
    assert "5 imported, 0 unchanged, 0 differing, 0 skipped (newer schema)" in imported.output
    assert run("--store", target, "export", "--all", "-o", str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    with tether.open_store(source) as a, tether.open_store(target) as b:
        for n in range(5):
            assert a.load(f"s{n}") == b.load(f"s{n}")
        assert b.load("s1").lease_fence == 1
        assert b.load("s0", last=0).status == tether.SessionStatus.ARCHIVED


def test_import_twice_writes_nothing_twice(source: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "--all", "-o", str(dump))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    run("--store", target, "import", str(dump))
    again = run("--store", target, "import", str(dump))
    assert again.exit_code == 0
    assert "0 imported, 5 unchanged, 0 differing" in again.output
    with tether.open_store(target) as store:
        assert store.load("s2").version == 2


def test_a_corrupt_line_is_reported_by_number_and_a_rerun_resumes(
    source: str, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "--all", "-o", str(dump))
    lines = dump.read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(
        b"".join([*lines[:2], b'{"format": "tether-export/1", "session": 7}\n', *lines[2:]])
    )
    target = f"sqlite:///{tmp_path / 'target.db'}"
    result = CliRunner().invoke(cli, ["--store", target, "import", str(broken)])
    assert result.exit_code == 1
    assert "line 3: not a valid session: the session is not a JSON object" in result.output
    assert "2 imported, 0 unchanged" in result.output, "says how far it got"
    assert "Traceback" not in result.output
    fixed = run("--store", target, "import", str(dump))
    assert "3 imported, 2 unchanged" in fixed.output


def test_import_refuses_to_overwrite_a_diverged_session_without_replace(
    source: str, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "s2", "-o", str(dump))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    run("--store", target, "import", str(dump))
    with tether.open_store(target) as store:
        store.commit("s2", 2, append=[{"role": "user", "content": "diverged"}])
    refused = CliRunner().invoke(cli, ["--store", target, "import", str(dump)])
    assert refused.exit_code == 3
    assert "differs: s2: version 3 in the target, 2 in the source" in refused.output
    assert "pass --replace" in refused.output
    # the target is ahead of the file: --replace alone still refuses, --force overrides
    ahead = CliRunner().invoke(cli, ["--store", target, "import", str(dump), "--replace"])
    assert ahead.exit_code == 3
    assert "the target is ahead" in ahead.output
    with tether.open_store(target) as store:
        assert store.load("s2").version == 3
    forced = run("--store", target, "import", str(dump), "--replace", "--force")
    assert forced.exit_code == 0, forced.output
    assert "1 imported (1 replaced)" in forced.output
    with tether.open_store(target) as store:
        assert store.load("s2").version == 2


def test_copy_is_resumable_and_verified(source: str, tmp_path: Path) -> None:
    target = f"file:{tmp_path / 'copy'}"
    first = run("copy", "--from", source, "--to", target)
    assert first.exit_code == 0, first.output
    assert FIVE_COPIED in first.output
    # an interrupted copy: one session missing in the target, one changed in the source since
    with tether.open_store(target) as store:
        store.delete("s3")
    with tether.open_store(source) as store:
        store.commit("s4", 2, append=[{"role": "user", "content": "new"}])
    second = run("copy", "--from", source, "--to", target)
    assert second.exit_code == 3, "s4 differs in the target: named, left as it is"
    assert "1 copied, 3 unchanged, 1 differing" in second.output
    assert "differs: s4: version 2 in the target, 3 in the source" in second.output
    third = run("copy", "--from", source, "--to", target, "--replace")
    assert third.exit_code == 0, third.output
    assert "1 copied (1 replaced), 4 unchanged, 0 differing" in third.output
    with tether.open_store(source) as a, tether.open_store(target) as b:
        assert a.load("s4") == b.load("s4")
        assert a.load("s3") == b.load("s3")


def test_bad_transfer_input(source: str, tmp_path: Path) -> None:
    both = CliRunner().invoke(cli, ["--store", source, "export", "s1", "--all", "-o", "x.jsonl"])
    assert both.exit_code == 2
    missing = CliRunner().invoke(
        cli, ["--store", source, "export", "nope", "-o", str(tmp_path / "x")]
    )
    assert missing.exit_code == 1
    assert "not found" in missing.output
    bad_url = CliRunner().invoke(cli, ["copy", "--from", "bogus://x", "--to", source])
    assert bad_url.exit_code == 1
    assert "unknown store scheme" in bad_url.output


def test_migrate_upgrades_sessions_written_by_an_older_tether(tmp_path: Path) -> None:
    import shutil

    fixtures = Path(__file__).parent / "fixtures" / "schema_v1" / "files"
    directory = Path(shutil.copytree(fixtures, tmp_path / "files"))
    url = f"file:{directory}"
    first = run("migrate", url)
    assert first.exit_code == 0, first.output
    current = tether.schema.schema.current  # this tether's: whatever it is, v1 is upgraded to it
    assert f"1 of 1 session upgraded to session schema version {current}" in first.output
    assert f'"schema_version":{current}' in (directory / "support-42.json").read_text()
    with tether.open_store(url) as store:
        migrated = store.load("support-42")
        assert migrated.version == 1, "migrating is not a new version of the conversation"
        assert migrated.stored_schema_version == current
    again = run("--store", url, "migrate")
    assert "0 of 1 session upgraded" in again.output


@pytest.mark.heavy  # runs the demo, which starts OS processes: seconds a store
@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_lossless_through_the_server_stores(kind: str, source: str, tmp_path: Path) -> None:
    import uuid

    from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options

    base = require_server(kind)
    if kind == "redis":
        name = f"cli{uuid.uuid4().hex}"
        target = with_options(base, namespace=name)
    else:
        name = f"tether_tcli_{uuid.uuid4().hex[:16]}"
        target = with_options(base, schema=name)
    try:
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        run("--store", source, "export", "--all", "-o", str(first))
        assert run("--store", target, "import", str(first)).exit_code == 0
        assert run("--store", target, "export", "--all", "-o", str(second)).exit_code == 0
        assert first.read_bytes() == second.read_bytes()
        back = f"sqlite:///{tmp_path / 'back.db'}"
        copied = run("copy", "--from", target, "--to", back)
        assert FIVE_COPIED in copied.output
        demo = run("--store", target, "demo")
        assert demo.exit_code == 0, demo.output
    finally:
        if kind == "redis":
            wipe_redis_namespace(base, name)
        else:
            drop_postgres_schema(base, name)
