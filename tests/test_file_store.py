"""Behaviour specific to the file store: damaged logs, corrupt headers, locks, files on disk.

The generic contract (round trips, conflicts, windows, listing, expiry, races) is covered by
the conformance suite in test_conformance.py; this module covers only what the file layout
itself promises (see the docstring of tether.stores.file).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import CorruptSession, Session
from tether.stores.file import AsyncFileStore, FileStore

_FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload (the on-disk framing)


def _items(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{prefix} message number {i}"} for i in range(count)]


def _texts(items: list[dict[str, Any]]) -> list[str]:
    return [item["content"] for item in items]


def _contents(session: Session) -> list[str]:
    return [item["content"] for item in session.history]


def _seqs(session: Session) -> list[int]:
    return [item["seq"] for item in session.history]


def _header_wrapper(directory: Path, session_id: str) -> dict[str, Any]:
    wrapper: dict[str, Any] = json.loads((directory / f"{session_id}.json").read_bytes())
    return wrapper


def _record_offsets(data: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload length) of every record in an undamaged log."""
    records = []
    pos = 0
    while pos < len(data):
        length, _ = _FRAME.unpack_from(data, pos)
        records.append((pos + _FRAME.size, length))
        pos += _FRAME.size + length
    assert pos == len(data)
    return records


@contextmanager
def _held_lock(path: Path, operation: int) -> Iterator[None]:
    """Hold ``flock(operation)`` on ``path`` through a descriptor of our own."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store(directory: Path) -> Iterator[FileStore]:
    with FileStore(directory) as store:
        yield store


# --- damaged history logs ------------------------------------------------------------------------


def _ghost_frame() -> bytes:
    """A complete, valid record that a commit crashing before its header write leaves behind."""
    payload = json.dumps({"role": "user", "content": "ghost", "seq": 4}).encode()
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(random.Random(7).randbytes(5), id="partial-frame-header"),
        pytest.param(random.Random(11).randbytes(300), id="random-300"),
        pytest.param(_ghost_frame(), id="whole-valid-frame"),
        pytest.param(_ghost_frame() + _ghost_frame()[:9], id="frame-and-a-half"),
    ],
)
def test_torn_tail_is_ignored_and_cut_off_by_next_commit(
    store: FileStore, directory: Path, tail: bytes
) -> None:
    store.create(Session(id="s", history=_items(3)))
    log = directory / "s.0.log"
    committed = log.stat().st_size
    assert _header_wrapper(directory, "s")["log_size"] == committed
    with open(log, "ab") as handle:
        handle.write(tail)

    loaded = store.load("s")
    assert _contents(loaded) == _texts(_items(3))
    assert _seqs(loaded) == [1, 2, 3]
    assert loaded.history_len == 3

    version = store.commit("s", loaded.version, append=_items(2, "n"))
    assert version == 2
    # The tail is gone: the log is exactly what the header commits, nothing past it.
    assert log.stat().st_size == _header_wrapper(directory, "s")["log_size"]
    after = store.load("s")
    assert _contents(after) == _texts(_items(3) + _items(2, "n"))
    assert _seqs(after) == [1, 2, 3, 4, 5]
    assert (after.history_len, after.last_seq) == (5, 5)
    assert b"ghost" not in log.read_bytes()


@pytest.mark.parametrize("cut", [1, 3, 9, 20])
def test_log_truncated_inside_committed_region_loads_intact_prefix(
    store: FileStore, directory: Path, cut: int
) -> None:
    original = _items(5)
    store.create(Session(id="s", history=original))
    log = directory / "s.0.log"
    data = log.read_bytes()
    last_record_size = _FRAME.size + _record_offsets(data)[-1][1]
    assert cut < last_record_size  # only the last record is cut
    log.write_bytes(data[:-cut])

    loaded = store.load("s")  # never raises
    assert _contents(loaded) == _texts(original[:-1])
    assert _seqs(loaded) == [1, 2, 3, 4]

    version = store.commit("s", loaded.version, append=_items(2, "n"))
    assert version == 2
    after = store.load("s")
    expected = _texts(original[:-1] + _items(2, "n"))
    assert _contents(after) == expected
    # The lost item is dropped from the header: seqs stay contiguous and the header agrees.
    assert _seqs(after) == list(range(1, 7))
    assert (after.history_len, after.last_seq, after.first_seq) == (6, 6, 1)
    # Windows agree with the full history after the repair.
    assert _contents(store.load("s", last=2)) == expected[-2:]
    assert _contents(store.load("s", after=3)) == expected[3:]
    # And the store keeps working normally.
    assert store.commit("s", version, append=_items(1, "o")) == 3
    assert _seqs(store.load("s")) == list(range(1, 8))


def test_repairing_commit_removes_the_old_log_generation(store: FileStore, directory: Path) -> None:
    store.create(Session(id="s", history=_items(5)))
    log = directory / "s.0.log"
    log.write_bytes(log.read_bytes()[:-3])
    store.commit("s", 1, append=_items(1, "n"))
    gen = _header_wrapper(directory, "s")["log_gen"]
    assert sorted(p.name for p in directory.iterdir()) == [f"s.{gen}.log", "s.json", "s.lock"]


def _flip_payload_byte(log: Path, record: int) -> None:
    data = bytearray(log.read_bytes())
    offset, length = _record_offsets(bytes(data))[record]
    # Flip the case of a letter in the content: still valid JSON, only the checksum is wrong.
    letter = data.index(b"number", offset, offset + length)
    data[letter] ^= 0x20
    log.write_bytes(bytes(data))


def test_checksum_mismatch_is_reported_not_hidden(store: FileStore, directory: Path) -> None:
    # A bad checksum inside the committed log is damage after the fact (a crash only ever
    # leaves a torn tail past the committed length): loading it says so instead of returning
    # a history with a hole in it.
    original = _items(5)
    store.create(Session(id="s", history=original))
    _flip_payload_byte(directory / "s.0.log", record=2)

    with pytest.raises(CorruptSession, match="history item 3"):
        store.load("s")
    with pytest.raises(CorruptSession):
        store.load("s", after=1)
    # Windows that do not reach the damaged item still load.
    assert _contents(store.load("s", after=3)) == _texts(original[3:])
    assert _contents(store.load("s", last=2)) == _texts(original[3:])


def test_commit_after_checksum_damage_stays_reported(store: FileStore, directory: Path) -> None:
    store.create(Session(id="s", history=_items(5)))
    _flip_payload_byte(directory / "s.0.log", record=2)
    # A commit does not read the history (its cost must not grow with it), so it succeeds...
    version = store.commit("s", 1, append=[{"role": "user", "content": "after the damage"}])
    assert version == 2
    assert store.load("s", last=1).history[0]["content"] == "after the damage"
    # ...and the full history keeps reporting the damage rather than hiding the new item.
    with pytest.raises(CorruptSession):
        store.load("s")
    # Deleting is how a damaged session is cleared.
    assert store.delete("s") is True
    store.create(Session(id="s", history=_items(1)))
    assert _seqs(store.load("s")) == [1]


# --- corrupt headers -----------------------------------------------------------------------------


def _bad_headers() -> list[Any]:
    return [
        pytest.param(lambda good: random.Random(3).randbytes(64), id="random-bytes"),
        pytest.param(lambda good: good[: len(good) // 2], id="half-written"),
        pytest.param(lambda good: b'{"hello": "world"}', id="json-not-a-header"),
        pytest.param(lambda good: b"[1, 2, 3]", id="json-array"),
        pytest.param(
            lambda good: json.dumps(
                {"session": {"id": "b", "schema_version": 1}, "log_gen": 0, "log_size": 0}
            ).encode(),
            id="session-missing-fields",
        ),
    ]


@pytest.mark.parametrize("make_bad", _bad_headers())
def test_corrupt_header_is_isolated_and_deletable(
    store: FileStore, directory: Path, make_bad: Any
) -> None:
    for session_id in ("a", "b", "c"):
        store.create(Session(id=session_id, history=_items(2)))
    header = directory / "b.json"
    header.write_bytes(make_bad(header.read_bytes()))

    with pytest.raises(tether.CorruptSession, match="'b'") as info:
        store.load("b")
    assert info.value.session_id == "b"
    assert sorted(h.id for h in store.list().sessions) == ["a", "c"]
    assert store.exists("b") is True
    assert _contents(store.load("a")) == _texts(_items(2))
    # create never overwrites a header it cannot read
    with pytest.raises(tether.CorruptSession):
        store.create(Session(id="b"))

    assert store.delete("b") is True
    assert not header.exists()
    assert not list(directory.glob("b.*.log"))
    assert store.exists("b") is False
    created = store.create(Session(id="b", history=_items(1, "fresh")))
    assert created.version == 1
    reloaded = store.load("b")
    assert (reloaded.version, _contents(reloaded)) == (1, _texts(_items(1, "fresh")))
    assert sorted(h.id for h in store.list().sessions) == ["a", "b", "c"]


def test_header_naming_another_session_is_corrupt(store: FileStore, directory: Path) -> None:
    store.create(Session(id="a", history=_items(1)))
    (directory / "x.json").write_bytes((directory / "a.json").read_bytes())

    with pytest.raises(tether.CorruptSession, match="'x'") as info:
        store.load("x")
    assert info.value.session_id == "x"
    assert "'a'" in str(info.value)
    # The stray copy is not listed as a second "a".
    assert [h.id for h in store.list().sessions] == ["a"]


# --- files on disk -------------------------------------------------------------------------------


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_delete_removes_header_and_logs_but_keeps_lock(store: FileStore, directory: Path) -> None:
    store.create(Session(id="a", history=_items(2)))
    store.replace_history("a", 1, _items(1, "compacted"))  # now generation 1
    (directory / "a.0.log").write_bytes(b"stale generation")  # left by an old crash
    # A session whose id starts with "a." must not be touched by deleting "a".
    store.create(Session(id="a.0", history=_items(1)))
    neighbour = ["a.0.0.log", "a.0.json", "a.0.lock"]
    assert _names(directory) == sorted(["a.0.log", "a.1.log", "a.json", "a.lock", *neighbour])

    assert store.delete("a") is True
    assert _names(directory) == sorted(["a.lock", *neighbour])
    assert store.load("a.0").version == 1
    assert store.delete("a") is False
    assert (directory / "a.lock").exists()


def test_file_layout_and_no_temp_files(store: FileStore, directory: Path) -> None:
    created = store.create(Session(id="s", history=_items(1)))
    version = store.commit("s", created.version, append=_items(1, "n"))
    assert _names(directory) == ["s.0.log", "s.json", "s.lock"]

    for index in range(60):
        version = store.commit(
            "s", version, append=_items(1, f"c{index}"), changes={"state": {"n": index}}
        )
    assert _names(directory) == ["s.0.log", "s.json", "s.lock"]
    assert not [name for name in os.listdir(directory) if name.startswith(".")]

    version = store.replace_history("s", version, _items(2, "compacted"))
    assert _names(directory) == ["s.1.log", "s.json", "s.lock"]
    assert _header_wrapper(directory, "s")["log_gen"] == 1
    loaded = store.load("s")
    assert _contents(loaded) == _texts(_items(2, "compacted"))
    assert store.commit("s", version, append=_items(1, "z")) == version + 1
    assert _names(directory) == ["s.1.log", "s.json", "s.lock"]


# --- locks ---------------------------------------------------------------------------------------


def test_lock_timeout(directory: Path) -> None:
    store = FileStore(directory, lock_timeout=0.2)
    store.create(Session(id="s"))
    lock = directory / "s.lock"

    with _held_lock(lock, fcntl.LOCK_EX):
        with pytest.raises(tether.LockTimeout, match="'s'") as info:
            store.commit("s", 1, append=_items(1))
        assert isinstance(info.value, tether.StoreError)
        with pytest.raises(tether.LockTimeout):
            store.load("s")  # a reader waits for a writer
    # Nothing was written while the lock was held.
    assert store.load("s").version == 1

    with _held_lock(lock, fcntl.LOCK_SH):
        assert store.load("s").version == 1  # readers share the lock
        with pytest.raises(tether.LockTimeout):
            store.commit("s", 1, append=_items(1))

    assert store.commit("s", 1, append=_items(1)) == 2
    assert _contents(store.load("s")) == _texts(_items(1))


# --- durability ----------------------------------------------------------------------------------


def test_commit_survives_the_process_being_killed(store: FileStore, directory: Path) -> None:
    store.create(Session(id="s", history=_items(1)))
    code = textwrap.dedent(
        f"""
        import os, signal
        from tether.stores.file import FileStore

        store = FileStore({str(directory)!r})
        version = 1
        for index in range(3):
            version = store.commit(
                "s", version,
                append=[{{"role": "user", "content": f"child {{index}}"}}],
                changes={{"state": {{"step": index}}}},
            )
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()

    loaded = store.load("s")
    assert loaded.version == 4
    assert loaded.state == {"step": 2}
    assert _contents(loaded)[1:] == ["child 0", "child 1", "child 2"]
    assert _seqs(loaded) == [1, 2, 3, 4]
    assert not [name for name in os.listdir(directory) if name.startswith(".")]


# --- options and URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_option(directory: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    store = FileStore(directory, fsync=fsync)
    assert store.fsync is fsync
    store.create(Session(id="s", history=_items(2)))
    assert store.commit("s", 1, append=_items(1, "n"), changes={"state": {"k": "v"}}) == 2
    loaded = FileStore(directory).load("s")
    assert _contents(loaded) == _texts(_items(2) + _items(1, "n"))
    assert loaded.state == {"k": "v"}
    assert bool(calls) is fsync


def test_from_url_relative_with_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore.from_url("file:relative/dir?fsync=false&lock_timeout=2")
    assert store.directory == Path("relative/dir")
    assert store.fsync is False
    assert store.lock_timeout == 2.0
    store.create(Session(id="s"))
    assert (tmp_path / "relative" / "dir" / "s.json").is_file()


def test_from_url_absolute(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "dir"
    url = f"file://{target}"
    assert url.startswith("file:///")
    store = FileStore.from_url(url)
    assert store.directory == target
    assert (store.fsync, store.lock_timeout) == (True, 10.0)
    store.create(Session(id="s"))
    assert (target / "s.json").is_file()
    assert isinstance(tether.open_store(url), FileStore)


def test_from_url_refuses_a_host() -> None:
    with pytest.raises(tether.ConfigurationError, match="otherhost"):
        FileStore.from_url("file://otherhost/x")


def test_from_url_refuses_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(tether.ConfigurationError, match="bogus") as info:
        FileStore.from_url(f"file://{tmp_path}?bogus=1")
    assert "fsync" in str(info.value)
    assert "lock_timeout" in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing was created


# --- async ---------------------------------------------------------------------------------------


async def test_async_file_store_runs_calls_off_the_event_loop(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AsyncFileStore(directory)
    threads: list[int] = []
    real_load = store.sync.load

    def recording_load(
        session_id: str, *, last: int | None = None, after: int | None = None
    ) -> Session:
        threads.append(threading.get_ident())
        return real_load(session_id, last=last, after=after)

    monkeypatch.setattr(store.sync, "load", recording_load)
    async with store:
        await store.create(Session(id="s", history=_items(2)))
        loaded = await store.load("s", last=1)
    assert _contents(loaded) == _texts(_items(2))[-1:]
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()  # this coroutine runs on the loop thread


# --- private files, planted links and FIFOs ----------------------------------------------------


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return path.lstat().st_mode & 0o777


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_files_and_directories_are_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    directory = tmp_path / "new" / "sessions"
    with _umask(mask):
        store = FileStore(directory)
        created = store.create(Session(history=_items(2)))
        lease = store.claim(created.id, "worker-1", 300)  # its token is in the header file
        store.replace_history(created.id, 1, _items(1), lease=lease)
        store.commit(created.id, 2, append=_items(1), lease=lease)
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(directory) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    assert names == [f"{created.id}.1.log", f"{created.id}.json", f"{created.id}.lock"]
    for path in directory.iterdir():
        assert _mode(path) == 0o600, path.name


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o750)
    directory.chmod(0o750)
    FileStore(directory).create(Session())
    assert _mode(directory) == 0o750


def test_a_planted_log_link_is_never_written_through(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (directory / "s1.0.log").symlink_to(victim)
    store.create(Session(id="s1", history=_items(3)))
    assert victim.read_text() == "precious"
    assert not (directory / "s1.0.log").is_symlink()
    assert _texts(store.load("s1").history) == _texts(_items(3))


@pytest.mark.parametrize("name", ["s1.json", "s1.lock"])
def test_a_planted_header_or_lock_link_is_refused(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    (directory / name).symlink_to(victim)
    for call in (
        lambda: store.create(Session(id="s1")),
        lambda: store.load("s1"),
        lambda: store.commit("s1", 1),
    ):
        with pytest.raises(tether.TetherError, match="symbolic link"):
            call()
    assert victim.read_text() == "precious"


def test_a_planted_log_link_of_a_stored_session_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    store.create(Session(id="s1", history=_items(2)))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (directory / "s1.0.log").unlink()
    (directory / "s1.0.log").symlink_to(victim)
    with pytest.raises(CorruptSession, match="symbolic link"):
        store.load("s1")
    with pytest.raises(tether.TetherError, match="symbolic link"):
        store.commit("s1", 1, append=_items(1))
    assert victim.read_text() == "precious"


def test_a_fifo_named_like_a_header_is_refused_at_once(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    store.create(Session(id="kept"))
    os.mkfifo(directory / "s1.json")
    result: list[BaseException | bool] = []

    def calls() -> None:
        try:
            with pytest.raises(CorruptSession, match="FIFO"):
                store.load("s1")
            with pytest.raises(CorruptSession, match="FIFO"):
                store.create(Session(id="s1"))
            assert [h.id for h in store.list().sessions] == ["kept"]  # skipped, not waited on
            result.append(True)
        except BaseException as exc:  # reported below
            result.append(exc)

    worker = threading.Thread(target=calls, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "a call blocked on the FIFO"
    assert result == [True], result
    assert store.delete("s1") is True  # deleting is how a corrupt session is cleared
    assert not (directory / "s1.json").exists()


def test_a_refused_create_leaves_no_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "sessions"
    store = FileStore(directory)
    store.create(Session(id="taken", history=_items(1)))
    with pytest.raises(tether.SessionExists):
        store.create(Session(id="taken", history=_items(5)))

    def disk_full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the header cannot be written
    with pytest.raises(tether.StoreError, match="No space left"):
        store.create(Session(id="s1", history=_items(3)))
    with pytest.raises(tether.StoreError, match="No space left"):
        store.replace_history("taken", 1, _items(2))
    monkeypatch.undo()
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["s1.lock", "taken.0.log", "taken.json", "taken.lock"]
    assert not store.exists("s1")


# --- driver errors: an OSError never escapes ---------------------------------------------------


def test_os_errors_become_store_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk or a permission denied is a StoreError with the OSError as __cause__, as
    docs/errors.md promises, from every call; the session is left as it was."""
    store = FileStore(tmp_path / "sessions")
    created = store.create(Session(id="s1", history=_items(2)))
    lease = store.claim("s1", "w", 60)
    store.release(lease)
    full = OSError(28, "No space left on device")

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise full

    monkeypatch.setattr(os, "replace", disk_full)  # no header can be written
    writes: list[Any] = [
        lambda: store.create(Session(id="s2")),
        lambda: store.commit("s1", 1, append=_items(1), changes={"state": {"k": 1}}),
        lambda: store.replace_history("s1", 1, _items(1)),
        lambda: store.claim("s1", "w", 60),
        lambda: store.restore(store.load("s1"), replace=True),
    ]
    for write in writes:
        with pytest.raises(tether.StoreError, match="No space left") as info:
            write()
        assert info.value.__cause__ is full
    monkeypatch.undo()
    assert store.load("s1") == created.model_copy(update={"lease_owner": "w", "lease_fence": 1})
    assert not store.exists("s2")

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", denied)
    for call in (store.list, store.purge_expired):
        with pytest.raises(tether.StoreError, match="Permission denied") as caught:
            call()
        assert isinstance(caught.value.__cause__, PermissionError)
    monkeypatch.undo()
    assert [h.id for h in store.list().sessions] == [created.id]


async def test_os_errors_become_store_errors_async(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AsyncFileStore(tmp_path / "sessions")
    await store.create(Session(id="s1"))

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(tether.StoreError, match="No space left") as info:
        await store.commit("s1", 1, append=_items(1))
    assert isinstance(info.value.__cause__, OSError)
