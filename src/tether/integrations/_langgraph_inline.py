"""The layout of values kept inline (no I/O): which channel values a checkpoint's item
holds itself (:func:`tiny`: None, bools, numbers, short strings) and which channels it lists as
empty, so that neither is an item (two rows, with its key) of its own. A checkpoint item says
it is in this layout through its encoding (:func:`marked`); one stored before it has neither,
and every channel it names is an item of its own. See
:mod:`tether.integrations._langgraph_core` for the rest of a thread's layout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..models import StoredItem
from ._langgraph_core import BLOB, key
from ._langgraph_values import INLINE

INLINE_CHARS = 64  # a str channel value up to this long is kept in its checkpoint's item
EMPTY = "empty"  # a checkpoint item's list of the channels it names that are empty there


def tiny(value: Any) -> bool:
    """Whether a channel value is kept inside its checkpoint's item rather than as an item
    of its own: None, a bool, a 64-bit int, a finite float, a short str (exact types: a
    subclass, an enum, round-trips through the serde as itself only in an item of its own).
    A graph's routing channels (``branch:to:*`` holding None) are most of them: an item
    each would be a row (two, with its key) per step for a few bytes."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**64)
    if kind is float:
        return math.isfinite(value)
    return kind is str and len(value) <= INLINE_CHARS


def kept_inline(
    values: Mapping[str, Any],
    versions: Mapping[str, Any],
    new_versions: Mapping[str, Any],
    known_empty: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, str]]:
    """What a put keeps in its checkpoint's item: the :func:`tiny` values (by channel), and
    the channels empty at their version (by channel: that version). A channel emptied by
    this checkpoint (in ``new_versions``, without a value) is empty; one it did not change
    is listed when ``known_empty`` (the checkpoint this process put or read last) says its
    version is empty, else it is read by key and found absent, which reads as empty too."""
    inline: dict[str, Any] = {}
    empty: dict[str, str] = {}
    for channel, version in versions.items():
        if channel in values:
            if tiny(values[channel]):
                inline[channel] = values[channel]
        elif (
            channel in new_versions and str(new_versions[channel]) == str(version)
        ) or known_empty.get(channel) == str(version):
            empty[channel] = str(version)
    return inline, empty


def marked(item: Mapping[str, Any]) -> bool:
    """Whether a checkpoint item is in the layout of values kept inline (its encoding says
    so: :func:`~tether.integrations._langgraph_values.mark_inline`): its writes committed
    after it may have no first-write mark."""
    packed = item.get("checkpoint")
    return isinstance(packed, list) and len(packed) == 3 and packed[2].endswith(INLINE)


def inline_of(item: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> tuple[Any, Any]:
    """A stored checkpoint's values kept in its item (by channel) and the channels it lists
    as empty (no item, nothing to read). A checkpoint stored before values were kept inline
    has neither: every channel it names is an item of its own (an emptied one holds
    ``empty``)."""
    if not marked(item):
        return {}, ()
    return checkpoint.get("channel_values") or {}, item.get(EMPTY) or ()


def stored_keys(ns: str, item: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> list[str]:
    """The keys of the channel-value items a stored checkpoint reads (those not kept in its
    item nor listed empty)."""
    inline, empty = inline_of(item, checkpoint)
    return [
        key("b", ns, ch, str(v))
        for ch, v in checkpoint["channel_versions"].items()
        if ch not in inline and ch not in empty
    ]


def empties(
    item: Mapping[str, Any], checkpoint: Mapping[str, Any], blobs: Mapping[str, StoredItem]
) -> dict[str, str]:
    """The channels empty at a checkpoint just read, with their versions: those its item
    lists, and those stored as ``empty`` items (a thread written before the list)."""
    versions = checkpoint["channel_versions"]
    found = {ch: str(versions[ch]) for ch in inline_of(item, checkpoint)[1] if ch in versions}
    for blob in blobs.values():
        fields = blob.item
        if fields.get("type") == BLOB and fields["value"][0] == "empty":
            channel = fields["channel"]
            if str(versions.get(channel)) == fields["version"]:
                found[channel] = fields["version"]
    return found
