"""Schema versions of stored sessions, and the migrations that carry old ones forward.

Every stored session records the ``schema_version`` it was written with. When a store reads a
session:

* older than :attr:`SchemaRegistry.current`: the registered migrations upgrade it in memory,
  step by step; the store writes the upgraded form back on the session's next commit;
* newer: :class:`~tether.errors.UnsupportedSchemaVersion` is raised, and no store ever writes
  to it (commit, replace_history, delete and create over it are all refused).

A migration is a pair of pure functions on plain JSON documents: one for the header document
(the fields of :class:`~tether.SessionHeader`, timestamps as integer microseconds) and one for a
history item. Either may be omitted when that part did not change::

    from tether.schema import schema

    @schema.header_migration(from_version=1)
    def _rename_agent(doc: dict) -> dict:
        doc["agent"] = doc.pop("agent_name", None)
        return doc
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptSession, UnsupportedSchemaVersion

__all__ = ["CURRENT_SCHEMA_VERSION", "SchemaRegistry", "schema"]

CURRENT_SCHEMA_VERSION = 3

Doc = dict[str, Any]
Migration = Callable[[Doc], Doc]


@dataclass
class SchemaRegistry:
    """The current schema version and the migrations from every older one."""

    current: int = CURRENT_SCHEMA_VERSION
    header_migrations: dict[int, Migration] = field(default_factory=dict)
    item_migrations: dict[int, Migration] = field(default_factory=dict)

    def header_migration(self, *, from_version: int) -> Callable[[Migration], Migration]:
        def register(fn: Migration) -> Migration:
            self.header_migrations[from_version] = fn
            return fn

        return register

    def item_migration(self, *, from_version: int) -> Callable[[Migration], Migration]:
        def register(fn: Migration) -> Migration:
            self.item_migrations[from_version] = fn
            return fn

        return register

    def check(self, session_id: str, version: int) -> None:
        """Raise unless a session stored at ``version`` can be read (and later written)."""
        if version > self.current:
            raise UnsupportedSchemaVersion(session_id, version, self.current)
        if version < 1:
            raise CorruptSession(session_id, f"schema version {version} is not a valid version")

    def upgrade_header(self, doc: Doc) -> Doc:
        """Bring a header document to the current version (a no-op when it is current)."""
        version = int(doc.get("schema_version", 0))
        self.check(str(doc.get("id")), version)
        while version < self.current:
            step = self.header_migrations.get(version)
            if step is not None:
                doc = step(doc)
            version += 1
        doc["schema_version"] = self.current
        return doc

    def items_need_upgrade(self, version: int) -> bool:
        return any(v in self.item_migrations for v in range(version, self.current))

    def upgrade_item(self, item: Doc, from_version: int) -> Doc:
        for version in range(from_version, self.current):
            step = self.item_migrations.get(version)
            if step is not None:
                item = step(item)
        return item


schema = SchemaRegistry()
"""The registry every built-in store reads. Register migrations on it."""


# --- the history of the session document ---------------------------------------------------------
# 1: the first layout (tether 0.1 before claims).
# 2: adds the lease fields (lease_owner, lease_token, lease_fence, lease_expires_at).
# 3: a history row keeps the item exactly as given, with tether's fields beside it:
#    {"seq": 7, "timestamp": "...", "key": "optional", "item": {...}}; before, the row was the
#    item with "seq" and "timestamp" merged into it (and every item had a "role").


@schema.header_migration(from_version=1)
def _add_lease_fields(doc: Doc) -> Doc:
    for name, empty in (
        ("lease_owner", None),
        ("lease_token", None),
        ("lease_fence", 0),
        ("lease_expires_at", None),
    ):
        doc.setdefault(name, empty)
    return doc


@schema.item_migration(from_version=2)
def _item_beside_fields(item: Doc) -> Doc:
    if "role" not in item and isinstance(item.get("item"), dict):
        return item  # already a schema-3 row
    inner = {k: v for k, v in item.items() if k not in ("seq", "timestamp")}
    return {"seq": item["seq"], "timestamp": item["timestamp"], "item": inner}
