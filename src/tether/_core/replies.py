"""What a store's one atomic step answered, made into values the same way by every store that
answers in parts (no I/O): the stamp of a commit whose new rows are spliced from the text the
store sent, and the lease a claim granted.

Imports only the modules above it (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._time import from_micros
from ..models import Lease
from .items import stamp_text
from .stamps import CommitStamp, commit_stamp

_T = TypeVar("_T")


def spliced_stamp(
    version: int,
    updated_at: int,
    last_seq: int,
    lease: tuple[Any, Any, Any],
    items: Sequence[tuple[bool, _T]],
    *,
    splice: Callable[[int, str | None, _T], bytes],
) -> CommitStamp:
    """The stamp of a commit that answered its new ``version``, ``updated_at`` (µs), new
    ``last_seq`` and ``lease`` (owner, fence, expires_at in µs). ``items`` are the new items as
    sent (whether each needs the commit's timestamp, and its encoded text), numbered up to
    ``last_seq``; ``splice(seq, timestamp or None, text)`` makes each one's stored row as the
    store's write did, so the rows are the stored bytes without encoding the items again."""
    stamp = stamp_text(int(updated_at))
    first = int(last_seq) - len(items) + 1
    rows = [
        (seq, splice(seq, stamp if needs_stamp else None, text))
        for seq, (needs_stamp, text) in enumerate(items, first)
    ]
    owner, fence, expires_at = lease
    header = {
        "version": version,
        "updated_at": updated_at,
        "lease_owner": owner,
        "lease_fence": fence,
        "lease_expires_at": expires_at,
    }
    return commit_stamp(header, rows)


def granted_lease(session_id: str, owner: str, token: str, fence: Any, expires_at: Any) -> Lease:
    """The lease a claim granted ``owner`` with ``token``: the ``fence`` and ``expires_at`` (µs)
    the store's claim step answered."""
    return Lease(
        session_id=session_id,
        owner=owner,
        token=token,
        fence=int(fence),
        expires_at=from_micros(int(expires_at)),
    )
