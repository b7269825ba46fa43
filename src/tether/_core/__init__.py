"""The rules every store shares, with no I/O: encode, check, apply, filter, page.

A store method is *validate and encode here -> one atomic I/O step -> decode here, or raise*.
Keeping the rules here means a store class only moves bytes, and every store agrees on what a
commit, a window or a listing means.

Headers travel between this package and the stores as plain *header documents* (``Doc``): the
fields of :class:`~tether.SessionHeader` with ``status`` as its string, timestamps as integer
microseconds since the epoch, and ``metadata`` / ``state`` / ``options`` as JSON values.

One module per concern, each importing only those above it in this list:

- :mod:`.checks`: the document's shape, the limits, the argument checks run before any I/O;
- :mod:`.rules`: expiry, schema versions, header changes, commits, the kept prefix of a
  ``fork`` / ``replace_tail``, the runtime's ``state["_tether"]`` block;
- :mod:`.leases`: claims, renewals, releases, fencing, who may write;
- :mod:`.items`: history items encoded and decoded, looked up by key;
- :mod:`.headers`: header documents to and from sessions and headers, create / restore;
- :mod:`.stamps`: what a commit stamped (``CommitStamp``) and the session built from it;
- :mod:`.replies`: a commit stamp spliced from a store's reply, the lease a claim granted;
- :mod:`.history`: ``load`` windows and ``iter_history`` pages;
- :mod:`.listing`: filters, order, cursors.

Callers use ``from tether import _core`` and ``_core.name``: the names below are the ones the
stores, the runtime and the tests use.
"""

from __future__ import annotations

from .checks import (
    DEFAULT_PAGE_SIZE,
    DOC_FIELDS,
    JSON_FIELDS,
    MAX_INT,
    MAX_KEYS,
    MAX_NAME_LENGTH,
    MAX_TIME,
    MAX_TTL,
    STATUSES,
    Doc,
    check_after,
    check_item_keys,
    check_restore_args,
    check_version,
    check_window,
    item_list,
    json_copy,
    trusted_json_fields,
)
from .headers import (
    assembled,
    checked_restore,
    construct_trusted,
    copied_fork,
    doc_to_header,
    fields_from_doc,
    header_to_doc,
    listed_header,
    make_session,
    new_session_doc,
    readable_session,
    restore_doc,
    validate_header_doc,
)
from .history import HistoryPages, window, window_floor
from .items import (
    EncodedItem,
    EncodedNewItems,
    PreparedItems,
    UnnumberedItems,
    checked_items,
    decode_item_array,
    decode_items,
    decode_rows,
    decode_stored,
    encode_item,
    encode_unnumbered_items,
    history_view,
    item_views,
    keyed_items,
    keyed_records,
    loaded_item_dicts,
    new_items,
    prepare_encoded_items,
    prepare_items,
    refuse_taken_keys,
    upgrade_items,
)
from .leases import (
    check_delete_args,
    check_delete_lease,
    check_lease,
    check_lease_arg,
    check_owner,
    check_write_lease,
    claim_fields,
    lease_from_doc,
    released_fields,
    ttl_micros,
)
from .listing import ListQuery, build_list_query, decode_cursor, encode_cursor, metadata_index
from .replies import granted_lease, spliced_stamp
from .rules import (
    CHANGEABLE_FIELDS,
    RUNTIME_KEY,
    apply_commit,
    apply_replace,
    apply_tail,
    check_writable,
    is_live,
    is_newer,
    items_kept,
    keep_runtime_block,
    needs_runtime_block,
    needs_upgrade,
    normalize_changes,
    restore_over,
    runtime_writes,
    upgrade_doc,
)
from .stamps import CommitStamp, commit_stamp, stamped_fields, stamped_parts, stamped_session

__all__ = [
    "CHANGEABLE_FIELDS",
    "CommitStamp",
    "DEFAULT_PAGE_SIZE",
    "DOC_FIELDS",
    "JSON_FIELDS",
    "MAX_INT",
    "MAX_KEYS",
    "MAX_NAME_LENGTH",
    "MAX_TIME",
    "MAX_TTL",
    "RUNTIME_KEY",
    "Doc",
    "EncodedItem",
    "EncodedNewItems",
    "HistoryPages",
    "ListQuery",
    "PreparedItems",
    "STATUSES",
    "UnnumberedItems",
    "apply_commit",
    "apply_replace",
    "apply_tail",
    "build_list_query",
    "check_after",
    "check_delete_args",
    "check_delete_lease",
    "check_item_keys",
    "check_lease",
    "check_lease_arg",
    "check_owner",
    "check_restore_args",
    "check_version",
    "check_window",
    "check_writable",
    "check_write_lease",
    "checked_restore",
    "checked_items",
    "claim_fields",
    "commit_stamp",
    "assembled",
    "construct_trusted",
    "copied_fork",
    "decode_cursor",
    "decode_item_array",
    "decode_rows",
    "decode_items",
    "decode_stored",
    "doc_to_header",
    "encode_cursor",
    "encode_item",
    "encode_unnumbered_items",
    "fields_from_doc",
    "granted_lease",
    "header_to_doc",
    "history_view",
    "is_live",
    "is_newer",
    "item_list",
    "item_views",
    "items_kept",
    "json_copy",
    "trusted_json_fields",
    "keep_runtime_block",
    "keyed_items",
    "keyed_records",
    "lease_from_doc",
    "listed_header",
    "loaded_item_dicts",
    "make_session",
    "metadata_index",
    "needs_runtime_block",
    "needs_upgrade",
    "new_items",
    "new_session_doc",
    "normalize_changes",
    "prepare_encoded_items",
    "prepare_items",
    "readable_session",
    "refuse_taken_keys",
    "released_fields",
    "restore_doc",
    "restore_over",
    "runtime_writes",
    "spliced_stamp",
    "stamped_fields",
    "stamped_parts",
    "stamped_session",
    "ttl_micros",
    "upgrade_doc",
    "upgrade_items",
    "validate_header_doc",
    "window",
    "window_floor",
]
