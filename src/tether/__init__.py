"""tether: durable sessions for AI agents.

A session (history, state, metadata, options, status) is data, kept in a store through one
small contract with versioned writes. Start with :func:`open_store`::

    import tether

    with tether.open_store("sqlite:///app.db") as store:
        session = store.create(tether.Session(agent="support", owner="ada"))
        store.commit(session.id, session.version, append=[{"role": "user", "content": "hi"}])
"""

from __future__ import annotations

from . import errors
from ._ids import new_session_id, validate_session_id
from ._registry import (
    DEFAULT_URL,
    async_store_from_config,
    open_async_store,
    open_store,
    register_store,
    store_from_config,
)
from .actions import (
    Action,
    AppendMessages,
    ChangeOptions,
    ClearHistory,
    DeleteState,
    Draft,
    Fork,
    Resume,
    SetState,
    Suspend,
    WriteMetadata,
)
from .errors import *  # noqa: F403 - the error classes, named once in errors.__all__
from .hooks import HookContext, HookStage
from .models import (
    HistoryItem,
    KeyedItem,
    Lease,
    Page,
    Session,
    SessionHeader,
    SessionStatus,
    StoredItem,
)
from .sessions_async import AsyncSessions
from .sessions_sync import Sessions
from .stores.base import AsyncStore, Store

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AppendMessages",
    "AsyncSessions",
    "AsyncStore",
    "ChangeOptions",
    "ClearHistory",
    "DEFAULT_URL",
    "DeleteState",
    "Draft",
    "Fork",
    "HistoryItem",
    "HookContext",
    "HookStage",
    "KeyedItem",
    "Lease",
    "Page",
    "Resume",
    "Session",
    "SessionHeader",
    "SessionStatus",
    "Sessions",
    "SetState",
    "Store",
    "StoredItem",
    "Suspend",
    "WriteMetadata",
    "__version__",
    "async_store_from_config",
    "new_session_id",
    "open_async_store",
    "open_store",
    "register_store",
    "store_from_config",
    "validate_session_id",
]
__all__ += errors.__all__  # every error class, listed once in tether.errors
