"""What a commit stamped, with no I/O: the :class:`CommitStamp` a store reports from inside
its write, and the session a caller builds from it instead of reading the commit back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from .._time import from_micros, to_micros
from ..models import KeyedItem, Session, SessionHeader, SessionStatus
from .checks import Doc
from .headers import TIME_FIELDS, header_to_doc, make_session
from .items import EncodedItem, decode_items, prepare_items
from .rules import apply_commit


@dataclass(frozen=True)
class CommitStamp:
    """What a commit wrote beside its items, as ``Store.commit_stamped`` reports it.

    ``version`` is the new version (what ``commit`` returns). The other fields are None when
    the store does not report them (a store without ``_commit_stamped``, or one that overrides
    ``commit``): the caller then reads the session to learn them. Reported:

    - ``updated_at``: the commit time, which the write made the header's ``updated_at`` and
      the ``timestamp`` of each new item without a timestamp string of its own;
    - ``lease_owner``, ``lease_fence``, ``lease_expires_at``: the lease fields as the write
      left them (claims, renewals and releases change them without a new version, so a
      header read before the write may hold older ones).

    ``rows`` (optional, not compared) are the new items' rows exactly as the store encoded
    and wrote them, when it has them at hand: decoding them gives what a load would, without
    encoding the items again.
    """

    version: int
    updated_at: datetime | None = None
    lease_owner: str | None = None
    lease_fence: int | None = None
    lease_expires_at: datetime | None = None
    rows: tuple[bytes, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def reported(self) -> bool:
        """Whether the store reported the commit time and lease fields (not the version alone)."""
        return self.updated_at is not None and self.lease_fence is not None


_DATA = itemgetter(1)  # an encoded row's JSON


def commit_stamp(doc: Doc, rows: Iterable[EncodedItem] | None = None) -> CommitStamp:
    """The stamp of a commit whose new header document is ``doc`` (what the store wrote) and
    whose new items ``prepare_items`` encoded as ``rows``, if given."""
    lease_expires = doc.get("lease_expires_at")
    # CommitStamp(...) as its __init__ makes it, its fields set at once: a frozen dataclass's
    # __init__ sets each field through object.__setattr__, a third of the stamp's cost
    stamp = _new(CommitStamp)
    _set(
        stamp,
        "__dict__",
        {
            "version": int(doc["version"]),
            "updated_at": from_micros(doc["updated_at"]),
            "lease_owner": doc.get("lease_owner"),
            "lease_fence": int(doc.get("lease_fence") or 0),
            "lease_expires_at": None if lease_expires is None else from_micros(lease_expires),
            "rows": None if rows is None else tuple(map(_DATA, rows)),
        },
    )
    return stamp


_new = object.__new__
_set = object.__setattr__


def stamped_session(
    loaded: SessionHeader,
    changes: Doc,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    stamp: CommitStamp,
) -> Session | None:
    """What ``load(id, after=loaded.last_seq)`` returns right after the commit ``stamp``
    reports, made at ``loaded.version`` with these ``changes`` (normalised, as
    ``_core.normalize_changes`` gives them) and ``items``; None if the stamp does not say
    enough (unreported, or not the version after ``loaded``'s). See :func:`stamped_parts`."""
    parts = stamped_parts(loaded, changes, items, stamp)
    return None if parts is None else make_session(*parts)


def stamped_parts(
    loaded: SessionHeader,
    changes: Doc,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    stamp: CommitStamp,
) -> tuple[Doc, list[Doc]] | None:
    """The header document and the decoded rows of :func:`stamped_session`'s session.

    Built by the rules the store's write used, never restated: the header by
    :func:`apply_commit` at the stamp's time with the stamp's lease fields, the items decoded
    from the rows the store wrote (``stamp.rows``) or, without them, numbered and stamped by
    :func:`prepare_items` from ``loaded.last_seq + 1`` and decoded from their encoded rows,
    as a load decodes them. Call it as the commit was called (inside
    ``runtime_writes()`` if the commit ran there): :func:`apply_commit` keeps the stored
    ``state["_tether"]`` block as the store's write did. The header's JSON values are
    ``loaded``'s and ``changes``' own objects, not copies.
    """
    told = _told(loaded, items, stamp)
    if told is None:
        return None
    now, fence, rows = told
    doc = apply_commit(header_to_doc(loaded), changes, len(rows), now)
    doc["lease_owner"] = stamp.lease_owner
    doc["lease_fence"] = fence
    expires = stamp.lease_expires_at
    doc["lease_expires_at"] = None if expires is None else to_micros(expires)
    return doc, decode_items(loaded.id, rows)


def _told(
    loaded: SessionHeader, items: Iterable[Mapping[str, Any] | KeyedItem], stamp: CommitStamp
) -> tuple[int, int, tuple[bytes, ...]] | None:
    """(the commit time in µs, the lease fence, the new items' rows) of a ``stamp`` that says
    enough to build the commit made at ``loaded``'s version; None if it does not."""
    stamped_at, fence = stamp.updated_at, stamp.lease_fence
    if stamped_at is None or fence is None or stamp.version != loaded.version + 1:
        return None
    now = to_micros(stamped_at)
    rows = stamp.rows
    if rows is None:
        rows = tuple(data for _, data in prepare_items(items, loaded.last_seq + 1, now))
    return now, fence, rows


def stamped_fields(
    loaded: SessionHeader,
    changes: Doc,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    stamp: CommitStamp,
) -> tuple[dict[str, Any], list[Doc]] | None:
    """:func:`stamped_parts` as model fields (what ``fields_from_doc`` makes of its header
    document, without ``history``) and the decoded rows; None as there.

    For the runtime's cached turn: the fields are ``loaded``'s, with only those a commit writes
    converted from :func:`apply_commit`'s result (run on the part of the document it reads and
    writes), instead of the whole header to a document and back.
    """
    fence, rows = stamp.lease_fence, stamp.rows
    if rows is None or stamp.updated_at is None or fence is None:
        told = _told(loaded, items, stamp)
        if told is None:
            return None
        now, fence, rows = told
    elif stamp.version != loaded.version + 1:
        return None
    else:
        now = 0  # apply_commit's updated_at is not read: the stamp's datetime is set below
    held = loaded.__dict__
    if type(loaded) is Session:  # its header fields: its dict less the history, one copy
        fields = held.copy()
        del fields["history"]
    else:
        fields = {name: held[name] for name in _HEADER_FIELDS}
    part = {  # the part of the header document apply_commit reads
        "state": fields["state"],
        "version": fields["version"],
        "last_seq": fields["last_seq"],
        "history_len": fields["history_len"],
    }
    new = apply_commit(part, changes, len(rows), now)
    for name in _COUNTED:  # what every commit writes (updated_at: the stamp's, below)
        fields[name] = new[name]
    for name in changes:  # and the changed fields, as apply_commit wrote them
        value = new[name]
        if name == "status":
            fields[name] = SessionStatus(value)
        elif name in TIME_FIELDS:
            fields[name] = None if value is None else from_micros(value)
        else:
            fields[name] = value
    fields["updated_at"] = stamp.updated_at
    fields["lease_owner"] = stamp.lease_owner
    fields["lease_fence"] = fence
    fields["lease_expires_at"] = stamp.lease_expires_at
    return fields, decode_items(loaded.id, rows)


_HEADER_FIELDS = tuple(SessionHeader.model_fields)

_COUNTED = ("version", "last_seq", "history_len", "schema_version")
"""The fields :func:`apply_commit` writes on every commit but ``updated_at`` (the stamp's);
it writes the changed fields too, and nothing else."""
