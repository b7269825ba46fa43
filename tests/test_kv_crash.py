"""A writer killed at every step of a write leaves the session whole.

The kit writes a commit as: seal committed items into a chunk, write the new tail under a fresh
key (values over the size limit in parts, parts first), compare-and-set the header, then delete
the old tail. These tests stop the writer before each of those key writes in turn, and check
that a fresh store sees the last acknowledged version exactly (or the new one exactly, when
only the clean-up after the header was lost), that writing goes on, and that
``collect_garbage`` removes every key the dead writer left.

In-process (the dict backend) the writer is stopped by an exception no code catches; against
NATS the writer is a real OS process that exits on the spot (``os._exit``) at that step.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tether
from tether.stores import _kv_common as kv
from tether.stores.kv_memory import DictKVBackend, DictKVStore
from tether.stores.kv_sync import KVBackend, KVStore
from tether.testing import FakeClock

from .conftest import delete_nats_bucket, require_module, require_server

CHUNK = 4
BIG = "b" * 3000  # over the backend's value size below: written in parts


class Killed(BaseException):
    """The writer died here (a BaseException: no ``except Exception`` clean-up runs)."""


class DyingBackend(KVBackend):
    """Passes calls through, and dies just before the ``at``-th write (put or delete)."""

    def __init__(self, inner: KVBackend, at: int | None, die: Callable[[], None]) -> None:
        self.inner, self.at, self.die, self.writes = inner, at, die, 0
        self.max_value_size = inner.max_value_size

    def _step(self) -> None:
        if self.writes == self.at:
            self.die()
        self.writes += 1

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def put(self, key: str, value: bytes, revision: Any) -> Any:
        self._step()
        return self.inner.put(key, value, revision)

    def delete(self, key: str, revision: Any) -> bool:
        self._step()
        return self.inner.delete(key, revision)

    def keys(self, prefix: str) -> list[str]:
        return self.inner.keys(prefix)


def _raise() -> None:
    raise Killed


def _setup(store: KVStore) -> str:
    """A session whose next commit seals a chunk, splits a value and replaces a tail."""
    created = store.create(tether.Session(history=[{"role": "user", "content": "a"}] * 3))
    store.commit(created.id, 1, append=[{"role": "user", "content": "b"}] * 2)
    return created.id


def _write(store: KVStore, session_id: str, op: str) -> None:
    items = [{"role": "tool", "content": BIG}, {"role": "user", "content": "c"}]
    if op == "commit":
        store.commit(session_id, 2, append=items, changes={"state": {"n": 1}})
    else:
        store.replace_history(session_id, 2, items)


def _unreferenced(backend: KVBackend) -> list[str]:
    store = KVStore(backend, chunk_items=CHUNK)
    heads = {kv.encode_id(head.doc["id"]): head for head in store._heads()}
    left = []
    for key in backend.keys(kv.CHUNK_PREFIX) + backend.keys(kv.TAIL_PREFIX):
        kind, enc, gen, name = kv.parse_data_key(key) or ("?", "", "", "")
        head = heads.get(enc)
        live = head is not None and head.gen == gen
        if not live or (kind == "t" and head is not None and head.tail != name):
            left.append(key)
        elif kind == "c" and head is not None and int(name) >= head.sealed:
            left.append(key)  # sealed ahead: harmless, but not what a finished write leaves
    return left


def _check_after_death(backend: KVBackend, session_id: str, before: tether.Session) -> None:
    clock = FakeClock()
    fresh = KVStore(backend, clock=clock, chunk_items=CHUNK)  # no cache from the dead writer
    loaded = fresh.load(session_id)
    if loaded.version == before.version:
        assert loaded == before, "the last acknowledged version changed"
    else:  # the header went through; only the clean-up after it was lost
        assert loaded.version == before.version + 1
        assert loaded.history[-2:][0]["content"] == BIG
        assert loaded.history[-1]["content"] == "c"
        assert [i["seq"] for i in loaded.history] == list(
            range(loaded.first_seq, loaded.last_seq + 1)
        )
    # writing goes on from what is there, and the dead writer's keys are collected
    fresh.commit(session_id, loaded.version, append=[{"role": "user", "content": "after"}])
    again = fresh.load(session_id)
    assert again.history[:-1] == loaded.history
    assert again.history[-1]["content"] == "after"
    clock.advance(7200)
    fresh.collect_garbage(older_than=3600)
    assert _unreferenced(backend) == []
    assert fresh.load(session_id) == again


def _steps(op: str) -> int:
    counting = DyingBackend(DictKVBackend(max_value_size=1024), None, _raise)
    store = KVStore(counting, chunk_items=CHUNK)
    session_id = _setup(store)
    counting.writes = 0
    _write(store, session_id, op)
    return counting.writes


@pytest.mark.parametrize("op", ["commit", "replace_history"])
def test_a_writer_killed_at_any_step_loses_nothing(op: str) -> None:
    steps = _steps(op)
    assert steps >= 5, steps  # chunk, parts, tail, header, old tail: every step is visited
    for at in range(steps + 1):
        backend = DictKVBackend(max_value_size=1024)
        store = DictKVStore(backend, chunk_items=CHUNK)
        session_id = _setup(store)
        before = store.load(session_id)
        store.backend = DyingBackend(backend, at, _raise)
        if at < steps:
            with pytest.raises(Killed):
                _write(store, session_id, op)
        else:
            _write(store, session_id, op)
        _check_after_death(backend, session_id, before)


# --- a real process, killed, against NATS ------------------------------------------------------


def _die_at(url: str, session_id: str, at: int) -> None:
    """In a child process: commit, and exit on the spot just before write number ``at``."""
    store = tether.open_store(url)
    assert isinstance(store, KVStore)
    store.backend = DyingBackend(store.backend, at, lambda: os._exit(17))
    _write(store, session_id, "commit")
    os._exit(0)


@pytest.fixture
def nats_url() -> Iterator[str]:
    require_module("nats", "nats")
    server = require_server("nats")
    bucket = f"tether_t{secrets.token_hex(6)}"
    yield f"{server}/{bucket}?chunk_items={CHUNK}"
    delete_nats_bucket(server, bucket)


@pytest.mark.heavy
def test_a_killed_nats_writer_process_loses_nothing(nats_url: str) -> None:
    with tether.open_store(nats_url) as store:
        assert isinstance(store, KVStore)
        counting = DyingBackend(store.backend, None, _raise)
        store.backend = counting
        session_id = _setup(store)
        counting.writes = 0
        _write(store, session_id, "commit")
        steps = counting.writes
    assert steps >= 4, steps  # chunk, tail, header, old tail
    ctx = multiprocessing.get_context("spawn")
    for at in range(steps + 1):
        with tether.open_store(nats_url) as store:
            assert isinstance(store, KVStore)
            session_id = _setup(store)
            before = store.load(session_id)
            child = ctx.Process(target=_die_at, args=(nats_url, session_id, at))
            child.start()
            child.join(timeout=60)
            assert child.exitcode == (17 if at < steps else 0), (at, child.exitcode)
            _check_after_death(store.backend, session_id, before)
