"""Pydantic AI conversations in tether: :class:`TetherConversationStore`.

``pip install 'tether[pydantic-ai]'``. A drop-in for ``InMemoryConversationStore`` wherever
Pydantic AI takes a ``ConversationStore`` (``store.load`` / ``store.save`` around a run, the
Vercel AI and AG-UI adapters' ``conversation_store=``)::

    store = TetherConversationStore(tether.open_async_store("sqlite:///app.db"))

How a conversation maps onto tether (see ``docs/integrations/pydantic_ai.md`` for the costs):

- One tether session per conversation, its id ``tether.ids.encode_external_id(conversation_id)``,
  ``agent`` :data:`AGENT`, ``owner`` the record's ``scope`` (so ``read_records(scope=)`` is a
  listing on tether's owner index, newest first), and the record as JSON in ``state``.
- Every entry the conversation stores is a keyed item of that session (key: the entry id), in
  write order, every branch included: an entry's parent is always in the same session at a
  lower seq. ``read_entry`` is ``items_by_key``; ``read_history`` walks the chain from the
  newest items of one ``load``.
- ``expected_revision`` is checked against the record in the session and the write is a tether
  commit at the version that record was read at: a writer that got in between makes it a
  ``ConflictError``, raised as ``ConversationConflict``.
- ``fork`` is tether's fork: the new session starts with the parent session's items up to the
  fork point (shared with the parent on the stores that can, copied with their keys on the
  others), so its history never depends on the parent staying stored.
- ``delete_record`` deletes the session: its entries go with it, and every other conversation
  still reaches its own (a fork holds its own share or copy).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from ..errors import ConflictError, InvalidRequest, SessionNotFound
from ..ids import encode_external_id, external_id_metadata
from ..models import KeyedItem, Session, StoredItem
from ..stores.abilities import AsyncForksInStore
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore
from ._extras import requires_extra

with requires_extra("pydantic_ai", "Pydantic AI", "pydantic-ai"):
    from pydantic_ai.conversation_store import (
        ConversationConflict,
        ConversationEntry,
        ConversationRecord,
        ConversationStore,
    )

__all__ = ["AGENT", "ENTRY_TYPE", "STATE_KEY", "TetherConversationStore"]

AGENT = "pydantic-ai"
"""The ``agent`` of every session that holds a conversation: what :meth:`read_records` lists."""
STATE_KEY = "pydantic_ai_record"
"""The key of the record (its JSON form) in the session's ``state``."""
ENTRY_TYPE = "pydantic_ai.entry"
"""The ``type`` of the items that hold entries (beside ``id``, ``parent_id``, ``kind``,
``message``: the entry's own JSON form)."""

_RECORDS: TypeAdapter[ConversationRecord] = TypeAdapter(ConversationRecord)
_ENTRIES: TypeAdapter[ConversationEntry] = TypeAdapter(ConversationEntry)
NewItem = KeyedItem | dict[str, Any]
_HINTS = 4096  # entry id -> a session holding it, for read_entry / read_history


class TetherConversationStore(ConversationStore):
    """A Pydantic AI ``ConversationStore`` backed by any tether store.

    ``store`` is an async store (``tether.open_async_store(url)``) or a sync one (its calls
    then run in a worker thread). The store is not closed by this object.
    """

    def __init__(self, store: AsyncStore | Store) -> None:
        self.store: AsyncStore = store if isinstance(store, AsyncStore) else _threaded(store)
        # Which session holds an entry: entries are global ids, sessions are per conversation.
        # Filled from every record read or written (its head and branch tips), so a history is
        # read from the right session at once; a miss falls back to a search (read_entry).
        self._where: OrderedDict[str, str] = OrderedDict()

    # --- the five primitives -----------------------------------------------------------------

    async def read_record(self, conversation_id: str) -> ConversationRecord | None:
        """The record for a conversation, or ``None`` if the store doesn't have it."""
        sid = _session_id(conversation_id)
        try:
            header = await self.store.load(sid, last=0)
        except SessionNotFound:
            return None
        record = _record_of(header, conversation_id)
        if record is not None:
            self._hint(sid, record)
        return record

    async def read_records(
        self, *, scope: str | None = None, limit: int | None = None
    ) -> Sequence[ConversationRecord]:
        """The stored records (with ``scope``: only its own), newest ``updated_at`` first.

        A listing of tether's sessions with ``agent`` :data:`AGENT` (and ``owner`` the scope),
        a page of at most 1,000 headers per call, never a history.
        """
        if limit is not None and limit <= 0:
            return []
        records: list[ConversationRecord] = []
        cursor: str | None = None
        while limit is None or len(records) < limit:
            page_size = 1000 if limit is None else min(1000, limit - len(records))
            page = await self.store.list(agent=AGENT, owner=scope, limit=page_size, cursor=cursor)
            for header in page.sessions:
                record = _record_of(header, None)
                # an owner filter of None lists every scope; a scope of None lists them all
                if record is not None and (scope is None or record.scope == scope):
                    records.append(record)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return records if limit is None else records[:limit]

    async def write_record(
        self,
        record: ConversationRecord,
        *,
        new_entries: Sequence[ConversationEntry] = (),
        expected_revision: str | None,
    ) -> None:
        """Store ``record`` and ``new_entries`` in one tether write, compared on the version.

        Raises ``ConversationConflict`` if the stored revision isn't ``expected_revision`` (or
        a record exists when it is ``None``), if another writer committed in between, or if
        ``record.head_id`` is neither stored in the conversation (for a new fork: in the
        conversation it forks) nor among ``new_entries``.
        """
        cid = record.conversation_id
        sid = _session_id(cid)
        items = [_entry_item(entry) for entry in new_entries]
        new_ids = {entry.id for entry in new_entries}
        try:
            header = await self.store.load(sid, last=0)
        except SessionNotFound:
            header = None
        stored = _record_of(header, cid) if header is not None else None
        if (stored.revision if stored is not None else None) != expected_revision:
            raise ConversationConflict(cid)
        changes: dict[str, Any] = {"state": {STATE_KEY: _RECORDS.dump_python(record, mode="json")}}
        if header is not None and record.scope != header.owner:
            changes["owner"] = record.scope
        try:
            if header is not None and stored is None:
                # Created by a write that never committed its record (a crash between its
                # two steps): nothing was stored in it, so start it again.
                await self.store.delete(sid, header.version)
                header = None
            if header is None:
                await self._create(record, sid, items, new_ids)
            else:
                known = {stored.head_id, *stored.branches} if stored is not None else set()
                head = record.head_id
                if head is not None and head not in new_ids and head not in known:
                    found = await self.store.items_by_key(sid, [head])
                    if head not in found:
                        raise ConversationConflict(cid)
                await self.store.commit(sid, header.version, append=items, changes=changes)
        except ConflictError as exc:  # a writer (or a delete, a create) got in between
            raise ConversationConflict(cid) from exc
        self._hint(sid, record)

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        """Delete the conversation's session, and with it every entry it holds.

        Its entries are freed at once. A fork of it keeps its own: it holds its own share or
        copy of what it forked, so nothing another record reaches is ever removed. Raises
        ``ConversationConflict`` unless the stored record has ``expected_revision``.
        """
        sid = _session_id(conversation_id)
        try:
            header = await self.store.load(sid, last=0)
            record = _record_of(header, conversation_id)
            if record is None or record.revision != expected_revision:
                raise ConversationConflict(conversation_id)
            await self.store.delete(sid, header.version)
        except (SessionNotFound, ConflictError) as exc:
            raise ConversationConflict(conversation_id) from exc

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        """The entry with this id, by key (``items_by_key``) in the session known to hold it.

        Raises ``KeyError`` if no conversation holds it. An entry this object has not seen
        through a record (its head or a branch tip) is searched for in every conversation's
        session, one ``items_by_key`` each: read the record first to avoid that.
        """
        hinted = self._where.get(entry_id)
        if hinted is not None:
            try:
                found = await self.store.items_by_key(hinted, [entry_id])
            except SessionNotFound:
                found = {}
            if entry_id in found:
                return _entry_of(found[entry_id])
        async for header in self.store.iter_sessions(agent=AGENT):
            try:
                found = await self.store.items_by_key(header.id, [entry_id])
            except SessionNotFound:
                continue  # deleted while we look
            if entry_id in found:
                self._remember(entry_id, header.id)
                return _entry_of(found[entry_id])
        raise KeyError(entry_id)

    async def read_history(
        self, head_id: str | None, *, limit: int | None = None
    ) -> list[ConversationEntry]:
        """The entries from the first up to ``head_id`` (the last ``limit`` of them), in order.

        One ``load`` of the newest items of the session holding ``head_id`` (``limit`` of
        them, or all) when the chain runs through them, as it does for a conversation that
        only grows; the whole session in a second ``load`` when it branches further back.
        Raises ``KeyError`` if ``head_id`` is not stored.
        """
        if head_id is None or limit == 0:
            return []
        hinted = self._where.get(head_id)
        if hinted is not None:
            try:
                return await self._chain(hinted, head_id, limit)
            except (SessionNotFound, KeyError):
                pass  # deleted, or started again: look for it as for one never seen
        await self.read_entry(head_id)  # finds the session holding it, or raises KeyError
        return await self._chain(self._where[head_id], head_id, limit)

    # --- tether's fork and create ------------------------------------------------------------

    async def _create(
        self, record: ConversationRecord, sid: str, items: list[NewItem], new_ids: set[str]
    ) -> None:
        """A new session for ``record``: a tether fork of its parent's when it is a fork."""
        cid = record.conversation_id
        state = {STATE_KEY: _RECORDS.dump_python(record, mode="json")}
        fields: dict[str, Any] = {
            "id": sid,
            "agent": AGENT,
            "owner": record.scope,
            "metadata": external_id_metadata(cid),
        }
        head = record.head_id
        if head is None or head in new_ids:
            # Created without its record first: the keyed entries need a commit, and a
            # session with no record yet reads as absent (and is taken over by the next
            # create) if the commit never comes.
            created = await self.store.create(Session(**fields))
            await self.store.commit(sid, created.version, append=items, changes={"state": state})
            return
        if record.forked_from is None:
            raise ConversationConflict(cid)  # the head is in no conversation's history yet
        parent = _session_id(record.forked_from)
        found = await self.store.items_by_key(parent, [head])
        if head not in found:
            raise ConversationConflict(cid)  # released by a delete or a rewrite meanwhile
        at = found[head].seq
        child = Session(**fields, state=state if not items else {}, parent_id=parent, fork_seq=at)
        version = None
        if isinstance(self.store, AsyncForksInStore):  # shares the rows (SQLite, memory)
            try:
                version = (await self.store.fork_session(child, at)).version
            except NotImplementedError:
                version = None
        if version is None:  # copy the parent's items up to the fork point, keys and all
            loaded = await self.store.load(parent, limit=at)  # the oldest: only the prefix
            copied = [_keyed(stored) for stored in loaded.items if stored.seq <= at]
            version = (await self.store.create(child.model_copy(update={"state": {}}))).version
            await self.store.commit(sid, version, append=copied + items, changes={"state": state})
        elif items:
            await self.store.commit(sid, version, append=items, changes={"state": state})

    # --- reading chains ----------------------------------------------------------------------

    async def _chain(self, sid: str, head_id: str, limit: int | None) -> list[ConversationEntry]:
        """The chain to ``head_id`` in session ``sid``: KeyError if it does not hold it."""
        if limit is not None:
            window = await self.store.load(sid, last=limit)
            whole = len(window.items) == window.history_len
            chain = _walk(window.items, head_id, limit, whole=whole)
            if chain is not None:
                return chain
        everything = await self.store.load(sid)
        chain = _walk(everything.items, head_id, limit, whole=True)
        assert chain is not None  # whole=True raises instead
        return chain

    def _hint(self, sid: str, record: ConversationRecord) -> None:
        for entry_id in (record.head_id, *record.branches, record.forked_at):
            if entry_id is not None:
                self._remember(entry_id, sid)

    def _remember(self, entry_id: str, sid: str) -> None:
        self._where[entry_id] = sid
        self._where.move_to_end(entry_id)
        while len(self._where) > _HINTS:
            self._where.popitem(last=False)


def _threaded(store: Store) -> AsyncStore:
    return SyncBackedAsyncStore(store)


def _session_id(conversation_id: str) -> str:
    return encode_external_id(conversation_id)


def _record_of(header: Any, conversation_id: str | None) -> ConversationRecord | None:
    """The record a session header holds; ``None`` for a session created without one yet.

    A session under the conversation's id that is not a conversation's is refused: it is
    another application's, and writing a record into it would change that session.
    """
    if header.agent != AGENT:
        raise InvalidRequest(
            f"session {header.id!r} exists and is not a Pydantic AI conversation (its agent "
            f"is not {AGENT!r}): use another conversation id than {conversation_id!r}, or give "
            "TetherConversationStore a store of its own"
        )
    raw = header.state.get(STATE_KEY)
    if raw is None:
        return None
    return _RECORDS.validate_python(raw)


def _entry_item(entry: ConversationEntry) -> NewItem:
    return KeyedItem(entry.id, {"type": ENTRY_TYPE, **_ENTRIES.dump_python(entry, mode="json")})


def _entry_of(stored: StoredItem) -> ConversationEntry:
    fields = {k: v for k, v in stored.item.items() if k != "type"}
    return _ENTRIES.validate_python(fields)


def _keyed(stored: StoredItem) -> NewItem:
    return KeyedItem(stored.key, stored.item) if stored.key is not None else dict(stored.item)


def _walk(
    items: Sequence[StoredItem], head_id: str, limit: int | None, *, whole: bool
) -> list[ConversationEntry] | None:
    """The chain ending at ``head_id`` through ``items``; ``None`` if it leaves them (and
    ``items`` are not the whole session: the caller reads more)."""
    by_id = {stored.key: stored for stored in items if stored.key is not None}
    chain: list[ConversationEntry] = []
    entry_id: str | None = head_id
    while entry_id is not None and (limit is None or len(chain) < limit):
        stored = by_id.get(entry_id)
        if stored is None:
            if whole:
                raise KeyError(entry_id)
            return None
        entry = _entry_of(stored)
        chain.append(entry)
        entry_id = entry.parent_id
    chain.reverse()
    return chain
