"""Leases, with no I/O: ttls, claims, renewals, releases, fencing and who may write."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import overload

from .._ids import validate_session_id
from .._time import from_micros
from ..errors import (
    AlreadyClaimed,
    ConflictError,
    InvalidRequest,
    LeaseLost,
)
from ..models import (
    Lease,
)
from .checks import MAX_TTL, MAX_TTL_MICROS, Doc, check_text, check_version, short
from .rules import check_writable

# --- leases ------------------------------------------------------------------------------------

LEASE_FIELDS = ("lease_owner", "lease_token", "lease_fence", "lease_expires_at")


def ttl_micros(ttl: float | timedelta) -> int:
    """A lease time-to-live in microseconds: positive, finite, at most :data:`MAX_TTL`."""
    if isinstance(ttl, timedelta):
        micros = ttl // timedelta(microseconds=1)
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and math.isfinite(ttl):
        # compared in seconds first: int(1e300 * 1e6) would be a 1000-digit int
        micros = MAX_TTL_MICROS + 1 if ttl > MAX_TTL.total_seconds() else int(ttl * 1_000_000)
    else:
        raise InvalidRequest(f"ttl must be seconds (a number) or a timedelta, not {short(ttl)}")
    if micros <= 0:
        raise InvalidRequest(f"ttl must be positive, not {ttl!r}")
    if micros > MAX_TTL_MICROS:
        raise InvalidRequest(
            f"ttl {ttl!r} is longer than the longest lease ({MAX_TTL.days} days, about 10 "
            "years); renew a lease instead of taking a longer one"
        )
    return micros


def check_owner(owner: object) -> str:
    if owner == "":
        raise InvalidRequest("a lease owner is a non-empty str naming the runner")
    text = check_text("lease owner", owner, optional=False)
    assert text is not None
    return text


@overload
def check_lease_arg(lease: object) -> Lease: ...
@overload
def check_lease_arg(lease: object, *, optional: bool) -> Lease | None: ...
def check_lease_arg(lease: object, *, optional: bool = False) -> Lease | None:
    """A ``lease=`` argument: a real :class:`Lease` with a valid session id (``renew`` /
    ``release``), or also None with ``optional`` (a write's ``lease=``). Every store checks
    with this, before any I/O."""
    if lease is None and optional:
        return None
    if not isinstance(lease, Lease):
        none = " or None" if optional else ""
        raise InvalidRequest(f"lease must be a tether.Lease{none}, not {type(lease).__name__}")
    validate_session_id(lease.session_id)
    return lease


def lease_is_live(doc: Doc, now: int) -> bool:
    expires = doc.get("lease_expires_at")
    return doc.get("lease_token") is not None and expires is not None and expires > now


def claim_fields(doc: Doc, owner: str, ttl: int, now: int) -> Doc:
    """The lease fields a claim writes; raises if anyone holds a live lease.

    Anyone includes a runner of the same name: holders' names are public (in listings and in
    ``AlreadyClaimed.holder``), so a name proves nothing. Only the lease itself (its secret
    token) acts on a live lease: ``renew`` keeps it, ``release`` frees it for a new claim.
    """
    if lease_is_live(doc, now):
        raise AlreadyClaimed(doc["id"], doc["lease_owner"], from_micros(doc["lease_expires_at"]))
    return {
        "lease_owner": owner,
        "lease_token": secrets.token_hex(16),
        "lease_fence": int(doc.get("lease_fence") or 0) + 1,
        "lease_expires_at": now + ttl,
    }


def check_lease(doc: Doc, lease: Lease, now: int) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is the session's current, unexpired lease."""
    if not isinstance(lease, Lease):
        raise InvalidRequest(f"lease must be a tether.Lease, not {type(lease).__name__}")
    if doc.get("lease_token") != lease.token:
        holder = doc.get("lease_owner") if lease_is_live(doc, now) else None
        reason = f"{holder!r} claimed it since" if holder else "it was released or replaced"
        raise LeaseLost(doc["id"], reason)
    if not lease_is_live(doc, now):
        raise LeaseLost(doc["id"], f"it expired at {lease.expires_at.isoformat()}")


def check_write_lease(doc: Doc, lease: Lease | None, now: int) -> None:
    """A write with ``lease`` needs it current; a write without one needs no live lease."""
    if lease is not None:
        check_lease(doc, lease, now)
    elif lease_is_live(doc, now):
        raise AlreadyClaimed(doc["id"], doc["lease_owner"], from_micros(doc["lease_expires_at"]))


def check_write(
    session_id: str, doc: Doc, expected_version: int | None, lease: Lease | None, now: int
) -> None:
    """What every write checks on the stored header, in the contract's one order: a schema this
    tether can write, the lease (before the version), then ``expected_version`` (None: a blind
    append, at any version)."""
    check_writable(session_id, doc)
    check_write_lease(doc, lease, now)
    if expected_version is not None and doc["version"] != expected_version:
        raise ConflictError(session_id, expected_version, doc["version"])


def check_delete_args(expected_version: int | None, lease: Lease | None, force: bool) -> None:
    """The arguments of ``delete``; raise before any I/O if one is bad."""
    if expected_version is not None:
        check_version(expected_version)
    check_lease_arg(lease, optional=True)
    if not isinstance(force, bool):
        raise InvalidRequest(f"force must be True or False, not {force!r}")


def check_delete_lease(doc: Doc, lease: Lease | None, force: bool, now: int) -> None:
    """``delete`` follows the lease rules of every write, unless ``force`` overrides them."""
    if not force:
        check_write_lease(doc, lease, now)


def released_fields() -> Doc:
    return {"lease_token": None, "lease_expires_at": None}


def lease_from_doc(doc: Doc) -> Lease:
    return Lease(
        session_id=doc["id"],
        owner=doc["lease_owner"],
        token=doc["lease_token"],
        fence=doc["lease_fence"],
        expires_at=from_micros(doc["lease_expires_at"]),
    )
