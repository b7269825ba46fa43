"""The SQLite store's statements and rows: the fixed SQL text, how a session header maps to
a row, and how a fork's shared rows are read (see "Forks share rows" below).

Only fixed SQL fragments are ever joined into a statement; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _core, _json
from ..errors import CorruptSession

HEADER_COLUMNS = _core.DOC_FIELDS
UPDATED_AT = HEADER_COLUMNS.index("updated_at")
SELECT_HEADER = f"SELECT {', '.join(HEADER_COLUMNS)} FROM tether_sessions"
# a write's header, and the session's number (its rows' keys: see BASE below)
WRITE_HEADER = f"SELECT {', '.join(HEADER_COLUMNS)}, num FROM tether_sessions WHERE id = ?"
# what a commit reads of the header (its checks, apply_commit and its stamp), and the number
COMMIT_COLUMNS = (
    "id", "version", "schema_version", "expires_at", "last_seq", "history_len", "state",
    "lease_owner", "lease_token", "lease_fence", "lease_expires_at",
)  # fmt: skip
COMMIT_HEADER = f"SELECT {', '.join(COMMIT_COLUMNS)}, num FROM tether_sessions WHERE id = ?"
# a load's header, and whether the session shares rows (a fork): most do not, and then need
# no read of their shares
LOAD_HEADER = (
    f"SELECT {', '.join(HEADER_COLUMNS)}, "
    "EXISTS (SELECT 1 FROM tether_item_shares h WHERE h.session_id = s.id) "
    "FROM tether_sessions s WHERE s.id = ?"
)
INSERT_HEADER = (  # num, the rowid, is SQLite's: the largest in use + 1
    f"INSERT INTO tether_sessions ({', '.join(HEADER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in HEADER_COLUMNS)})"
)
JSON_COLUMNS = frozenset(_core.JSON_FIELDS)
FREE_FIELDS = ("version", "schema_version", "expires_at")  # what _core.restore_over reads
DELETE_COLUMNS = (
    "id", "version", "schema_version", "expires_at", "lease_owner", "lease_token",
    "lease_expires_at",
)  # fmt: skip

# Forks share rows. A fork does not copy its parent's items: it records, in
# tether_item_shares, that its seqs in (lo, hi] are the rows of ``source_id`` with the same
# seqs, so a fork costs O(1) whatever the history's length. A session's own rows and its
# shares never overlap. Before a session's rows are deleted or replaced, every share that
# reads them is turned into the dependent's own rows (_sqlite_rows.detach_dependents): no
# fork ever loses an item to its parent's rewrite or deletion. Past MAX_SHARES pieces (a long
# chain of forks of forks), a fork copies instead, keeping every load one bounded UNION ALL.
MAX_SHARES = 32
SELECT_SHARES = "SELECT lo, hi, source_id FROM tether_item_shares WHERE session_id = ? ORDER BY lo"

# Item rows are keyed by one integer, k = (num << 32) + seq, num being the session's number
# (tether_sessions.num, its rowid: the index on id gives it without reading the row), so
# tether_items is one B-tree (a rowid table), where a (session_id, seq) primary key was a
# table and an index, each written on every commit. A session's rows are the range of k
# after its BASE; session_id and seq stay plain columns (not indexed) so that the database
# reads plainly with other tools, and seq's CHECK keeps k inside the session's range.
MAX_SEQ = (1 << 32) - 1
BASE = "(SELECT num << 32 FROM tether_sessions WHERE id = ?)"
IN_RANGE = f"k > {BASE} + ? AND k <= {BASE} + ?"  # (id, lo, id, hi): the rows lo < seq <= hi


def in_range(session_id: str, lo: int, hi: int = MAX_SEQ) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) of ``session_id``'s rows with lo < seq <= hi."""
    return IN_RANGE, (session_id, lo, session_id, hi)


Share = tuple[int, int, str]  # (lo, hi, source_id): seqs in (lo, hi] are source_id's rows


def items_query(
    session_id: str,
    shares: Sequence[Share],
    floor: int,
    columns: str = "CAST(data AS BLOB)",
    limit: int | None = None,
) -> tuple[str, list[Any]]:
    """A SELECT of ``columns`` (of ``seq, data``) for every item of ``session_id`` after
    ``floor``, in order: its own rows and the rows its shares point at; with ``limit``, only
    the first ``limit`` of them (seqs are contiguous, so each part is also cut at seq
    ``floor + limit`` and no row past the page is read). Only fixed fragments are joined;
    every value is a bound parameter."""
    top = MAX_SEQ if limit is None else floor + limit
    parts, params = [IN_RANGE], [session_id, floor, session_id, top]
    for lo, hi, source_id in shares:
        if min(hi, top) > max(lo, floor):
            parts.append(IN_RANGE)
            params += [source_id, max(lo, floor), source_id, min(hi, top)]
    if len(parts) == 1:  # the session's own rows alone: in k order already, nothing to sort
        sql = f"SELECT {columns} FROM tether_items WHERE {IN_RANGE} ORDER BY k"
    else:
        union = " UNION ALL ".join(f"SELECT seq, data FROM tether_items WHERE {w}" for w in parts)
        sql = f"SELECT {columns} FROM ({union}) ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def fork_shares(parent_id: str, parent_shares: Sequence[Share], at: int) -> list[Share]:
    """A fork's shares at seq ``at`` of a parent whose history starts at seq 1: the parent's
    own shares below ``at``, and the parent's own rows (the gaps between them) as shares of the
    parent itself. Adjacent pieces of one source merge."""
    shares: list[Share] = []

    def add(lo: int, hi: int, source_id: str) -> None:
        if hi <= lo:
            return
        if shares and shares[-1][2] == source_id and shares[-1][1] == lo:
            shares[-1] = (shares[-1][0], hi, source_id)
        else:
            shares.append((lo, hi, source_id))

    covered = 0
    for lo, hi, source_id in sorted(parent_shares):
        if lo >= at:
            break
        add(covered, min(lo, at), parent_id)
        add(lo, min(hi, at), source_id)
        covered = hi
    add(covered, at, parent_id)
    return shares


def row_to_doc(row: Sequence[Any]) -> _core.Doc:
    doc = dict(zip(HEADER_COLUMNS, row, strict=True))
    try:
        for name in _core.JSON_FIELDS:
            doc[name] = _json.loads(doc[name])
    except _json.JSONDecodeError as exc:
        raise CorruptSession(str(doc["id"]), f"its {name} column is not valid JSON") from exc
    return doc


def doc_to_row(doc: _core.Doc) -> tuple[Any, ...]:
    return tuple(
        _json.dumps(doc[name]).decode() if name in JSON_COLUMNS else doc[name]
        for name in HEADER_COLUMNS
    )
