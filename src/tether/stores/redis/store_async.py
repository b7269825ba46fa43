"""The Redis store, asyncio side (hand-written; tools/unasync.py generates store_sync.py).

Key layout, for namespace ``ns`` (every key carries the hash tag ``{ns}``, so a namespace lives
in one Redis Cluster slot and one script may touch any of its keys):

* ``tether:{ns}:s:<id>``: the session header, a hash with one JSON text per field;
* ``tether:{ns}:h:<id>``: the history, a list with one JSON item per element (oldest first;
  seqs are contiguous, so a window is an LRANGE);
* ``tether:{ns}:m:<id>``: top-level metadata key -> canonical JSON value, for ``list`` filters;
* ``tether:{ns}:ix:updated``, ``ix:owner``, ``ix:agent``, ``ix:status``: the listing indexes,
  lex-ordered sorted sets whose members are ``<prefix><updated_at>:<id>``;
* ``tether:{ns}:ix:who``: id -> the index entries the session has, so they can be removed
  even after Redis expired the session's own keys; ``ix:sweep``: where the next bounded clean
  up of the index resumes.

Atomicity: every write is one Lua script, i.e. one round trip (FCALL of tether's function
library on Redis 7, EVALSHA on Redis 6.2), and Redis runs a script alone: a commit checks the
session is live, the schema, the lease and the version, then appends the items, updates the
header, the metadata and the indexes and sets the expiry, all or nothing. Reads are one round
trip too: every load is the load script, which reads the header and the fork link with one
HMGET and returns the header as one JSON text beside the LRANGE of the items (a MULTI/EXEC of
the same commands costs redis-py more to pack and parse than the script costs Redis to run).
Time is Redis's ``TIME`` (or an injected clock's), so expiry and leases follow one clock
whatever the client machines say. The scripts are files in ``lua/``, each described (its KEYS
and ARGV, by name) in :mod:`tether.stores.redis._scripts`; see ``docs/redis.md`` for costs and
failure behaviour.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    NoScriptError,
    ResponseError,
)

from ... import _core, _json
from ..._time import Clock
from ...errors import InvalidRequest, InvalidSessionData, StoreError
from ...models import Lease, Page, Session, SessionHeader, StoredItem
from ...schema import schema
from .._adding_async import _AsyncAddingStore
from .._writes import Write
from ..base import CheckedKeys
from . import _codec, _keys, _listing, _options
from . import _scripts as lua
from ._calls_async import _AsyncScriptCalls

__all__ = ["AsyncRedisStore", "client_options"]

_A = TypeVar("_A", bound=lua.ScriptArgs)


def client_options(
    *,
    socket_timeout: float = _options.SOCKET_TIMEOUT,
    socket_connect_timeout: float = _options.CONNECT_TIMEOUT,
) -> dict[str, Any]:
    """The client settings the store uses when it builds its own client.

    Timeouts make a dead server fail fast. One immediate retry on a connection error lets the
    first call after a server restart reconnect instead of failing on a pooled, dead
    connection; the scripts recognise a write they already applied (a nonce or the new lease
    token), so the retry never applies a commit twice. Timeouts are not retried: a server that
    does not answer is reported at once.
    """
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "retry": Retry(NoBackoff(), 1, (RedisConnectionError,)),
    }


class AsyncRedisStore(_AsyncScriptCalls, _AsyncAddingStore):
    """Sessions in Redis (6.2 or later), shared by every process and machine that uses it.

    Build it from a URL with :meth:`from_url`, or from a client you made
    (``AsyncRedisStore(client, namespace="app")``): the store then uses that client's
    connection pool, timeouts and retries, and ``close`` leaves it open unless
    ``close_client=True``. ``namespace`` keeps apps (and tests) apart; ``ttl`` (seconds) makes
    every session expire after that long without a write; ``clock`` replaces Redis's clock
    (for tests).
    """

    list_budget = _options.LIST_BUDGET
    """Index entries one listing script examines before the client resumes it."""

    def __init__(
        self,
        client: Redis | None = None,
        *,
        namespace: str = _options.DEFAULT_NAMESPACE,
        ttl: float | timedelta | None = None,
        clock: Clock | None = None,
        close_client: bool | None = None,
    ) -> None:
        self.keys = _keys.Keys.for_namespace(namespace)
        self.ttl_ms = _options.ttl_millis(ttl)
        self._clock = clock
        self._close_client = client is None if close_client is None else close_client
        self.client: Redis = (
            client
            if client is not None
            else Redis.from_url(_options.DEFAULT_URL, **client_options())
        )
        self._where = _options.describe_client(self.client.connection_pool.connection_kwargs)
        self._lengths: dict[str, int] = {}
        """Session id -> its history length when this store last read or created it."""
        self._init_calls()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> AsyncRedisStore:
        """``redis://[user:password@]host[:port][/db]`` or ``rediss://`` (TLS); options
        ``namespace``, ``ttl`` (seconds, 0 = none), ``socket_timeout`` and
        ``socket_connect_timeout`` (seconds)."""
        config = _options.parse_url(url)
        client = Redis.from_url(
            config.client_url,
            **client_options(
                socket_timeout=config.socket_timeout,
                socket_connect_timeout=config.socket_connect_timeout,
            ),
        )
        return cls(
            client, namespace=config.namespace, ttl=config.ttl, clock=clock, close_client=True
        )

    def __repr__(self) -> str:  # where it is, never the password
        return f"{type(self).__name__}({self._where!r}, namespace={self.namespace!r})"

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def _now(self) -> str:
        return _codec.now_arg(self._clock)

    async def _upgrade(self, session_id: str) -> None:
        """Write a session stored by an older tether back in the current schema (once).

        A rare path (the first write after an upgrade of tether), so it may take a few round
        trips: read the header, read the items if they migrate, then a compare-and-set on the
        version and schema version. A loser of a race just retries its commit.
        """
        header_only = self._load_args(session_id, last=0, after=None, limit=None)
        raw = _codec.loaded_raw(session_id, await self._run(lua.LOAD, header_only, session_id))
        if raw is None:
            return
        doc = raw[0]
        old = int(doc["schema_version"])
        if old >= schema.current:
            return
        items = None
        if schema.items_need_upgrade(old):
            whole = self._load_args(session_id, last=None, after=None, limit=None)
            raw = _codec.loaded_raw(session_id, await self._run(lua.LOAD, whole, session_id))
            if raw is None or raw[0]["version"] != doc["version"]:
                return
            items = _core.upgrade_items(raw[1], old)
        args = _codec.upgrade_args(
            self.keys, _core.upgrade_doc(doc), old, items, now=self._now(), ttl_ms=self.ttl_ms
        )
        await self._run(lua.UPGRADE, args, session_id)

    async def _write(self, write: Write, mode: str, after: int | None = None) -> _codec.Written:
        """The commit script in ``mode`` ("append", "replace" or "tail"), upgrading an older
        session first if it says so: the new version, the script's reply and the encoded items."""
        items = _codec.encode_items(write.items)
        session_id, expected_version = write.session_id, write.expected_version
        for _ in range(5):
            args = _codec.commit_args(
                self.keys,
                write,
                items,
                mode=mode,
                now=self._now(),
                ttl_ms=self.ttl_ms,
                nonce=_codec.new_nonce(),
                after=after,
            )
            reply = await self._run(lua.COMMIT, args, session_id)
            version = _codec.written_version(session_id, expected_version, write.lease, reply)
            if version is not None:
                return _codec.Written(version, reply, items)
            await self._upgrade(session_id)
        raise StoreError(
            f"session {session_id!r} kept changing while it was being upgraded to schema "
            f"version {schema.current}; retry the write"
        )

    # --- the contract --------------------------------------------------------------------------

    async def _create(self, session: Session) -> Session:
        doc = _core.new_session_doc(session, 0)  # the script stamps the time
        items = _codec.encode_items(session.history)
        if items.keys:
            raise InvalidSessionData(
                "create stores plain items; append keyed items (KeyedItem) with commit or append"
            )
        args = _codec.create_args(
            self.keys, doc, items, now=self._now(), ttl_ms=self.ttl_ms, nonce=_codec.new_nonce()
        )
        reply = await self._run(lua.CREATE, args, doc["id"])
        created = _codec.created_session(doc, items, reply)
        self._remember(created.id, created.history_len)
        return created

    async def fork_session(self, child: Session, at: int) -> SessionHeader:
        """Create ``child`` with its parent's items up to seq ``at``, without copying them.

        An optional ability the runtime's ``fork`` uses. One script (``lua/fork.lua``): the
        child's header records that its seqs up to ``at`` are its parent's items (see
        ``lua/_shares.lua``), so the fork costs the same at 10 items as at 10,000; the
        parent's keyed rows up to ``at`` become the child's own. Later writes to either side
        stay invisible to the other; deleting, expiring or rewriting the parent first gives
        its forks copies of what they read, and Redis never expires a parent's keys before
        its forks'. A compacted parent (the child numbers from 1), one stored by an older
        tether, or a chain of forks 16 deep is copied instead. ``child.history`` is ignored;
        ``child.parent_id`` names the parent.
        """
        if child.parent_id is None:
            raise InvalidRequest("fork_session needs child.parent_id")
        if isinstance(at, bool) or not isinstance(at, int):
            raise InvalidRequest(f"at must be a seq (int), not {at!r}")
        parent_id = child.parent_id
        doc = _core.new_session_doc(child, 0)  # checks; the script stamps the time
        doc.update(parent_id=parent_id, fork_seq=at)
        args = _codec.fork_args(
            self.keys, doc, parent_id, at, now=self._now(), ttl_ms=self.ttl_ms,
            nonce=_codec.new_nonce(),
        )  # fmt: skip
        created = _codec.forked(doc, parent_id, at, await self._run(lua.FORK, args, doc["id"]))
        if created is None:
            return await self._fork_by_copy(child, at, self._clock)
        doc.update(created_at=created, updated_at=created, last_seq=at, history_len=at)
        self._remember(doc["id"], at)
        return _core.doc_to_header(doc)

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """Write ``session`` exactly as given (an optional ability, for copying between stores).

        Versions, timestamps, seqs and the lease fence are kept; the session is stored
        unclaimed. A live session with the same id raises :class:`~tether.SessionExists`
        unless ``replace=True``, which overwrites it (its items included); with
        ``expected_version``, only that version of it (else ConflictError). One script call.
        """
        doc, items = _core.checked_restore(session, replace, expected_version)
        args = _codec.restore_args(
            self.keys,
            doc,
            items,
            replace=replace,
            expected_version=expected_version,
            now=self._now(),
            ttl_ms=self.ttl_ms,
            nonce=_codec.new_nonce(),
        )
        reply = await self._run(lua.RESTORE, args, doc["id"])
        _codec.restored(doc["id"], reply, expected_version)

    async def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        args = self._load_args(session_id, last=last, after=after, limit=limit)
        # A store's first script call finds out whether the server has the function library:
        # never a transaction, which would have to guess (Redis 6.2 aborts a MULTI with FCALL)
        decided = self._functions is not None or not self.use_functions
        if decided and _codec.use_transaction(last, after, limit, self._lengths.get(session_id)):
            keys = self.keys.for_script(lua.LOAD.keys, session_id)
            window = _codec.transaction_range(last, limit)
            argv = replace(args, listed=True).argv()
            replies = await self._guarded(
                "load", lambda: self._load_transaction(keys, argv, window)
            )
            session = _codec.transaction_session(session_id, replies)
        else:
            session = _codec.loaded_session(session_id, await self._run(lua.LOAD, args, session_id))
        self._remember(session_id, session.history_len)
        return session

    async def _load_transaction(
        self, keys: list[str], argv: list[Any], window: tuple[int, int]
    ) -> list[Any]:
        """MULTI, FCALL (or EVALSHA) of the load script, LRANGE, EXEC: one round trip.
        (redis-py's own script objects would ask SCRIPT EXISTS before every such pipeline: a
        round trip more.) A server that lost the library or the script gets it loaded once,
        then the transaction again."""
        script = self._scripts[lua.LOAD.name]
        await self._give_back()  # the pipeline takes it from the pool: no second connection
        for attempt in (1, 2):
            # FCALL once a script call found the library (see _load)
            functions = self._functions is True and self.use_functions
            pipe = self.client.pipeline(transaction=True)
            if functions:
                function = lua.library().function(lua.LOAD.name)
                cast(Any, pipe).execute_command("FCALL", function, len(keys), *keys, *argv)
            else:
                pipe.evalsha(script.sha, len(keys), *keys, *argv)
            pipe.lrange(keys[1], *window)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.client.script_load(script.script)
            except ResponseError as exc:
                if attempt == 2 or not functions or not await self._without_function(exc):
                    raise
        raise AssertionError("unreachable")

    def _remember(self, session_id: str, length: int) -> None:
        """The history length this store last saw (``_codec.use_transaction``), for a bounded
        number of sessions: the oldest entry goes first."""
        lengths = self._lengths
        lengths.pop(session_id, None)
        if len(lengths) >= _codec.KNOWN_LENGTHS:
            # threads sharing a sync store may trim at once: a hint is never worth an error
            with suppress(KeyError, StopIteration, RuntimeError):
                del lengths[next(iter(lengths))]
        lengths[session_id] = length

    def _load_args(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> lua.LoadArgs:
        return lua.LoadArgs(
            now=self._now(),
            base=self.keys.base,
            session_id=session_id,
            last=last,
            after=after,
            limit=limit,
        )

    async def _add(self, write: Write) -> _codec.Written:
        """See the contract: the commit script (``expected_version`` None: no version to
        compare), one round trip; its reply says what it stamped, so nothing is read after.
        Replacing state keeps the runtime's block: the script merges it (no read)."""
        return await self._write(write, "append")

    async def _replace_all(self, write: Write) -> int:
        """See the contract: the commit script drops the items (giving forks their copies)."""
        return (await self._write(write, "replace")).version

    async def _replace_after(self, write: Write, after: int) -> int:
        """See the contract: one script call; LTRIM removes only the suffix."""
        return (await self._write(write, "tail", after)).version

    async def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        """See the contract: one HMGET of the keyed rows, whatever the history's length."""
        args = lua.ItemsByKeyArgs(now=self._now(), schema_version=schema.current, tail=keys)
        reply = await self._run(lua.ITEMS_BY_KEY, args, session_id)
        return _codec.keyed_found(session_id, reply)

    async def _list_page(self, query: _core.ListQuery) -> Page:
        plan = _listing.list_plan(query)
        if plan is None:
            return Page(sessions=[], next_cursor=None)
        rows: list[tuple[str, bytes | str]] = []
        upper = plan.upper
        # One script call unless a selective filter makes it examine more than list_budget
        # entries: then it stops, and the next call resumes after the last entry it examined.
        while True:
            want = query.limit + 1 - len(rows)
            args = plan.args(upper, want, max(self.list_budget, 1), self._now(), self.keys.base)
            found, resume = _listing.list_rows(await self._run(lua.LIST, args))
            rows += found
            if len(rows) > query.limit or not resume:
                return _listing.list_page(rows, query.limit, plan.prefix)
            upper = "(" + resume

    async def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        args = lua.DeleteArgs(
            now=self._now(),
            base=self.keys.base,
            session_id=session_id,
            schema_version=schema.current,
            expected_version=expected_version,
            lease_token=None if lease is None else _json.dumps(lease.token),
            force=force,
        )
        reply = await self._run(lua.DELETE, args, session_id)
        return _codec.deleted(session_id, expected_version, lease, reply)

    async def _exists(self, session_id: str) -> bool:
        reply = await self._run(lua.EXISTS, lua.ExistsArgs(now=self._now()), session_id)
        return bool(reply)

    async def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        ttl_us = _codec.lease_ttl_micros(ttl)
        token = _codec.new_token()
        args = lua.ClaimArgs(
            now=self._now(),
            base=self.keys.base,
            session_id=session_id,
            schema_version=schema.current,
            owner=_json.dumps(owner),
            lease_ttl_us=ttl_us,
            token=_json.dumps(token),
            store_ttl_ms=self.ttl_ms,
        )
        reply = await self._run(lua.CLAIM, args, session_id)
        return _codec.claimed(session_id, owner, token, reply)

    async def _lease_call(self, lease: Lease, ttl_us: int | None) -> Lease:
        args = lua.LeaseArgs(
            now=self._now(),
            base=self.keys.base,
            session_id=lease.session_id,
            token=_json.dumps(lease.token),
            lease_ttl_us=ttl_us,
            store_ttl_ms=self.ttl_ms,
            nonce=_codec.new_nonce(),
        )
        reply = await self._run(lua.LEASE, args, lease.session_id)
        return _codec.lease_updated(lease, reply)

    async def _renew(self, lease: Lease, ttl: int) -> Lease:
        return await self._lease_call(lease, _codec.lease_ttl_micros(ttl))

    async def _release(self, lease: Lease) -> None:
        await self._lease_call(lease, None)

    async def purge_expired(self) -> int:
        """Delete what is left of expired sessions; returns how many sessions it deleted.

        Redis removes an expired session's keys by itself (native expiry), so this usually
        returns 0: it deletes sessions whose ``expires_at`` passed by this store's clock while
        Redis's clock has not reached it (an injected clock), and removes the index entries of
        sessions Redis already expired. It walks the ``ix:updated`` index, not the keyspace, in
        script calls of ``list_budget`` entries each, so the server is never held for long.
        """
        removed, resume = 0, ""
        while True:
            args = lua.PurgeArgs(
                now=self._now(),
                base=self.keys.base,
                schema_version=schema.current,
                resume=resume,
                budget=max(self.list_budget, 1),
            )
            count, resume = _listing.purged(await self._run(lua.PURGE, args))
            removed += count
            if not resume:
                return removed

    async def close(self) -> None:
        await self._give_back()
        if self._close_client:
            await self.client.aclose()
