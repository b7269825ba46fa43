"""The saver's operations, written once, async: :mod:`tether.integrations.langgraph`'s
:class:`TetherSaver` and :class:`AsyncTetherSaver` are thin faces over :class:`SaverBase`.
See :mod:`tether.integrations._langgraph_core` for how a thread is laid out in its session."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ..ids import decode_external_id
from ..models import Session, StoredItem
from . import _langgraph_admin as admin
from . import _langgraph_core as core
from ._langgraph_admin import Thread
from ._langgraph_admin import at_of as _at
from ._langgraph_admin import bases as _bases
from ._langgraph_admin import config_of as _config
from ._langgraph_admin import lease_of as _lease
from ._langgraph_admin import thread_of as _thread
from ._langgraph_core import (
    AGENT,
    BLOB,
    CHECKPOINT,
    EARLY_NOTE,
    MARK,
    WRITE,
    ThreadStore,
    key,
)
from ._langgraph_inline import EMPTY, empties, inline_of, kept_inline, marked, stored_keys
from ._langgraph_listing import Memo, Scope, own_copy
from ._langgraph_values import (
    Value,
    base_of,
    join,
    mark_inline,
    pack,
    payload,
    raw_bytes,
    unpack,
)

_PAGE = 1000
_KEYED_WALK = 16  # delta history: ancestors read by key before one read of the thread


class SaverBase(BaseCheckpointSaver[str]):
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

    def _blob_value(
        self,
        blob: StoredItem,
        blobs: Mapping[str, StoredItem],
        memo: Memo | None,
        known: Mapping[str, bytes] | None = None,
    ) -> Any:
        """A channel value: stored whole, or a delta joined to its snapshot.

        A walk (``memo``) over LangGraph's own serializer decodes a snapshot once and each
        delta alone: msgpack decodes an array's elements one by one, so the snapshot's list
        followed by the delta's is the value the joined bytes decode to, and a history of n
        checkpoints decodes each message about once instead of at every checkpoint."""
        packed = blob.item["value"]
        whole = (known or {}).get(blob.key or "")  # its serde bytes, kept by this process
        if whole is not None:
            return self.serde.loads_typed((packed[0], whole))
        base = base_of(packed)
        if base is None:
            return self._value(packed)
        if memo is not None and packed[0] == "msgpack" and type(self.serde) is JsonPlusSerializer:
            head = memo.heads.get(base)
            if head is None:
                head = self._value(self._snapshot(base, blob, blobs)["value"])
                memo.keep_head(base, head)
            if isinstance(head, list):
                tail = self.serde.loads_typed((packed[0], payload(packed)))
                if isinstance(tail, list):
                    return head + tail
        raw = (known or {}).get(base)  # kept by this process: not read, not inflated
        if raw is None:
            raw = raw_bytes(self._snapshot(base, blob, blobs)["value"])
        return self.serde.loads_typed((packed[0], join(raw, payload(packed))))

    @staticmethod
    def _snapshot(base: str, blob: StoredItem, blobs: Mapping[str, StoredItem]) -> Any:
        stored = blobs.get(base)
        if stored is None:
            raise ValueError(
                f"the snapshot {base!r} of LangGraph value {blob.key!r} is missing: the "
                "thread was deleted and made again while this value was written (see 'the "
                "cached header' in docs/integrations/langgraph.md)"
            )
        return stored.item

    def _tuple(
        self,
        thread_id: str,
        stored: StoredItem,
        blobs: Mapping[str, StoredItem],
        writes: Sequence[StoredItem],
        *,
        memo: Memo | None = None,
        known: Mapping[str, bytes] | None = None,
        parsed: Checkpoint | None = None,
    ) -> CheckpointTuple:
        """One checkpoint's tuple. ``memo`` (a walk over many checkpoints) holds the values
        of the checkpoint built just before: a channel value that did not change between the
        two is decoded once (LangGraph's input checkpoint shares its message list with the
        step before it), each tuple getting its own copy of the outer list or dict.
        ``parsed``: the stored checkpoint, decoded already by the caller."""
        item = stored.item
        ns, cid = item["ns"], item["id"]
        checkpoint: Checkpoint
        if memo is None:
            checkpoint = parsed if parsed is not None else self._value(item["checkpoint"])
            metadata = self._value(item["metadata"])
        else:
            checkpoint, metadata = memo.take(stored, self._value)
        values: dict[str, Any] = {}
        decoded: dict[str, Any] = {}
        inline, empty = inline_of(item, checkpoint)
        for channel, version in checkpoint["channel_versions"].items():
            if channel in inline:
                values[channel] = inline[channel]  # immutable: no copy to own
                continue
            if channel in empty:
                continue
            blob_key = key("b", ns, channel, str(version))
            blob = blobs.get(blob_key)
            if blob is not None and blob.item["value"][0] != "empty":
                if memo is not None and blob_key in memo.values:
                    values[channel] = own_copy(memo.values[blob_key])
                else:
                    values[channel] = self._blob_value(blob, blobs, memo, known)
                decoded[blob_key] = values[channel]
        if memo is not None:
            memo.values = decoded
        checkpoint = {**checkpoint, "channel_values": values}
        latest: dict[tuple[str, int], StoredItem] = {}
        for write in sorted(writes, key=lambda w: w.seq):  # the newest special write wins
            latest[(write.item["task_id"], write.item["idx"])] = write
        ordered = sorted(
            latest.values(),
            key=lambda w: writes_sort_key(w.item["task_path"], w.item["task_id"], w.item["idx"]),
        )
        parent = item.get("parent")
        return CheckpointTuple(
            config=_config(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=metadata,
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
        header: Session | None = None
        found: dict[str, StoredItem] = {}
        window: list[StoredItem] = []
        settled = False
        if cid is None:
            # the head: the header and the thread's newest items in one read (it must see
            # other processes' writes). The head checkpoint and what it needs are nearly
            # always among them; anything missing is read by key below.
            header = await self._threads.head(thread_id)
            if header is None:
                return None
            cid = core.heads_of(header).get(ns)
            if cid is None:
                return None
            window = list(header.items)
            found = {s.key: s for s in window if s.key is not None}
            at = found.get(key("c", ns, cid))
            # Every item stored after the head's first put is in the window (it reaches the
            # end): a re-put of it, its writes, late or not. Only writes stored before it could
            # be missed, and its put flagged those (``early``, see core.Marks); an early-writes
            # note after it says a flag may be wrong. Else nothing needs a keyed read but
            # channel values older than the window.
            settled = (
                at is not None and at.item.get("early") is False and key("e", ns, cid) not in found
            )
        first, mark = key("c", ns, cid), key("f", ns, cid)
        # the channel values too when this process knows the checkpoint (it put it or read it
        # last): one keyed read instead of two; what the checkpoint names beyond them is read
        # below, so a wrong guess costs a read, never a wrong value
        snapshots = self._threads.snapshots
        if not settled:
            guess = [
                k  # a snapshot this process keeps is joined from memory, never read
                for k in self._threads.blob_keys(thread_id, ns, cid)
                if snapshots.raw(thread_id, k) is None and k not in found
            ]
            found.update(
                await self._threads.by_key(thread_id, [first, key("c", ns, cid, 1), mark, *guess])
            )
        if first not in found:
            return None
        rev, newest = 1, found[first]
        while key("c", ns, cid, rev) in found:  # the same checkpoint put again
            newest = found[key("c", ns, cid, rev)]
            rev += 1
            if not settled:
                found.update(await self._threads.by_key(thread_id, [key("c", ns, cid, rev)]))
        checkpoint = self._value(newest.item["checkpoint"])
        blob_keys = stored_keys(ns, newest.item, checkpoint)
        blobs = {k: found[k] for k in blob_keys if k in found}
        missing = [k for k in blob_keys if k not in blobs]
        if missing:
            blobs.update(await self._threads.by_key(thread_id, missing))
        bases = _bases(blobs.values())
        blobs.update((b, found[b]) for b in bases if b in found)
        known = {b: raw for b in bases if b not in blobs and (raw := snapshots.raw(thread_id, b))}
        # the values this process stored last (the head it put): decoded from their bytes
        known.update((k, raw) for k in blob_keys if (raw := snapshots.value(thread_id, k)))
        await self._read_bases(thread_id, blobs, known)
        self._threads.remember_blob_keys(thread_id, ns, cid, [*blob_keys, *bases])
        self._threads.remember_empties(thread_id, ns, empties(newest.item, checkpoint, blobs))
        if header is not None:  # the head, as the store has it now: what the next put extends
            snapshots.seed(thread_id, ns, core.tag(header), blobs, blob_keys)
            # how far back the next head read should reach: to the checkpoint and its values
            oldest = min([newest.seq, *(blobs[k].seq for k in blob_keys if k in blobs)])
            self._threads.head_depth(thread_id, header.last_seq - oldest + 1)
        writes: list[StoredItem] = []
        if settled:  # its writes are all after it, in the window
            writes = [
                s
                for s in window
                if s.item.get("type") == WRITE
                and s.item.get("ns") == ns
                and s.item.get("checkpoint") == cid
            ]
        elif marked(found[first].item):
            # stored by a tether that leaves the mark out of writes a put commits after their
            # checkpoint: they are after it, up to the next checkpoint of its namespace or
            # named late; a mark before it says where its early writes begin (one after it
            # was appended by a later write: the writes committed without one came first)
            start = found[first].seq
            if mark in found:
                start = min(start, found[mark].seq)
            writes = await self._threads.writes_from(thread_id, ns, cid, start)
        elif mark in found:  # only a checkpoint with writes reads items, from the first of them
            writes = await self._threads.writes_from(thread_id, ns, cid, found[mark].seq)
        return self._tuple(thread_id, newest, blobs, writes, known=known, parsed=checkpoint)

    async def _read_bases(
        self, thread_id: str, blobs: dict[str, StoredItem], known: Mapping[str, bytes] | None = None
    ) -> None:
        """Add to ``blobs`` the snapshots its deltas extend that it lacks and that are not
        ``known`` (their bytes at hand), in one keyed read."""
        missing = [b for b in _bases(blobs.values()) if b not in blobs and b not in (known or {})]
        if missing:
            blobs.update(await self._threads.by_key(thread_id, missing))

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
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[CheckpointTuple, None]:
        """Checkpoints newest first, read as they are consumed (a page of the thread at a
        time), so a first page costs the same at any thread length."""
        if limit is not None and limit <= 0:
            return
        configurable = (config or {}).get("configurable", {})
        scope = Scope(
            ns=configurable.get("checkpoint_ns"),
            cid=get_checkpoint_id(config) if config else None,
            before=get_checkpoint_id(before) if before else None,
            filter=filter or {},
        )
        count = 0
        for thread_id in await self._thread_ids(config):
            # closed with the outer generator: a consumer that stops early ends both
            async with contextlib.aclosing(self._list_thread(thread_id, scope)) as tuples:
                async for tup in tuples:
                    yield tup
                    count += 1
                    if limit is not None and count >= limit:
                        return

    async def _list_thread(
        self, thread_id: str, scope: Scope
    ) -> AsyncGenerator[CheckpointTuple, None]:
        header = await self._threads.header(thread_id)
        if header is None:
            return
        order = core.order_of(header)
        # the history is in id order for this scope unless a checkpoint was put out of order
        ordered = order is not None and (
            not order[1] if scope.ns is None else scope.ns not in order[0]
        )
        if not ordered:
            thread = Thread(await self._threads.items(thread_id))
            chosen = sorted(thread.checkpoints.items(), key=lambda kv: kv[0][1], reverse=True)
            memo = Memo()
            for (ns, cid), stored in chosen:
                if scope.admits(ns, cid) and scope.matches(self._value(stored.item["metadata"])):
                    writes = thread.writes.get((ns, cid), [])
                    yield self._tuple(thread_id, stored, thread.blobs, writes, memo=memo)
            return
        if scope.ns is not None and scope.cid is not None:  # one checkpoint: a keyed read
            tup = await self._get_tuple(_config(thread_id, scope.ns, scope.cid))
            if tup is None or not scope.admits(scope.ns, scope.cid):
                return
            if scope.matches(tup.metadata):
                yield tup
            return
        async with contextlib.aclosing(self._walk(thread_id, header, scope)) as walked:
            async for tup in walked:
                yield tup

    async def _walk(
        self, thread_id: str, header: Session, scope: Scope
    ) -> AsyncGenerator[CheckpointTuple, None]:
        """Page backward from the end (or from ``before``'s checkpoint) of an ordered thread.

        Every item after a checkpoint found this way was read before it, so its writes are
        at hand, but for writes stored before it (from its first-write mark on: read then).
        Starting at ``before`` skips the items after it: every write of an older checkpoint
        of the same namespace lies before ``before`` unless it is named by a late entry."""
        floor, hi = header.first_seq - 1, header.last_seq
        jumped = False
        if scope.before is not None and scope.ns is not None:
            at = await self._threads.by_key(thread_id, [key("c", scope.ns, scope.before)])
            if at:
                hi, jumped = at[key("c", scope.ns, scope.before)].seq - 1, True
        writes: dict[tuple[str, str], dict[int, StoredItem]] = {}
        marks: dict[tuple[str, str], int] = {}
        notes: set[tuple[str, str]] = set()  # checkpoints with an early-writes note
        blobs: dict[str, StoredItem] = {}
        seen: set[tuple[str, str]] = set()
        memo = Memo()
        size = 32
        while hi > floor:
            lo = max(floor, hi - size)
            size = min(size * 2, _PAGE)
            found: list[tuple[StoredItem, Any]] = []
            for stored in reversed(await self._threads.window(thread_id, lo, hi)):
                kind, owner = stored.item.get("type"), _at(stored)
                if kind == WRITE and owner is not None:
                    writes.setdefault(owner, {})[stored.seq] = stored
                elif kind == MARK and owner is not None:
                    marks[owner] = stored.seq
                elif kind == BLOB and stored.key is not None:
                    blobs[stored.key] = stored
                elif kind == EARLY_NOTE:
                    notes.add((str(stored.item.get("ns")), str(stored.item.get("checkpoint"))))
                elif kind == CHECKPOINT and owner is not None and owner not in seen:
                    seen.add(owner)  # the first seen is the newest put of it
                    if scope.admits(*owner):
                        metadata = self._value(stored.item["metadata"])
                        if scope.matches(metadata):
                            checkpoint = self._value(stored.item["checkpoint"])
                            memo.keep(stored, checkpoint, metadata)
                            found.append((stored, checkpoint))
            hi = lo
            if not found:
                continue
            await self._early_writes(thread_id, found, marks, notes=notes, writes=writes, lo=lo)
            wanted = [k for s, cp in found for k in stored_keys(s.item["ns"], s.item, cp)]
            missing = [k for k in wanted if k not in blobs]
            blobs.update(await self._threads.by_key(thread_id, missing))
            await self._read_bases(thread_id, blobs)
            for stored, _ in found:
                ns, cid = owner = (stored.item["ns"], stored.item["id"])
                mine = dict(writes.get(owner, {}))
                if jumped:  # writes past ``before`` are named by late entries
                    late = await self._threads.late_writes(thread_id, ns, cid)
                    mine.update((s.seq, s) for s in late)
                yield self._tuple(thread_id, stored, blobs, list(mine.values()), memo=memo)

    async def _early_writes(
        self,
        thread_id: str,
        found: Sequence[tuple[StoredItem, Any]],
        marks: dict[tuple[str, str], int],
        *,
        notes: set[tuple[str, str]],
        writes: dict[tuple[str, str], dict[int, StoredItem]],
        lo: int,
    ) -> None:
        """Read the writes stored before the window at ``lo`` for checkpoints whose first
        write (``put_writes`` before ``put``) is there. A checkpoint of the current layout
        put once and flagged as having none (``early`` False, no note saying the flag may be
        outdated) has every write after it, read already: its mark is not looked for."""
        unknown = [
            (s.item["ns"], s.item["id"])
            for s, _ in found
            if (s.item["ns"], s.item["id"]) not in marks
            and not (
                marked(s.item)
                and s.item.get("early") is False
                and not s.item.get("rev")  # a re-put's flag says nothing of the first put's
                and (s.item["ns"], s.item["id"]) not in notes
            )
        ]
        if not unknown:
            return
        mark_keys = {key("f", *at): at for at in unknown}
        for mark_key, stored in (await self._threads.by_key(thread_id, mark_keys)).items():
            at = mark_keys[mark_key]
            marks[at] = stored.seq
            if stored.seq <= lo:
                for item in await self._threads.window(thread_id, stored.seq - 1, lo):
                    if item.item.get("type") == WRITE and _at(item) == at:
                        writes.setdefault(at, {})[item.seq] = item

    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _thread(config)
        values = checkpoint.get("channel_values", {})
        versions = checkpoint.get("channel_versions", {})
        # small values ride in the checkpoint's item, and channels empty at their version are
        # listed there: neither is an item of its own
        inline, empty = kept_inline(
            values, versions, new_versions, self._threads.empties(thread_id, ns)
        )
        bare = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        bare["channel_values"] = inline
        blobs: dict[str, Value] = {}
        for channel, version in new_versions.items():
            if channel in inline or channel in empty:
                continue
            fields = {"type": BLOB, "ns": ns, "channel": channel, "version": str(version)}
            typed = self.serde.dumps_typed(values[channel]) if channel in values else None
            blobs[key("b", ns, channel, str(version))] = (fields, typed)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        packed = self._typed(bare)
        item: dict[str, Any] = {
            "type": CHECKPOINT,
            "ns": ns,
            "id": checkpoint["id"],
            "parent": get_checkpoint_id(config),
            "run_id": str(meta.get("run_id")) if meta.get("run_id") is not None else None,
            # marked always: older tethers refuse it (they would miss its inline values, or
            # its writes stored without a first-write mark), and readers know its layout
            "checkpoint": mark_inline(packed),
            "metadata": self._typed(meta),
        }
        if empty:
            item[EMPTY] = sorted(empty)
        await self._threads.put(
            thread_id,
            ns,
            checkpoint["id"],
            get_checkpoint_id(config),
            item,
            blobs,
            # only the loop's own checkpoints: an update_state fork ("update", "fork") starts
            # a new branch on purpose, and becomes the head the loop then runs from
            expect_parent=self.ownership and metadata.get("source") in ("input", "loop"),
            lease=_lease(thread_id),
        )
        self._threads.remember_blob_keys(
            thread_id,
            ns,
            checkpoint["id"],
            [
                key("b", ns, ch, str(v))
                for ch, v in versions.items()
                if ch not in inline and ch not in empty
            ]
            + self._threads.snapshots.keys(thread_id, ns, versions),
        )
        self._threads.remember_empties(thread_id, ns, empty)
        return _config(thread_id, ns, checkpoint["id"])

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
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

    # --- whole-thread operations: see _langgraph_admin ------------------------------------

    async def _delete_thread(self, thread_id: str) -> None:
        await self._threads.delete(str(thread_id))

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        await admin.delete_for_runs(self, run_ids)

    async def _prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await admin.prune(self, thread_ids, strategy)

    async def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await admin.copy_thread(self._threads, str(source_thread_id), str(target_thread_id))

    async def _get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        history: Mapping[str, DeltaChannelHistory] = await admin.delta_history(
            self, config, channels
        )
        return history
