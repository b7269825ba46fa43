"""Every error tether raises, under one root.

Catch :class:`TetherError` to handle anything tether raises; catch a leaf to handle one case::

    TetherError
    ├── ConfigurationError        a store URL, option or config dict is wrong
    │   └── MissingStore          an agent was given something that is not a store
    ├── InvalidSessionId          an id breaks the id rules (checked before any I/O)
    ├── InvalidRequest            a bad argument: cursor, limit, window, unknown change field
    │   ├── InvalidSessionData    a value that is not JSON (checked before any I/O)
    │   ├── DuplicateItemKey      a history item key the session already holds
    │   ├── ConflictingSessionIds both id= and session_id= given, with different values
    │   ├── ReservedStateKey      an application write touched the runtime's state["_tether"]
    │   ├── TurnInProgress        run() on a session whose turn has not ended: resume() it
    │   ├── MissingTools          resume() without tools the turn's snapshot names
    │   ├── InvalidToken          a snapshot token: forged, expired, malformed or stale
    │   └── MissingAbility        the store lacks an optional ability (restore, fork, purge)
    ├── SessionNotFound           no session with that id (or it has expired)
    ├── ConflictError             the stored version is not the one the write expected
    │   └── SessionExists         create() with an id that is already taken
    ├── AlreadyClaimed            another runner holds an unexpired lease on the session
    │   └── AlreadyRunning        a turn is already running on the session
    ├── LeaseLost                 your lease expired, was released, or was taken over
    ├── CorruptSession            a stored session cannot be decoded
    ├── UnsupportedSchemaVersion  stored by a newer tether; never overwritten
    ├── DecryptionError           an encrypted store's data cannot be read back as written
    │   ├── PlaintextFound        clear data where a ciphertext was expected
    │   ├── TamperedCiphertext    a ciphertext altered, malformed, or moved to another place
    │   ├── UnknownKeyId          a ciphertext names a key id the keyring does not hold
    │   └── MissingKey            the keyring could not produce a key (its fetch failed)
    ├── MissingSnapshot           resume() on a session with nothing to resume
    ├── TurnCheckpointed          a stopping worker checkpointed its turn (status hibernated)
    ├── ApprovalExpired           a review was answered after its time limit
    ├── ReviewMismatch            a review id that is not this session's open interrupt
    ├── ModelError                a model call failed (HTTP error, bad reply, timeout)
    └── StoreError                the backend failed (driver error chained as __cause__)
        ├── LockTimeout           a session lock was not acquired in time
        └── StoreUnavailable      the server cannot be reached (down, restarting, network)

Every message says what happened and what to do about it.
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "AlreadyClaimed",
    "AlreadyRunning",
    "ApprovalExpired",
    "ConfigurationError",
    "ConflictError",
    "ConflictingSessionIds",
    "CorruptSession",
    "DecryptionError",
    "DuplicateItemKey",
    "InvalidRequest",
    "InvalidSessionData",
    "InvalidSessionId",
    "InvalidToken",
    "LeaseLost",
    "LockTimeout",
    "MissingAbility",
    "MissingKey",
    "MissingSnapshot",
    "MissingStore",
    "MissingTools",
    "ModelError",
    "PlaintextFound",
    "ReservedStateKey",
    "ReviewMismatch",
    "SessionExists",
    "SessionNotFound",
    "StoreError",
    "StoreUnavailable",
    "TamperedCiphertext",
    "TetherError",
    "TurnCheckpointed",
    "TurnInProgress",
    "UnknownKeyId",
    "UnsupportedSchemaVersion",
]


class TetherError(Exception):
    """The root of every error tether raises."""


class ConfigurationError(TetherError):
    """A store URL, option or configuration mapping is not valid."""


class MissingStore(ConfigurationError):
    """An agent or runtime was given something that is not a store, a URL or ``Sessions``."""

    def __init__(self, given: str) -> None:
        super().__init__(
            f"expected a store, a store URL or Sessions, got a {given}. Pass the store on every "
            "Agent: Agent(tether.open_store(url)), Agent('sqlite:///app.db'), or Agent() for "
            "$TETHER_URL / the embedded SQLite default."
        )


class InvalidSessionId(TetherError):
    """A session id breaks the id rules.

    Ids are 1-128 characters from ``[A-Za-z0-9._:-]`` and do not start with ``.``. The check
    runs before anything is written, so an id can never escape a store's directory or key space.
    """

    def __init__(self, session_id: object, reason: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"invalid session id {session_id!r}: {reason}. Use 1-128 characters from "
            "[A-Za-z0-9._:-], not starting with '.', or pass no id to get a generated one."
        )


class InvalidRequest(TetherError, ValueError):
    """An argument to a store call is not valid (a cursor, a limit, a window, a change field)."""


class InvalidSessionData(InvalidRequest):
    """A value cannot be stored because it is not plain JSON. Nothing was written."""


class DuplicateItemKey(InvalidRequest):
    """A write would store a history item under a key the session already holds (or twice in
    one write). Nothing was written."""

    def __init__(self, session_id: str | None, key: str) -> None:
        self.session_id = session_id
        self.key = key
        where = f"session {session_id!r}" if session_id else "this write"
        super().__init__(
            f"{where} already has an item with key {key!r}: keys are unique within a session. "
            "Read it with items_by_key() instead of appending it again, or use another key"
        )


class ConflictingSessionIds(InvalidRequest):
    """Both ``id`` and ``session_id`` were passed, with different values."""

    def __init__(self, id_: str, session_id: str) -> None:
        self.ids = (id_, session_id)
        super().__init__(
            f"id={id_!r} and session_id={session_id!r} disagree; pass only session_id, or make "
            "them equal"
        )


class ReservedStateKey(InvalidRequest):
    """An application write would set, change or delete ``state["_tether"]``; nothing was written.

    That key holds the agent runtime's turn snapshot and its human reviews. Only the runtime
    writes it, so a commit, an action or a hook cannot forge an approval or a snapshot.
    """

    def __init__(self, key: str, how: str) -> None:
        self.key = key
        super().__init__(
            f"state[{key!r}] belongs to the agent runtime (turn snapshots and reviews) and {how}. "
            f"Keep your own data under other state keys; answer reviews with Agent.approve / "
            "deny and continue turns with Agent.resume."
        )


class TurnInProgress(InvalidRequest):
    """``run`` on a session whose last turn has not ended (hibernated, waiting or failed)."""

    def __init__(self, session_id: str, step: str, status: str) -> None:
        self.session_id = session_id
        self.step = step
        self.status = status
        super().__init__(
            f"session {session_id!r} has a turn in progress (status {status!r}, at its {step!r} "
            "step); resume() it (answering its reviews first, if any) before sending a new "
            "message. Nothing was written."
        )


class MissingTools(InvalidRequest):
    """``resume`` was not given tools that the turn's snapshot names; nothing was written."""

    def __init__(self, session_id: str, missing: list[str]) -> None:
        self.session_id = session_id
        self.missing = missing
        super().__init__(
            f"session {session_id!r} is in a turn that uses the tools {', '.join(missing)}, "
            "which this resume was not given. Pass them (Agent(store, tools=[...]) or "
            "resume(id, tools=[...]); on the command line tether resume --tools module:attr). "
            "Nothing was written: its reviews and approvals are kept."
        )


class InvalidToken(InvalidRequest):
    """A snapshot token was altered, signed with another key, expired, malformed or stale."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"snapshot token refused: {reason}. Ask for a new one with snapshot_token(id)."
        )


class MissingAbility(InvalidRequest, NotImplementedError):
    """The store lacks an optional ability the call needs (``restore``, ``fork_session``,
    ``purge_expired``: see :mod:`tether.stores.abilities`); nothing was done. The message names
    the store, the ability and how to get it. It is also a ``NotImplementedError``, what a
    missing ability raised before it had a name."""

    def __init__(self, store: str, ability: str, method: str, how: str) -> None:
        self.store = store
        self.ability = ability
        self.method = method
        super().__init__(f"{store} has no {method}() (the optional ability {ability}): {how}")


class SessionNotFound(TetherError):
    """No session with this id exists in the store (or it has expired)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} not found: it was never created in this store, was "
            "deleted, or has expired. Check the id and the store URL, or create it first."
        )


class ConflictError(TetherError):
    """A write expected one version of a session and the store holds another.

    Nothing was written. Reload the session, re-apply the change and commit again.
    """

    def __init__(
        self,
        session_id: str,
        expected_version: int | None,
        actual_version: int | None,
        message: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            message
            or (
                f"conflict on session {session_id!r}: the write expected version "
                f"{expected_version} but the store holds version {actual_version}; another "
                "writer got there first. Nothing was written: reload the session, re-apply "
                "your change and commit again."
            )
        )


class SessionExists(ConflictError):
    """``create`` was given an id that is already taken."""

    def __init__(self, session_id: str, actual_version: int | None = None) -> None:
        super().__init__(
            session_id,
            0,
            actual_version,
            f"session {session_id!r} already exists (version {actual_version}); create() never "
            "overwrites. Load it and commit to change it, delete it first, or pick another id.",
        )


class AlreadyClaimed(TetherError):
    """Another runner holds an unexpired lease on the session; nothing was written.

    It is not a :class:`ConflictError` on purpose: reloading and retrying cannot help until
    the holder releases the session or its lease expires.
    """

    def __init__(self, session_id: str, holder: str | None, expires_at: datetime | None) -> None:
        self.session_id = session_id
        self.holder = holder
        self.expires_at = expires_at
        until = f" until {expires_at.isoformat()}" if expires_at else ""
        super().__init__(
            f"session {session_id!r} is claimed by {holder!r}{until}; only one runner works on a "
            "session at a time. Wait for it to be released (or for the lease to expire) and "
            "claim it then, or pass the holder's lease to write."
        )


class AlreadyRunning(AlreadyClaimed):
    """A turn is already running on this session (another runner holds its lease).

    Raised before any model call, so no work is wasted and nothing interleaves.
    """


class TurnCheckpointed(TetherError):
    """The worker is stopping: the turn was checkpointed (status ``hibernated``) at a safe step.

    Nothing is lost: the session's snapshot says where the turn stands and any worker resumes
    it from there (see ``docs/workers.md``).
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r}: the worker is stopping, its turn was checkpointed "
            "(status 'hibernated'); a worker resumes it"
        )


class MissingSnapshot(TetherError):
    """``resume`` was called on a session that has no hibernated turn to continue."""

    def __init__(self, session_id: str, status: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} has nothing to resume (status {status!r}): it never "
            "hibernated, or its turn already finished. Run a new turn instead."
        )


class ApprovalExpired(TetherError):
    """A review was answered after its approval time limit; nothing was approved."""

    def __init__(self, review_id: str, expired_at: datetime) -> None:
        self.review_id = review_id
        self.expired_at = expired_at
        super().__init__(
            f"review {review_id!r} expired at {expired_at.isoformat()}; the tool was not run. "
            "Resume the session: the model is told the approval lapsed and can ask again."
        )


class ReviewMismatch(TetherError):
    """A review id that is not an open interrupt of its session (answered, or never asked)."""

    def __init__(self, review_id: str, reason: str) -> None:
        self.review_id = review_id
        super().__init__(
            f"review {review_id!r} does not match an open interrupt: {reason}. List the open "
            "ones with pending_reviews() and answer one of those."
        )


class LeaseLost(TetherError):
    """The lease is no longer the session's current one; nothing was written.

    It expired, was released, or another claim replaced it. Stop working on the session:
    whatever you would write could overwrite the new holder's work.
    """

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id = session_id
        self.reason = reason
        super().__init__(
            f"lease on session {session_id!r} lost: {reason}. Stop this run; claim the session "
            "again to continue (reload it first: the new holder may have written)."
        )


class CorruptSession(TetherError):
    """A stored session cannot be decoded. Other sessions in the store are unaffected."""

    def __init__(self, session_id: str, detail: str) -> None:
        self.session_id = session_id
        self.detail = detail
        super().__init__(
            f"session {session_id!r} is corrupt in the store: {detail}. Restore it from a "
            "backup or delete it; the other sessions are not affected."
        )


class UnsupportedSchemaVersion(TetherError):
    """A session was stored by a newer tether. It is refused and never overwritten."""

    def __init__(self, session_id: str, found: int, supported: int) -> None:
        self.session_id = session_id
        self.found = found
        self.supported = supported
        super().__init__(
            f"session {session_id!r} has schema version {found}, but this tether supports "
            f"versions up to {supported}. It was written by a newer tether: upgrade tether to "
            "read or change it. It has been left untouched."
        )


class DecryptionError(TetherError):
    """Data of an encrypted store (``tether.encryption``) cannot be read back as it was written.

    The store fails closed: nothing is returned in clear by mistake and nothing is skipped.
    ``session_id`` names the session, ``place`` what could not be read (``"state"``,
    ``"options"``, ``"history item seq 7"``), ``key_id`` the key the ciphertext names, if any.
    """

    def __init__(
        self, session_id: str, place: str, detail: str, *, key_id: str | None = None
    ) -> None:
        self.session_id = session_id
        self.place = place
        self.key_id = key_id
        self.detail = detail
        super().__init__(f"session {session_id!r}, {place}: {detail}")


class PlaintextFound(DecryptionError):
    """Clear data where the encrypted store expects a ciphertext (written without encryption,
    or put there by someone with access to the storage). Encrypt the store with
    ``tether rekey --encrypt`` if it was written in clear before encryption was turned on."""


class TamperedCiphertext(DecryptionError):
    """A ciphertext does not verify: altered, truncated, malformed, or moved from another
    session, item or field (the associated data binds each one to its place)."""


class UnknownKeyId(DecryptionError):
    """A ciphertext names a key id the keyring does not hold (a retired key, or another
    store's). Add that key to the keyring to read it, then ``tether rekey`` to move it to the
    current key."""


class MissingKey(DecryptionError):
    """The keyring knows the key id but could not produce its key: the fetch callable (a KMS
    call, say) raised or returned nothing. Its exception, if any, is the ``__cause__``."""


class ModelError(TetherError):
    """A model call failed: the server answered with an error, an unreadable reply, or not at all.

    ``status`` is the HTTP status when there was one; ``kind`` says what went wrong in a few
    words with no detail (``"timed out"``, ``"unreachable"``, ``"refused"``...): it is what the
    session records, while the message, which may quote the server, goes only to the caller.
    The turn keeps its snapshot: fix the cause (key, URL, quota) and resume it.
    """

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None) -> None:
        self.status = status
        self.kind = kind
        super().__init__(message)


class StoreError(TetherError):
    """The storage backend failed. The driver's own exception is chained as ``__cause__``."""


class LockTimeout(StoreError):
    """A session's lock was held by someone else for longer than the store's lock timeout."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached. The call failed fast; retry when it is back."""
