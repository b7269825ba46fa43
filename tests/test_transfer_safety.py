"""Copy, import, export and migrate never lose what a store holds, on every store.

A target session that moved on or diverged is never overwritten unless told to; sessions are
compared by a digest of header and items; newer-schema sessions are skipped and named, never a
reason to stop; export files are private; a bad import line names its line and field.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tether
from tether.cli import cli, transfer
from tether.cli.common import INCOMPLETE
from tether.models import Session
from tether.schema import schema
from tether.stores.base import Store
from tether.stores.memory import MemoryStore

from .conftest import drop_postgres_schema, require_server, wipe_redis_namespace, with_options

KINDS = ["file", "sqlite", "redis", "postgres"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def items(n: int, tag: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{tag}{i}"} for i in range(n)]


@pytest.fixture
def url_of(tmp_path: Path) -> Iterator[Any]:
    """``url_of(kind)``: a new, empty store of that kind; server ones are cleaned up after."""
    cleanups: list[Any] = []

    def make(kind: str) -> str:
        name = uuid.uuid4().hex[:16]
        if kind == "file":
            return f"file:{tmp_path / ('files-' + name)}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        base = require_server(kind)
        if kind == "redis":
            cleanups.append(lambda: wipe_redis_namespace(base, f"xfer{name}"))
            return with_options(base, namespace=f"xfer{name}")
        cleanups.append(lambda: drop_postgres_schema(base, f"tether_txfer_{name}"))
        return with_options(base, schema=f"tether_txfer_{name}")

    yield make
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with tether.Sessions(url) as runtime:
        for n in range(4):
            runtime.create("support", session_id=f"s{n}", metadata={"n": n}, history=items(3))
            runtime.execute(f"s{n}", tether.SetState(turn=n))
    return url


def newer_session(url: str, session_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store a session as a newer tether would (schema version current + 1)."""
    with monkeypatch.context() as patch:
        patch.setattr(schema, "current", schema.current + 1)
        with tether.open_store(url) as store:
            store.create(Session(id=session_id, history=items(1)))


def older_session(store: Store, session_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store a session as tether at schema version 1 did."""
    with monkeypatch.context() as patch:
        patch.setattr(schema, "current", 1)
        store.create(Session(id=session_id, history=items(2)))


# --- copy and import never overwrite a target that differs -------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_copy_never_clobbers_a_target_that_moved_on(kind: str, source: str, url_of: Any) -> None:
    target = url_of(kind)
    assert run("copy", "--from", source, "--to", target).exit_code == 0
    with tether.open_store(target) as store:  # traffic on the target: s2 moves on there
        store.commit("s2", 2, append=[{"role": "user", "content": "only in the target"}])
    again = run("copy", "--from", source, "--to", target)
    assert again.exit_code == INCOMPLETE
    assert "0 copied, 3 unchanged, 1 differing, 0 skipped (newer schema)" in again.output
    assert "differs: s2: version 3 in the target, 2 in the source" in again.output
    replace = run("copy", "--from", source, "--to", target, "--replace")
    assert replace.exit_code == INCOMPLETE, "the target is ahead: --replace alone refuses"
    assert "pass --replace --force" in replace.output
    with tether.open_store(target) as store:
        kept = store.load("s2")
        assert kept.version == 3
        assert kept.history[-1]["content"] == "only in the target"
    forced = run("copy", "--from", source, "--to", target, "--replace", "--force")
    assert forced.exit_code == 0, forced.output
    assert "0 copied" not in forced.output
    assert "1 copied (1 replaced), 3 unchanged" in forced.output
    with tether.open_store(source) as a, tether.open_store(target) as b:
        assert transfer.digest(a.load("s2")) == transfer.digest(b.load("s2"))


@pytest.mark.parametrize("kind", KINDS)
def test_same_version_different_content_is_differing(kind: str, source: str, url_of: Any) -> None:
    target = url_of(kind)
    assert run("copy", "--from", source, "--to", target).exit_code == 0
    with tether.open_store(target) as store:  # same version, same timestamps, other content
        tampered = store.load("s1")
        tampered.metadata = {"n": "changed"}
        tampered.history[0]["content"] = "changed"
        store.restore(tampered, replace=True)  # type: ignore[attr-defined]
    again = run("copy", "--from", source, "--to", target)
    assert again.exit_code == INCOMPLETE
    assert "differs: s1: version 2 in the target, 2 in the source, with different content" in (
        again.output
    )
    assert "0 copied, 3 unchanged, 1 differing" in again.output


def test_a_claimed_target_needs_force(source: str, url_of: Any) -> None:
    target = url_of("sqlite")
    run("copy", "--from", source, "--to", target)
    with tether.open_store(target) as store:
        store.claim("s0", "runner-on-the-target", 60)  # claims change the fence, not the version
    refused = run("copy", "--from", source, "--to", target, "--replace")
    assert refused.exit_code == INCOMPLETE
    assert "claimed in the target by 'runner-on-the-target'" in refused.output
    with tether.open_store(target) as store:
        assert store.load("s0", last=0).lease_owner == "runner-on-the-target"
    forced = run("copy", "--from", source, "--to", target, "--replace", "--force")
    assert forced.exit_code == 0, forced.output
    assert "1 copied (1 replaced), 3 unchanged" in forced.output
    with tether.open_store(source) as a, tether.open_store(target) as b:
        assert transfer.digest(a.load("s0")) == transfer.digest(b.load("s0"))


def test_import_is_a_no_op_when_identical_and_keeps_a_diverged_target(
    source: str, url_of: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "--all", "-o", str(dump))
    target = url_of("sqlite")
    run("--store", target, "import", str(dump))
    with tether.open_store(target) as store:
        before = store.load("s3")
        store.commit("s0", 2, changes={"metadata": {"diverged": True}})
    again = run("--store", target, "import", str(dump), "--replace")
    assert again.exit_code == INCOMPLETE
    assert "0 imported, 3 unchanged, 1 differing" in again.output
    assert "differs: s0: version 3 in the target, 2 in the source" in again.output
    with tether.open_store(target) as store:
        assert store.load("s3") == before, "an unchanged session is not written again"
        assert store.load("s0").metadata == {"diverged": True}


class _WritesBehindTheCopy:
    """A target on which another writer commits right after the copy reads a session."""

    def __init__(self, store: Store, session_id: str) -> None:
        self.store, self.session_id, self.done = store, session_id, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def load(self, session_id: str, **kwargs: Any) -> Session:
        session = self.store.load(session_id, **kwargs)
        if session_id == self.session_id and not self.done:
            self.done = True
            self.store.commit(session_id, session.version, append=items(1, "raced"))
        return session


def test_a_target_written_during_a_replace_is_kept(tmp_path: Path) -> None:
    source = MemoryStore()
    source.create(Session(id="s", history=items(2)))
    with tether.open_store(f"sqlite:///{tmp_path / 't.db'}") as target:
        target.restore(source.load("s"))  # type: ignore[attr-defined]
        target.commit("s", 1, append=items(1, "target"))
        racing = _WritesBehindTheCopy(target, "s")
        outcome = transfer.copy(source, racing, lambda _: None, replace=True, force=True)  # type: ignore[arg-type]
        assert "s" in outcome.differing
        assert "while it was being replaced" in outcome.differing["s"]
        kept = target.load("s")
        assert [item["content"] for item in kept.history][-2:] == ["target0", "raced0"]


# --- the digest --------------------------------------------------------------------------------


def test_the_digest_is_the_same_on_every_store(url_of: Any) -> None:
    memory = MemoryStore()
    memory.create(
        Session(id="d", owner="ada", metadata={"u": "日本語 ✓", "n": 1.5}, history=items(3))
    )
    memory.commit("d", 1, append=items(2, "x"), changes={"state": {"k": [1, {"a": None}]}})
    lease = memory.claim("d", "runner", 60)
    memory.release(lease)
    original = memory.load("d")
    want = transfer.digest(original)
    line = transfer.parse_line(transfer.export_line(original))
    assert transfer.digest(line) == want
    for kind in KINDS:
        with tether.open_store(url_of(kind)) as store:
            store.restore(original)  # type: ignore[attr-defined]
            assert transfer.digest(store.load("d")) == want, kind
    changed = original.model_copy(deep=True)
    changed.history[1]["content"] = "other"
    assert transfer.digest(changed) != want


def test_verification_compares_digests(tmp_path: Path) -> None:
    source = MemoryStore()
    for n in range(3):
        source.create(Session(id=f"v{n}", history=items(2)))
    target = MemoryStore()
    outcome = transfer.copy(source, target, lambda _: None)
    assert transfer.verify(target, outcome) == {}
    tampered = target.load("v1")
    tampered.history[0]["content"] = "not what was copied"
    target.restore(tampered, replace=True)  # same version and counts: only a digest sees it
    problems = transfer.verify(target, outcome)
    assert list(problems) == ["v1"]


# --- newer-schema sessions: skipped, named, and never a reason to stop -------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_migrate_goes_past_newer_sessions(
    kind: str, url_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_of(kind)
    with tether.open_store(url) as store:
        older_session(store, "old-a", monkeypatch)
    newer_session(url, "future", monkeypatch)
    with tether.open_store(url) as store:
        older_session(store, "old-b", monkeypatch)
    result = run("migrate", url)
    assert result.exit_code == INCOMPLETE, result.output
    assert "2 of 2 sessions upgraded" in result.output
    assert "1 skipped (newer schema)" in result.output
    assert "skipped: future: stored by a newer tether" in result.output
    with tether.open_store(url) as store:
        assert store.load("old-a").stored_schema_version == schema.current
        assert store.load("old-b").stored_schema_version == schema.current
    with monkeypatch.context() as patch:
        patch.setattr(schema, "current", schema.current + 1)
        with tether.open_store(url) as store:
            assert store.load("future").version == 1, "left untouched"


def test_migrate_goes_past_newer_sessions_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    older_session(store, "old-a", monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(schema, "current", schema.current + 1)
        store.create(Session(id="future"))
    older_session(store, "old-b", monkeypatch)
    result = transfer.migrate(store, lambda _: None)
    assert (result.upgraded, result.seen, result.newer) == (2, 2, ["future"])


class CommitsDuringMigrate:
    """A store on which another writer commits to a session between migrate's read of it and
    its write-back (deterministically: just before the first write-back)."""

    def __init__(self, inner: Store) -> None:
        self.inner: Any = inner  # a built-in store: it has restore()
        self.raced: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def restore(self, session: Session, **kwargs: Any) -> None:
        if not self.raced:
            self.raced.append(session.id)
            self.inner.commit(session.id, session.version, append=items(1, "meanwhile"))
        self.inner.restore(session, **kwargs)


@pytest.mark.parametrize("kind", ["memory", *KINDS])
def test_migrate_never_loses_a_commit_that_lands_meanwhile(
    kind: str, url_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tether.open_store("memory://" if kind == "memory" else url_of(kind)) as inner:
        older_session(inner, "old-a", monkeypatch)
        older_session(inner, "old-b", monkeypatch)
        racing = CommitsDuringMigrate(inner)
        result = transfer.migrate(racing, lambda _: None)  # type: ignore[arg-type]
        (raced,) = racing.raced
        assert (result.seen, result.upgraded) == (2, 1), "the commit upgraded the raced one"
        kept = inner.load(raced)
        assert kept.version == 2
        assert [i["content"] for i in kept.history] == ["m0", "m1", "meanwhile0"]
        assert [i["seq"] for i in kept.history] == [1, 2, 3]
        for session_id in ("old-a", "old-b"):
            assert inner.load(session_id).stored_schema_version == schema.current


def test_migrate_refuses_a_restore_without_expected_version() -> None:
    class OldRestore(MemoryStore):
        def restore(self, session: Session, *, replace: bool = False) -> None:  # type: ignore[override]
            super().restore(session, replace=replace)

    with pytest.raises(tether.InvalidRequest, match="expected_version"):
        transfer.migrate(OldRestore(), lambda _: None)


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_copy_and_export_skip_newer_sessions_and_name_them(
    kind: str, source: str, url_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = url_of(kind)
    assert run("copy", "--from", source, "--to", origin).exit_code == 0
    newer_session(origin, "future", monkeypatch)
    dump = tmp_path / "dump.jsonl"
    exported = run("--store", origin, "export", "--all", "-o", str(dump))
    assert exported.exit_code == INCOMPLETE
    assert "exported 4 sessions" in exported.output
    assert "skipped: future" in exported.output
    assert len(dump.read_bytes().splitlines()) == 4
    copied = run("copy", "--from", origin, "--to", url_of("sqlite"))
    assert copied.exit_code == INCOMPLETE
    assert "4 copied, 0 unchanged, 0 differing, 1 skipped (newer schema)" in copied.output


def test_import_skips_a_newer_line(source: str, url_of: Any, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "s1", "-o", str(dump))
    line = dump.read_text().replace(
        f'"schema_version":{schema.current}', f'"schema_version":{schema.current + 1}'
    )
    dump.write_text(line)
    result = run("--store", url_of("sqlite"), "import", str(dump))
    assert result.exit_code == INCOMPLETE
    assert "0 imported, 0 unchanged, 0 differing, 1 skipped (newer schema)" in result.output


# --- import errors: the line, the field, and how far it got ------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.replace('"version":2', '"version":"two"'), "field 'version'"),
        (lambda s: s.replace('"items":[', '"items":[7,', 1), "field 'items'"),
        (lambda s: s.replace('"format":"tether-export/1"', '"format":"x"'), "field 'format'"),
        (
            lambda s: s.replace('"last_seq":3', '"last_seq":9'),
            "field 'history.0.seq' is 1, expected 7",
        ),
        (lambda s: s.replace('"history_len":3', '"history_len":2'), "field 'history_len' is 2"),
    ],
)
def test_a_bad_line_names_its_line_and_field_and_how_far_it_got(
    edit: Any, expected: str, source: str, url_of: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    run("--store", source, "export", "s0", "s1", "s2", "-o", str(dump))
    lines = dump.read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + lines[1] + edit(lines[2]))
    assert edit(lines[2]) != lines[2]
    target = url_of("sqlite")
    result = CliRunner().invoke(cli, ["--store", target, "import", str(bad)])
    assert result.exit_code == 1
    message = result.output
    assert message.startswith("error: line 3: "), message
    assert expected in message
    assert "2 imported, 0 unchanged, 0 differing, 0 skipped" in message


# --- export files are private ------------------------------------------------------------------


def test_export_files_are_private(source: str, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.jsonl"
    assert run("--store", source, "export", "--all", "-o", str(fresh)).exit_code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    loose = tmp_path / "loose.jsonl"
    loose.write_text("old\n")
    os.chmod(loose, 0o644)
    assert run("--store", source, "export", "--all", "-o", str(loose)).exit_code == 0
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert len(loose.read_bytes().splitlines()) == 4


def test_a_failed_export_leaves_the_old_file_and_no_partial_one(
    source: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous export\n")
    failed = CliRunner().invoke(cli, ["--store", source, "export", "s0", "nope", "-o", str(out)])
    assert failed.exit_code == 1
    assert out.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if "out.jsonl" in p.name] == ["out.jsonl"]
