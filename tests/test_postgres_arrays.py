"""A write's new items go to PostgreSQL as array literals the store writes itself
(``stores/postgres/_arrays.py``): every text must arrive exactly as it was, whatever it holds,
on a connection with the store's dumpers and on one without them. Against the real server
(skipped without it, a failure under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tether import Session
from tether.stores.postgres import PostgresStore, _arrays, _options

from .conftest import give_back_postgres_schema, take_postgres_schema, with_options

AWKWARD = [
    "",
    "NULL",
    "null",
    '"',
    '\\"',
    "\\",
    "\\\\N",
    "{}",
    "{a,b}",
    "a,b",
    " spaced ",
    "\t\n\r",
    "é ü 漢字 🙂",
    '{"role": "user", "content": "say \\"hi\\" \\\\ {x}, [y]"}',
]


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    conninfo, _ = _options.parse_url(postgres_url)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        yield connection


@pytest.mark.parametrize("registered", [True, False])
def test_texts_and_flags_arrive_as_they_were(
    conn: psycopg.Connection[Any], registered: bool
) -> None:
    if registered:
        _arrays.register(conn.adapters)
    texts = _arrays.Texts(AWKWARD)
    keys = _arrays.OptionalTexts([None, *AWKWARD, None])
    flags = _arrays.Flags([True, False, False, True])
    for _ in range(7):  # past psycopg's prepare threshold too
        row = conn.execute(
            "SELECT %(t)s::text[], %(k)s::text[], %(f)s::boolean[], %(e)s::text[]",
            {"t": texts, "k": keys, "f": flags, "e": _arrays.Texts()},
        ).fetchone()
        assert row == (AWKWARD, [None, *AWKWARD, None], [True, False, False, True], [])


def test_the_literal_quotes_every_text() -> None:
    assert _arrays.text_literal(["a", None, 'b"\\c']) == '{"a",NULL,"b\\"\\\\c"}'


def test_awkward_items_round_trip_through_the_store(postgres_url: str) -> None:
    schema = take_postgres_schema(postgres_url)
    try:
        with PostgresStore.from_url(with_options(postgres_url, schema=schema)) as store:
            items = [{"role": "user", "content": text, text: [text]} for text in AWKWARD]
            created = store.create(Session(history=items[:3]))
            store.commit(created.id, 1, append=items[3:])
            loaded = store.load(created.id)
            assert [
                {k: v for k, v in item.items() if k not in ("seq", "timestamp")}
                for item in loaded.history
            ] == items
    finally:
        give_back_postgres_schema(postgres_url, schema)


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII"])
def test_texts_arrive_whatever_client_encoding_the_url_names(
    postgres_url: str, encoding: str
) -> None:
    schema = take_postgres_schema(postgres_url)
    url = with_options(postgres_url, schema=schema, client_encoding=encoding)
    try:
        with PostgresStore.from_url(url) as store:
            created = store.create(Session(history=[{"role": "user", "content": "漢字 é"}]))
            store.commit(created.id, 1, append=[{"role": "assistant", "content": "🙂"}])
            assert [item["content"] for item in store.load(created.id).history] == [
                "漢字 é",
                "🙂",
            ]
            with store._connection("test") as conn:
                assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
    finally:
        give_back_postgres_schema(postgres_url, schema)
