"""The arrays of a write's new items (their JSON texts, stamp flags and keys), sent as
PostgreSQL array literals that the store writes itself.

psycopg adapts a Python list element by element in Python (a dumper looked up and called
per element, a regular expression escaping each text in text format, a length header per
element in binary): for a chat turn's commit, its three small arrays cost about 14 µs of
client CPU per call, as much as the rest of the statement's parameters together
(docs/postgres.md). A text array literal needs each element in double quotes with ``\\`` and
``"`` escaped (two ``str.replace`` in C), NULL bare; the statement casts it to ``text[]`` or
``boolean[]`` as before. The list types mark which lists go this way; a connection without
the dumpers (:func:`register`) sends them as the lists they are, with the same meaning.
"""

from __future__ import annotations

from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format


class Texts(list[str]):
    """A ``text[]`` parameter without NULLs."""


class OptionalTexts(list[str | None]):
    """A ``text[]`` parameter whose None elements are NULL."""


class Flags(list[bool]):
    """A ``boolean[]`` parameter."""


def text_literal(values: list[str] | list[str | None]) -> str:
    """``values`` as a PostgreSQL array literal: ``{"a","b \\"quoted\\"",NULL}``."""
    return (
        "{"
        + ",".join(
            "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )


class _TextsDumper(Dumper):
    format = Format.TEXT

    def dump(self, obj: list[str] | list[str | None]) -> bytes:
        return text_literal(obj).encode()  # tether's connections are UTF8 (_options)


class _FlagsDumper(Dumper):
    format = Format.TEXT

    def dump(self, obj: list[bool]) -> bytes:
        return ("{" + ",".join("t" if flag else "f" for flag in obj) + "}").encode()


def register(adapters: AdaptersMap) -> None:
    """Send :class:`Texts`, :class:`OptionalTexts` and :class:`Flags` as literals on the
    connection whose ``adapters`` these are."""
    adapters.register_dumper(Texts, _TextsDumper)
    adapters.register_dumper(OptionalTexts, _TextsDumper)
    adapters.register_dumper(Flags, _FlagsDumper)
