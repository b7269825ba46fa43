"""LangGraph checkpoints in tether: :class:`TetherSaver` (sync) and :class:`AsyncTetherSaver`.

``pip install 'tether[langgraph]'``. A drop-in for ``SqliteSaver`` / ``PostgresSaver``::

    saver = TetherSaver(tether.open_store("sqlite:///app.db"))
    graph = builder.compile(checkpointer=saver)

One tether session per thread (see :mod:`tether.integrations._langgraph_core` for the layout
and ``docs/integrations/langgraph.md`` for the costs). Values go through the saver's ``serde``
(LangGraph's msgpack serializer by default), never pickle.

Ownership (``ownership=True``): a checkpoint whose parent is no longer the thread's head is
refused (:class:`~tether.errors.ConflictError`) by the same versioned write that would store
it, and :meth:`TetherSaver.owning` claims the thread for one invocation, so a second
concurrent invocation fails at its first write with :class:`~tether.errors.AlreadyClaimed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from ..errors import ConflictError, InvalidRequest, SessionNotFound
from ..ids import decode_external_id, external_id_metadata
from ..models import KeyedItem, Lease, Session, StoredItem
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore
from . import _langgraph_core as core
from ._langgraph_core import BLOB, CHECKPOINT, MARK, WRITE, Direct, ThreadStore, key, pack, unpack

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        DeltaChannelHistory,
        PendingWrite,
        get_checkpoint_id,
        get_serializable_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"tether.integrations.langgraph needs LangGraph ({exc}): pip install 'tether[langgraph]'"
    ) from exc

__all__ = ["AGENT", "AsyncTetherSaver", "TetherSaver"]

_T = TypeVar("_T")
AGENT = core.AGENT
"""The ``agent`` of every session that holds a LangGraph thread."""

_LEASES: contextvars.ContextVar[dict[str, Lease] | None] = contextvars.ContextVar(
    "tether_langgraph_leases", default=None
)


class _Thread:
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


class _Base(BaseCheckpointSaver[str]):
    def __init__(
        self, threads: ThreadStore, *, serde: SerializerProtocol | None, ownership: bool
    ) -> None:
        super().__init__(serde=serde)
        self._threads = threads
        self.ownership = ownership

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions with a random tail, as LangGraph's own savers make them: a fork (time
        travel) reaches the same counter as the timeline it left, and a channel value is
        stored once per (channel, version), so the two must never share a version."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # --- encoding ----------------------------------------------------------------------------

    def _typed(self, value: Any) -> list[str]:
        return pack(self.serde.dumps_typed(value))

    def _value(self, packed: Sequence[str]) -> Any:
        return self.serde.loads_typed(unpack(packed))

    def _tuple(
        self,
        thread_id: str,
        stored: StoredItem,
        blobs: Mapping[str, StoredItem],
        writes: Sequence[StoredItem],
    ) -> CheckpointTuple:
        item = stored.item
        ns, cid = item["ns"], item["id"]
        checkpoint: Checkpoint = self._value(item["checkpoint"])
        values: dict[str, Any] = {}
        for channel, version in checkpoint["channel_versions"].items():
            blob = blobs.get(key("b", ns, channel, str(version)))
            if blob is not None and blob.item["value"][0] != "empty":
                values[channel] = self._value(blob.item["value"])
        checkpoint = {**checkpoint, "channel_values": values}
        latest: dict[tuple[str, int], StoredItem] = {}
        for write in writes:  # oldest first: the newest upsert of a special write wins
            latest[(write.item["task_id"], write.item["idx"])] = write
        ordered = sorted(
            latest.values(),
            key=lambda w: writes_sort_key(w.item["task_path"], w.item["task_id"], w.item["idx"]),
        )
        parent = item.get("parent")
        return CheckpointTuple(
            config=_config(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=self._value(item["metadata"]),
            parent_config=_config(thread_id, ns, parent) if parent else None,
            pending_writes=[
                (w.item["task_id"], w.item["channel"], self._value(w.item["value"]))
                for w in ordered
            ],
        )

    # --- the operations, once, async ---------------------------------------------------------

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _thread(config)
        cid = get_checkpoint_id(config)
        if cid is None:
            header = await self._threads.header(thread_id)
            if header is None:
                return None
            cid = core.heads_of(header).get(ns)
            if cid is None:
                return None
        first, mark = key("c", ns, cid), key("f", ns, cid)
        found = await self._threads.by_key(thread_id, [first, key("c", ns, cid, 1), mark])
        if first not in found:
            return None
        rev, newest = 1, found[first]
        while key("c", ns, cid, rev) in found:  # the same checkpoint put again
            newest = found[key("c", ns, cid, rev)]
            rev += 1
            found.update(await self._threads.by_key(thread_id, [key("c", ns, cid, rev)]))
        checkpoint = self._value(newest.item["checkpoint"])
        blob_keys = [key("b", ns, ch, str(v)) for ch, v in checkpoint["channel_versions"].items()]
        blobs = await self._threads.by_key(thread_id, blob_keys)
        writes: list[StoredItem] = []
        if mark in found:  # only a checkpoint with writes reads items, from the first of them
            start = min(found[first].seq, found[mark].seq)
            writes = [
                s
                for s in await self._threads.items(thread_id, after=start - 1)
                if s.item.get("type") == WRITE
                and s.item["ns"] == ns
                and s.item["checkpoint"] == cid
            ]
        return self._tuple(thread_id, newest, blobs, writes)

    async def _thread_ids(self, config: RunnableConfig | None) -> list[str]:
        if config is not None:
            return [_thread(config)[0]]
        ids: list[str] = []
        cursor: str | None = None
        while True:  # pages of headers (list, not iter_sessions: the sync saver's Direct)
            page = await self._threads.store.list(agent=AGENT, limit=1000, cursor=cursor)
            ids.extend(decode_external_id(h.id, h.metadata) for h in page.sessions)
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        configurable = (config or {}).get("configurable", {})
        ns_filter = configurable.get("checkpoint_ns")
        id_filter = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        out: list[CheckpointTuple] = []
        for thread_id in await self._thread_ids(config):
            thread = _Thread(await self._threads.items(thread_id))
            chosen = sorted(thread.checkpoints.items(), key=lambda kv: kv[0][1], reverse=True)
            for (ns, cid), stored in chosen:
                if limit is not None and len(out) >= limit:
                    return out
                if ns_filter is not None and ns != ns_filter:
                    continue
                if id_filter is not None and cid != id_filter:
                    continue
                if before_id is not None and cid >= before_id:
                    continue
                tup = self._tuple(thread_id, stored, thread.blobs, thread.writes.get((ns, cid), []))
                if filter and not all(tup.metadata.get(k) == v for k, v in filter.items()):
                    continue
                out.append(tup)
        return out

    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _thread(config)
        values = checkpoint.get("channel_values", {})
        bare = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        bare["channel_values"] = {}
        blobs: dict[str, dict[str, Any]] = {}
        for channel, version in new_versions.items():
            value = self._typed(values[channel]) if channel in values else pack(("empty", b""))
            blobs[key("b", ns, channel, str(version))] = {
                "type": BLOB,
                "ns": ns,
                "channel": channel,
                "version": str(version),
                "value": value,
            }
        meta = get_serializable_checkpoint_metadata(config, metadata)
        item = {
            "type": CHECKPOINT,
            "ns": ns,
            "id": checkpoint["id"],
            "parent": get_checkpoint_id(config),
            "run_id": str(meta.get("run_id")) if meta.get("run_id") is not None else None,
            "checkpoint": self._typed(bare),
            "metadata": self._typed(meta),
        }
        await self._threads.put(
            thread_id,
            ns,
            checkpoint["id"],
            get_checkpoint_id(config),
            item,
            blobs,
            expect_parent=self.ownership,
            lease=_lease(thread_id),
        )
        return _config(thread_id, ns, checkpoint["id"])

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        if not writes:
            return
        thread_id, ns = _thread(config)
        cid = config["configurable"]["checkpoint_id"]
        prepared: list[tuple[str, dict[str, Any]]] = []
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            item = {
                "type": WRITE,
                "ns": ns,
                "checkpoint": cid,
                "task_id": task_id,
                "task_path": task_path,
                "idx": idx,
                "channel": channel,
                "value": self._typed(value),
            }
            prepared.append((key("w", ns, cid, task_id, idx) if idx >= 0 else "", item))
        await self._threads.put_writes(thread_id, ns, cid, prepared, lease=_lease(thread_id))

    async def _rewrite(self, thread_id: str, keep: Any) -> None:
        """Replace the thread's items by those ``keep(thread)`` returns (compare-and-replace)."""
        store = self._threads.store
        sid = core.session_id(thread_id)
        while True:
            try:
                header = await store.load(sid, last=0)
            except SessionNotFound:
                return
            thread = _Thread(await self._threads.items(thread_id))
            if thread.items and thread.items[-1].seq != header.last_seq:
                continue  # written meanwhile
            kept: list[StoredItem] = keep(thread)
            heads: dict[str, str] = {}
            for stored in kept:
                if stored.item.get("type") == CHECKPOINT:
                    ns, cid = stored.item["ns"], stored.item["id"]
                    heads[ns] = max(heads.get(ns, cid), cid)
            state = {**header.state, core.STATE_KEY: {"heads": heads}}
            items = [KeyedItem(s.key, s.item) if s.key else dict(s.item) for s in kept]
            try:
                await store.replace_history(
                    sid, header.version, items, changes={"state": state}, lease=_lease(thread_id)
                )
                return
            except ConflictError:
                continue

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = {str(r) for r in run_ids}

        def keep(thread: _Thread) -> list[StoredItem]:
            gone = {at for at, s in thread.checkpoints.items() if s.item.get("run_id") in runs}
            return [s for s in thread.items if _at(s) not in gone]

        for thread_id in await self._thread_ids(None):
            await self._rewrite(thread_id, keep)

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy == "delete":
            for thread_id in thread_ids:
                await self._threads.delete(str(thread_id))
            return
        if strategy != "keep_latest":
            raise ValueError(f"unknown prune strategy {strategy!r}: 'keep_latest' or 'delete'")

        def keep(thread: _Thread) -> list[StoredItem]:
            latest: dict[str, str] = {}
            for ns, cid in thread.checkpoints:
                latest[ns] = max(latest.get(ns, cid), cid)
            kept_at = set(latest.items())
            needed: set[str] = set()
            for at in kept_at:
                stored = thread.checkpoints[at]
                versions = self._value(stored.item["checkpoint"])["channel_versions"]
                needed.update(key("b", at[0], ch, str(v)) for ch, v in versions.items())
            out = []
            for s in thread.items:
                owner = _at(s)
                if owner is not None and owner in kept_at:
                    if s.item.get("type") != CHECKPOINT or s is thread.checkpoints[owner]:
                        out.append(s)
                elif s.item.get("type") == BLOB and s.key in needed:
                    out.append(s)
            return out

        for thread_id in thread_ids:
            await self._rewrite(str(thread_id), keep)

    async def _copy_thread(self, source: str, target: str) -> None:
        """Tether's fork: the target starts with the source's items (shared where the store
        can, copied with their keys elsewhere) and its heads."""
        store = self._threads.store
        try:
            src = await store.load(core.session_id(source), last=0)
        except SessionNotFound:
            return
        tid = core.session_id(target)
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
        fork = getattr(store, "fork_session", None)
        if fork is not None and src.last_seq >= src.first_seq:
            with contextlib.suppress(NotImplementedError):
                await fork(child, src.last_seq)
                return
        items = await self._threads.items(source)
        created = await store.create(child.model_copy(update={"parent_id": None, "fork_seq": None}))
        copied = [KeyedItem(s.key, s.item) if s.key else dict(s.item) for s in items]
        await store.commit(tid, created.version, append=copied)

    async def _delta(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The default's walk up the parent chain, over one read of the thread."""
        if not channels:
            return {}
        thread_id, ns = _thread(config)
        thread = _Thread(await self._threads.items(thread_id))
        cid = get_checkpoint_id(config)
        if cid is None:
            header = await self._threads.header(thread_id)
            cid = core.heads_of(header).get(ns) if header is not None else None
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        target = thread.checkpoints.get((ns, cid)) if cid else None
        cursor = target.item.get("parent") if target is not None else None
        while cursor is not None and remaining:
            stored = thread.checkpoints.get((ns, cursor))
            if stored is None:
                break
            tup = self._tuple(thread_id, stored, thread.blobs, thread.writes.get((ns, cursor), []))
            for write in reversed(tup.pending_writes or []):
                if write[1] in remaining:
                    collected[write[1]].append(write)
            for ch in list(remaining):
                if ch in tup.checkpoint["channel_values"]:
                    seeds[ch] = tup.checkpoint["channel_values"][ch]
                    remaining.discard(ch)
            cursor = stored.item.get("parent")
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result


class AsyncTetherSaver(_Base):
    """A LangGraph checkpointer on any tether store, for ``ainvoke`` / ``astream``.

    ``store``: an async store (``tether.open_async_store(url)``), or a sync one (its calls
    then run in a worker thread). Not closed by the saver.
    """

    def __init__(
        self,
        store: AsyncStore | Store,
        *,
        serde: SerializerProtocol | None = None,
        ownership: bool = False,
    ) -> None:
        async_store = store if isinstance(store, AsyncStore) else SyncBackedAsyncStore(store)
        super().__init__(ThreadStore(async_store), serde=serde, ownership=ownership)
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._loop = asyncio.get_running_loop()
        return await self._get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for tup in await self._list(config, filter, before, limit):
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._loop = asyncio.get_running_loop()
        return await self._put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._threads.delete(str(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._copy_thread(str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._prune(thread_ids, strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._delta(config, channels)

    # --- the sync methods, for sync code run beside an async graph (a sync node's
    # get_state, a sync subgraph): over a sync store they run its calls directly; over a
    # native async store they run on the loop the saver was used from, never on this thread.

    def _blocking(self, make: Callable[[_Base], Coroutine[Any, Any, _T]]) -> _T:
        inner = getattr(self._threads.store, "sync", None)
        if isinstance(inner, Store):
            shadow = copy.copy(self)
            shadow._threads = ThreadStore(Direct(inner))
            return core.run_sync(make(shadow))
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is None or loop is running or not loop.is_running():
            raise InvalidRequest(
                "AsyncTetherSaver over an async store was called synchronously from its own "
                "event loop (or before any async call): use ainvoke / aget_state, or "
                "TetherSaver with tether.open_store(url) for sync graphs"
            )
        return asyncio.run_coroutine_threadsafe(make(self), loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking(lambda saver: saver._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._blocking(lambda saver: saver._list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking(lambda saver: saver._put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking(lambda saver: saver._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking(lambda saver: saver._threads.delete(str(thread_id)))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._blocking(lambda saver: saver._delta(config, channels))

    @contextlib.asynccontextmanager
    async def owning(
        self, thread_id: str, *, owner: str = "langgraph", ttl: float | timedelta = 300
    ) -> AsyncIterator[Lease]:
        """Claim the thread for one invocation: see :meth:`TetherSaver.owning`."""
        await self._threads.ensure(str(thread_id))
        lease = await self._threads.store.claim(core.session_id(str(thread_id)), owner, ttl)
        token = _LEASES.set({**(_LEASES.get() or {}), str(thread_id): lease})
        try:
            yield lease
        finally:
            _LEASES.reset(token)
            with contextlib.suppress(Exception):
                await self._threads.store.release(lease)


class TetherSaver(_Base):
    """A LangGraph checkpointer on any sync tether store (``tether.open_store(url)``).

    Sync calls run the saver's code directly on the store; the async ones run them in a
    worker thread. The store is not closed by the saver.
    """

    def __init__(
        self, store: Store, *, serde: SerializerProtocol | None = None, ownership: bool = False
    ) -> None:
        super().__init__(ThreadStore(Direct(store)), serde=serde, ownership=ownership)
        self.store = store

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        tup: CheckpointTuple | None = core.run_sync(self._get_tuple(config))
        return tup

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from core.run_sync(self._list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored: RunnableConfig = core.run_sync(
            self._put(config, checkpoint, metadata, new_versions)
        )
        return stored

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        core.run_sync(self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        core.run_sync(self._threads.delete(str(thread_id)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        core.run_sync(self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        core.run_sync(self._copy_thread(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        core.run_sync(self._prune(thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        history: Mapping[str, DeltaChannelHistory] = core.run_sync(self._delta(config, channels))
        return history

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await _off(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        page = await _off(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for tup in page:
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await _off(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await _off(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await _off(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await _off(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await _off(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await _off(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await _off(lambda: self.get_delta_channel_history(config=config, channels=channels))

    @contextlib.contextmanager
    def owning(
        self, thread_id: str, *, owner: str = "langgraph", ttl: float | timedelta = 300
    ) -> Iterator[Lease]:
        """Claim the thread for one invocation (``with saver.owning(tid): graph.invoke(...)``).

        The saver's writes for this thread inside the block carry the lease; any other write
        to the thread meanwhile (a second invocation) fails at once with
        :class:`~tether.errors.AlreadyClaimed`, and a second ``owning`` on it too. Released
        at the end of the block; a crashed holder's claim ends after ``ttl`` seconds.
        """
        core.run_sync(self._threads.ensure(str(thread_id)))
        lease = self.store.claim(core.session_id(str(thread_id)), owner, ttl)
        token = _LEASES.set({**(_LEASES.get() or {}), str(thread_id): lease})
        try:
            yield lease
        finally:
            _LEASES.reset(token)
            with contextlib.suppress(Exception):
                self.store.release(lease)


async def _off(fn: Callable[..., _T], *args: Any) -> _T:
    # the caller's context travels along: the lease of ``owning`` is a context variable
    ctx = contextvars.copy_context()
    return await asyncio.to_thread(ctx.run, fn, *args)


def _thread(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable", {})
    if "thread_id" not in configurable:
        raise ValueError(
            "a LangGraph config for a checkpointer needs configurable.thread_id: "
            'graph.invoke(..., {"configurable": {"thread_id": "..."}})'
        )
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


def _config(thread_id: str, ns: str, cid: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}


def _at(stored: StoredItem) -> tuple[str, str] | None:
    kind = stored.item.get("type")
    if kind == CHECKPOINT:
        return (stored.item["ns"], stored.item["id"])
    if kind in (WRITE, MARK):
        return (stored.item["ns"], stored.item["checkpoint"])
    return None


def _lease(thread_id: str) -> Lease | None:
    return (_LEASES.get() or {}).get(thread_id)
