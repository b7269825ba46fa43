"""The LangGraph saver's operations on whole threads: ``prune``, ``delete_for_runs`` (a read and
a versioned ``replace_history``), ``copy_thread`` (tether's fork) and
``get_delta_channel_history`` (the walk up the parent chain). Split from
:mod:`tether.integrations._langgraph_saver`, whose :class:`SaverBase` calls them."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
)

from ..errors import ConflictError, SessionNotFound
from ..ids import external_id_metadata
from ..models import KeyedItem, Lease, Session, StoredItem
from ..stores.abilities import AsyncForksInStore, ForksInStore
from . import _langgraph_core as core
from ._langgraph_core import AGENT, BLOB, CHECKPOINT, LATE, MARK, WRITE, ThreadStore, key
from ._langgraph_values import base_of

if TYPE_CHECKING:
    from ._langgraph_saver import SaverBase

_KEYED_WALK = 16  # delta history: ancestors read by key before one read of the thread

LEASES: contextvars.ContextVar[dict[str, Lease] | None] = contextvars.ContextVar(
    "tether_langgraph_leases", default=None
)
"""The leases of the threads this context owns (``owning``): every write to them carries it."""


class Thread:
    """A thread's items, indexed once (list, prune, delete_for_runs, delta history)."""

    def __init__(self, items: Sequence[StoredItem]) -> None:
        self.items = list(items)
        self.checkpoints: dict[tuple[str, str], StoredItem] = {}
        self.writes: dict[tuple[str, str], list[StoredItem]] = {}
        self.blobs: dict[str, StoredItem] = {}
        for stored in self.items:
            kind = stored.item.get("type")
            if kind == CHECKPOINT:
                at = (stored.item["ns"], stored.item["id"])
                prev = self.checkpoints.get(at)
                if prev is None or stored.item.get("rev", 0) >= prev.item.get("rev", 0):
                    self.checkpoints[at] = stored
            elif kind == WRITE:
                self.writes.setdefault((stored.item["ns"], stored.item["checkpoint"]), []).append(
                    stored
                )
            elif kind == BLOB and stored.key is not None:
                self.blobs[stored.key] = stored


async def rewrite(saver: SaverBase, thread_id: str, keep: Any) -> None:
    """Replace the thread's items by those ``keep(thread)`` returns (compare-and-replace)."""
    store = saver._threads.store
    sid = core.session_id(thread_id)
    while True:
        try:
            header = await store.load(sid, last=0)
        except SessionNotFound:
            return
        thread = Thread(await saver._threads.items(thread_id))
        if thread.items and thread.items[-1].seq != header.last_seq:
            continue  # written meanwhile
        kept: list[StoredItem] = keep(thread)
        heads: dict[str, str] = {}
        for stored in kept:
            if stored.item.get("type") == CHECKPOINT:
                ns, cid = stored.item["ns"], stored.item["id"]
                heads[ns] = max(heads.get(ns, cid), cid)
        # the order flags stay: a rewrite keeps the items' order
        state = {**header.state, core.STATE_KEY: {**core.state_of(header), "heads": heads}}
        items = [KeyedItem(s.key, s.item) if s.key else dict(s.item) for s in kept]
        try:
            await store.replace_history(
                sid, header.version, items, changes={"state": state}, lease=lease_of(thread_id)
            )
            saver._threads.forget(thread_id)  # its cached header and snapshots are gone
            return
        except ConflictError:
            continue


async def delete_for_runs(saver: SaverBase, run_ids: Sequence[str]) -> None:
    runs = {str(r) for r in run_ids}

    def keep(thread: Thread) -> list[StoredItem]:
        gone = {at for at, s in thread.checkpoints.items() if s.item.get("run_id") in runs}
        return [s for s in thread.items if at_of(s) not in gone]

    for thread_id in await saver._thread_ids(None):
        await rewrite(saver, thread_id, keep)


async def prune(saver: SaverBase, thread_ids: Sequence[str], strategy: str) -> None:
    if strategy == "delete":
        for thread_id in thread_ids:
            await saver._threads.delete(str(thread_id))
        return
    if strategy != "keep_latest":
        raise ValueError(f"unknown prune strategy {strategy!r}: 'keep_latest' or 'delete'")

    def keep(thread: Thread) -> list[StoredItem]:
        latest: dict[str, str] = {}
        for ns, cid in thread.checkpoints:
            latest[ns] = max(latest.get(ns, cid), cid)
        kept_at = set(latest.items())
        needed: set[str] = set()
        for at in kept_at:
            stored = thread.checkpoints[at]
            versions = saver._value(stored.item["checkpoint"])["channel_versions"]
            needed.update(key("b", at[0], ch, str(v)) for ch, v in versions.items())
        needed.update(bases(thread.blobs[k] for k in needed if k in thread.blobs))
        out = []
        for s in thread.items:
            owner = at_of(s)
            if owner is not None and owner in kept_at:
                if s.item.get("type") != CHECKPOINT or s is thread.checkpoints[owner]:
                    out.append(s)
            elif s.item.get("type") == BLOB and s.key in needed:
                out.append(s)
        return out

    for thread_id in thread_ids:
        await rewrite(saver, str(thread_id), keep)


async def copy_thread(threads: ThreadStore, source: str, target: str) -> None:
    """Tether's fork: the target starts with the source's items (shared where the store
    can, copied with their keys elsewhere) and its heads."""
    store = threads.store
    try:
        src = await store.load(core.session_id(source), last=0)
    except SessionNotFound:
        return
    tid = core.session_id(target)
    threads.forget(target)
    with contextlib.suppress(SessionNotFound):
        await store.delete(tid)
    child = Session(
        id=tid,
        agent=AGENT,
        metadata=external_id_metadata(str(target)),
        state=src.state,
        parent_id=src.id,
        fork_seq=src.last_seq,
    )
    # a sync store (through Direct) or an async one: shares the rows where it can fork
    inner = store.sync if isinstance(store, core.Direct) else store
    if isinstance(inner, (ForksInStore, AsyncForksInStore)) and src.last_seq >= src.first_seq:
        with contextlib.suppress(NotImplementedError):
            await store.fork_session(child, src.last_seq)
            return
    items = await threads.items(source)
    created = await store.create(child.model_copy(update={"parent_id": None, "fork_seq": None}))
    copied = [KeyedItem(s.key, s.item) if s.key else dict(s.item) for s in items]
    await store.commit(tid, created.version, append=copied)


async def delta_history(
    saver: SaverBase, config: RunnableConfig, channels: Sequence[str]
) -> Mapping[str, DeltaChannelHistory]:
    """The default's walk up the parent chain: the first steps by keyed reads (a channel
    is nearly always seeded within a few), the rest over one read of the thread."""
    if not channels:
        return {}
    thread_id, ns = thread_of(config)
    collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
    seeds: dict[str, Any] = {}
    remaining = set(channels)
    target = await saver._get_tuple(config)
    parent = target.parent_config if target is not None else None
    cursor = get_checkpoint_id(parent) if parent is not None else None
    thread: Thread | None = None
    steps = 0
    while cursor is not None and remaining:
        tup: CheckpointTuple | None
        if steps < _KEYED_WALK:
            steps += 1
            tup = await saver._get_tuple(config_of(thread_id, ns, cursor))
        else:
            if thread is None:
                thread = Thread(await saver._threads.items(thread_id))
            stored = thread.checkpoints.get((ns, cursor))
            writes = thread.writes.get((ns, cursor), [])
            tup = None if stored is None else saver._tuple(thread_id, stored, thread.blobs, writes)
        if tup is None:
            break
        for write in reversed(tup.pending_writes or []):
            if write[1] in remaining:
                collected[write[1]].append(write)
        for ch in list(remaining):
            if ch in tup.checkpoint["channel_values"]:
                seeds[ch] = tup.checkpoint["channel_values"][ch]
                remaining.discard(ch)
        parent = tup.parent_config
        cursor = get_checkpoint_id(parent) if parent is not None else None
    result: dict[str, DeltaChannelHistory] = {}
    for ch in channels:
        entry: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
        if ch in seeds:
            entry["seed"] = seeds[ch]
        result[ch] = entry
    return result


def bases(blobs: Iterable[StoredItem]) -> set[str]:
    """The snapshot keys the deltas among ``blobs`` extend."""
    return {b for s in blobs if (b := base_of(s.item["value"])) is not None}


def thread_of(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable", {})
    if "thread_id" not in configurable:
        raise ValueError(
            "a LangGraph config for a checkpointer needs configurable.thread_id: "
            'graph.invoke(..., {"configurable": {"thread_id": "..."}})'
        )
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


def config_of(thread_id: str, ns: str, cid: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}


def at_of(stored: StoredItem) -> tuple[str, str] | None:
    kind = stored.item.get("type")
    if kind == CHECKPOINT:
        return (stored.item["ns"], stored.item["id"])
    if kind in (WRITE, MARK, LATE):
        return (stored.item["ns"], stored.item["checkpoint"])
    return None


def lease_of(thread_id: str) -> Lease | None:
    return (LEASES.get() or {}).get(thread_id)
