# generated from src/tether/stores/redis/_calls_async.py by tools/unasync.py, do not edit
"""How the Redis store sends its scripts: FCALL of tether's function library on Redis 7,
EVALSHA on Redis 6.2 or where an ACL refuses functions (the library or a script loaded again
when the server lost it), each call packed by hiredis and sent on a pooled connection the
store keeps, and driver errors turned into tether's. A mixin of
:class:`~tether.stores.redis.RedisStore`, which holds ``client``, ``keys`` and
``_where`` and calls :meth:`_init_calls` when it is made.

The sync side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis import __version__ as redis_version
from redis.commands.core import Script
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from ...errors import StoreError, StoreUnavailable
from . import _functions, _keys, _options
from . import _scripts as lua

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - redis[hiredis] installs it; else execute_command
    _pack = None
_POOL_TAKES_NO_NAME = tuple(int(part) for part in redis_version.split(".")[:2]) >= (5, 3)
"""redis-py 5.3 and later: ``ConnectionPool.get_connection()`` takes no command name."""


def _send_read(conn: Any, command: list[bytes]) -> Any:
    conn.send_packed_command(command)
    return conn.read_response()


def _send(conn: Any, command: list[bytes]) -> Any:
    """Send ``command`` on ``conn`` and read its reply, with the client's retry policy: a
    connection error (such as a connection the server closed while it was idle) disconnects
    it and, as often as the connection's ``retry`` allows, sends again on a new one, as
    redis-py does (the scripts recognise a write they already applied). Any other failure
    but an error reply (a timeout, an interrupt, a cancelled task) disconnects it too: its
    reply may still come, and must never be read as the next call's."""
    try:
        return conn.retry.call_with_retry(
            lambda: _send_read(conn, command), lambda _error: conn.disconnect()
        )
    except ResponseError:
        raise  # the error reply was read whole: the connection is in step
    except BaseException:
        conn.disconnect()
        raise


_A = TypeVar("_A", bound=lua.ScriptArgs)


class _ScriptCalls:
    """The script calls of a Redis store (module doc)."""

    client: Redis
    keys: _keys.Keys
    _where: str
    use_functions = True
    """Run the scripts as tether's Redis function library (FCALL) when the server has
    functions (Redis 7); False: EVALSHA always, the path Redis 6.2 takes (for tests)."""

    def _init_calls(self) -> None:
        self._scripts: dict[str, Script] = {
            script.name: self.client.register_script(script.source) for script in lua.SCRIPTS
        }
        self._functions: bool | None = None
        """Whether the server runs tether's function library: None until a call finds out."""
        self._direct = (
            _pack is not None
            and _POOL_TAKES_NO_NAME
            and isinstance(self.client, Redis)
            and not getattr(self.client, "single_connection_client", False)
            and self.client.connection is None
        )
        """Whether script calls bypass ``execute_command`` (see :meth:`_execute`)."""
        self._held: Any = None
        """A connection of the client's pool that script calls reuse (see :meth:`_execute`)."""
        self._held_pid = 0
        self._held_lock = threading.Lock()  # only ever tried, never waited for

    def _run(self, script: lua.LuaScript[_A], args: _A, session_id: str | None = None) -> Any:
        """One FCALL or EVALSHA (plus FUNCTION LOAD or SCRIPT LOAD the first time a server
        lacks the library or the script)."""
        keys = self.keys.for_script(script.keys, session_id)
        argv = args.argv()
        return self._guarded(script.name, lambda: self._call_script(script.name, keys, argv))

    def _call_script(self, name: str, keys: list[str], argv: list[Any]) -> Any:
        """FCALL of the script's function when the server has tether's library, else EVALSHA;
        both sent by :meth:`_execute` (redis-py's script object and ``execute_command`` would add
        their own per-call work). A server that lost the library or the script (restart,
        FUNCTION FLUSH, SCRIPT FLUSH) gets it loaded once."""
        execute = self._execute
        if self._functions is not False and self.use_functions:
            function = lua.library().function(name)
            try:
                reply = execute("FCALL", function, len(keys), *keys, *argv)
            except ResponseError as exc:
                if not self._without_function(exc):
                    raise
            else:
                self._functions = True
                return reply
            if self._functions:
                return execute("FCALL", function, len(keys), *keys, *argv)
        script = self._scripts[name]
        try:
            return execute("EVALSHA", script.sha, len(keys), *keys, *argv)
        except NoScriptError:
            self._give_back()  # redis-py's call takes it from the pool
            self.client.script_load(script.script)
        return execute("EVALSHA", script.sha, len(keys), *keys, *argv)

    def _execute(self, *args: Any) -> Any:
        """One command, its reply as redis-py's ``execute_command`` returns it (FCALL and
        EVALSHA have no reply callback), at about a third of the client's CPU.

        redis-py's ``execute_command`` encodes every argument in Python and wraps the call in
        observability hooks and closures, and its pool's checkout and return cost as much
        again: ~45 µs of client CPU for a commit's FCALL where sending and reading take ~15 µs
        (docs/redis.md). Here hiredis packs the command (one C call) and the store keeps one
        connection of the client's pool for its calls (:meth:`_send`); a call that finds it
        busy (another thread's or task's call) takes one from the pool as redis-py would. A
        forked child takes a connection of its own. A client with a single connection
        (``single_connection_client``), any client that is not a plain ``Redis``, an older
        redis-py or one without hiredis keeps ``execute_command``.
        """
        client, pack = self.client, _pack
        if not self._direct or pack is None:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        command = [pack(args)]
        pool: Any = client.connection_pool  # partly untyped in redis-py
        if self._held_lock.acquire(blocking=False):
            try:
                if self._held is None or self._held_pid != os.getpid():
                    self._held = pool.get_connection()  # a child's pool resets itself
                    self._held_pid = os.getpid()
                return _send(self._held, command)
            finally:
                self._held_lock.release()
        conn = pool.get_connection()
        try:
            return _send(conn, command)
        finally:
            pool.release(conn)

    def _give_back(self) -> None:
        """Return the connection the store keeps to the client's pool (unless a call is using
        it, or it is a forked parent's), so that a pipeline or ``close`` finds it there."""
        if not self._held_lock.acquire(blocking=False):
            return
        try:
            held, self._held = self._held, None
            if held is not None and self._held_pid == os.getpid():
                self.client.connection_pool.release(held)
        finally:
            self._held_lock.release()

    def _without_function(self, exc: ResponseError) -> bool:
        """After an FCALL failed with ``exc``: True when no script ran because the function
        was missing (then the library is loaded, or the server turns out to have no functions:
        EVALSHA from then on), False when ``exc`` is the script's own error."""
        if _functions.missing(exc):
            self._functions = self._load_library()
            return True
        if _functions.unsupported(exc):
            self._functions = False
            return True
        return False

    def _load_library(self) -> bool:
        """FUNCTION LOAD tether's library; False when the server refuses it (Redis 6.2, an ACL
        without FUNCTION, a full server's OOM): the store then runs its scripts with EVALSHA,
        which costs only speed, so no refusal of the library is worth failing a call for."""
        try:
            self._give_back()  # redis-py's call takes it from the pool
            self.client.function_load(lua.library().source)
        except ResponseError as exc:
            return _functions.already_loaded(exc)  # True: another process loaded it first
        return True

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        """Run one round trip; driver errors become StoreUnavailable or StoreError."""
        try:
            return call()
        except (AuthenticationError, AuthorizationError) as exc:
            raise _options.refused_error(self._where, exc) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(
                f"Redis at {self._where} cannot be reached ({type(exc).__name__}: {exc}). "
                "Nothing more was done; check that the server is up and retry when it is back."
            ) from exc
        except RedisError as exc:
            if _options.is_permanent_refusal(exc):
                raise _options.refused_error(self._where, exc) from exc
            raise StoreError(f"Redis at {self._where} failed the {what} call: {exc}") from exc
