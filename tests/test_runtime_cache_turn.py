"""A cached turn puts the session its commit saved in the cache itself: the cache keeps its
size, and a refresh that finds nothing new (or only a claim) serves what the store holds."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether import AppendMessages
from tether.stores.sqlite import SQLiteStore

USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize("size", [1, 2])
def test_a_committed_turn_keeps_the_cache_within_its_size(tmp_path: Path, size: int) -> None:
    store = SQLiteStore(tmp_path / "cache.db")
    sessions = tether.Sessions(store, cache_size=size)
    ids = [sessions.create().id for _ in range(3)]
    for turn in range(3):
        for sid in ids:
            sessions.get(sid)
            saved = sessions.execute(sid, AppendMessages(USER))
            assert len(saved.history) == turn + 1
            assert len(sessions._cache._entries) <= size
            assert list(sessions._cache._entries)[-1] == sid  # the newest entry is the turn's
            assert sessions._cache._entries[sid].version == saved.version  # put by the commit
    for sid in ids:
        assert sessions.get(sid).history == store.load(sid).history


def test_a_refresh_sees_a_claim_made_elsewhere(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "claim.db")
    sessions = tether.Sessions(store)
    sid = sessions.create().id
    held = sessions.get(sid)
    assert held.lease_owner is None
    lease = store.claim(sid, "elsewhere", 60)
    again = sessions.get(sid)
    assert again.lease_owner == "elsewhere"
    assert again.lease_fence == lease.fence
    assert again.version == held.version
    store.release(lease)
    assert sessions.get(sid).lease_expires_at is None
