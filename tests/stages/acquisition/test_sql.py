"""The `sql` source on a real SQLite file and a real PostgreSQL server started on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from stages.acquire import acquire, parse_sources
from stages.acquisition.sql import public_location
from stages.core.errors import InputDataError, ParamsError

PASSWORD = "pw-7Hq2r9LmX4"


@pytest.fixture
def tickets_db(tmp_path: Path) -> Path:
    """A SQLite file with five tickets (one with a quote in its customer name)."""
    path = tmp_path / "tickets.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE tickets "
            "(id INTEGER, customer TEXT, body TEXT, intent TEXT, score REAL, updated_at TEXT)"
        )
        connection.executemany(
            "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, "ana", "card not working", "card", 1.0, "2024-01-01T10:00:00"),
                (2, "O'Brien", "refund please", "refund", 0.5, "2024-01-02T10:00:00"),
                (3, "li", "where is my card", "card", None, "2024-01-03T10:00:00"),
                (4, "ana", "refund missing", "refund", 2.25, "2024-01-04T10:00:00"),
                (5, "sam", "pin blocked", "card", 3.0, "2024-01-05T10:00:00"),
            ],
        )
    return path


def sql_source(url: str, **overrides: Any) -> dict[str, Any]:
    source = {
        "name": "tickets-db",
        "type": "sql",
        "url": url,
        "query": "SELECT id, customer, body, intent, score FROM tickets ORDER BY id",
        "columns": {"text": "body", "label": "intent"},
    }
    source.update(overrides)
    return source


def test_sqlite_rows_are_read_in_chunks(tickets_db, read_source):
    batch = read_source(sql_source(f"sqlite:///{tickets_db}", chunk_size=2))

    assert batch.records["body"].tolist() == [
        "card not working",
        "refund please",
        "where is my card",
        "refund missing",
        "pin blocked",
    ]
    assert batch.records["source_row"].tolist() == [1, 2, 3, 4, 5]
    assert batch.records["score"].iloc[0] == "1"
    assert batch.records["score"].iloc[1] == "0.5"
    assert pd.isna(batch.records["score"].iloc[2])
    assert batch.records["score"].iloc[3] == "2.25"
    assert (
        batch.records["source_query"].iloc[0]
        == "SELECT id, customer, body, intent, score FROM tickets ORDER BY id"
    )
    assert batch.location == f"sqlite:///{tickets_db}"
    assert batch.extra == {"rows_read": 5}


def test_parameters_are_bound_not_formatted(tickets_db, read_source):
    query = "SELECT id, body, intent FROM tickets WHERE customer = :customer"

    batch = read_source(
        sql_source(f"sqlite:///{tickets_db}", query=query, parameters={"customer": "O'Brien"})
    )
    assert batch.records["id"].tolist() == ["2"]
    assert batch.records["source_query"].iloc[0] == f'{query}\n-- parameters: {{"customer": "O\'Brien"}}'

    # An injection attempt is a plain value that matches no customer.
    with pytest.raises(InputDataError, match=r"the query returned no rows"):
        read_source(
            sql_source(f"sqlite:///{tickets_db}", query=query, parameters={"customer": "x' OR '1'='1"})
        )


def test_acquire_maps_sql_columns_and_provenance(tickets_db):
    configs = parse_sources([sql_source(f"sqlite:///{tickets_db}", chunk_size=3)])

    table, quarantine, metrics = acquire(configs, seed=0)

    assert table["text"].tolist()[:2] == ["card not working", "refund please"]
    assert table["label"].tolist()[:2] == ["card", "refund"]
    assert set(table["source_type"]) == {"sql"}
    assert table["acquired_at"].notna().all()
    assert table["content_hash"].str.len().eq(64).all()
    assert table["row_id"].is_unique
    assert metrics["sources"]["tickets-db"]["rows_read"] == 5
    assert len(quarantine) == 0


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, r"has no value for the query placeholder\(s\) \[':customer'\]"),
        ({"customer": "ana", "extra": 1}, r"sets \['extra'\], which the query does not use"),
    ],
)
def test_parameter_mismatch_is_rejected(tickets_db, read_source, parameters, message):
    raw = sql_source(
        f"sqlite:///{tickets_db}",
        query="SELECT * FROM tickets WHERE customer = :customer",
        parameters=parameters,
    )

    with pytest.raises(ParamsError, match=message):
        read_source(raw)


def test_password_in_params_url_is_rejected(read_source):
    raw = sql_source(f"postgresql+psycopg://reader:{PASSWORD}@127.0.0.1:9/tickets")

    with pytest.raises(
        ParamsError, match=r"`acquire.sources\[0\].url` contains a password.*password_env"
    ) as caught:
        read_source(raw)
    assert PASSWORD not in str(caught.value)


def test_location_hides_password_and_secret_options():
    url = sa.make_url(
        f"postgresql+psycopg://reader:{PASSWORD}@db.internal:5432/tickets?sslpassword={PASSWORD}&application_name=acquire"
    )

    location = public_location(url)

    assert PASSWORD not in location
    assert (
        location
        == "postgresql+psycopg://reader:***@db.internal:5432/tickets?application_name=acquire&sslpassword=***"
    )


def test_url_env_is_read(tickets_db, read_source, monkeypatch):
    monkeypatch.setenv("TICKETS_URL", f"sqlite:///{tickets_db}")

    batch = read_source(sql_source(None, url_env="TICKETS_URL"))

    assert len(batch.records) == 5
    assert batch.location == f"sqlite:///{tickets_db}"


def test_invalid_url_env_is_not_echoed(read_source, monkeypatch):
    monkeypatch.setenv("TICKETS_URL", f"not a url {PASSWORD}")

    with pytest.raises(
        InputDataError, match=r"environment variable TICKETS_URL is not a valid SQLAlchemy URL"
    ) as caught:
        read_source(sql_source(None, url_env="TICKETS_URL"))
    assert PASSWORD not in str(caught.value)


def test_missing_url_environment_variable_fails(read_source, monkeypatch):
    monkeypatch.delenv("TICKETS_URL", raising=False)

    with pytest.raises(
        InputDataError, match=r"source `tickets-db`: environment variable TICKETS_URL .* is not set"
    ):
        read_source(sql_source(None, url_env="TICKETS_URL"))


def test_missing_sqlite_file_fails(tmp_path, read_source):
    missing = tmp_path / "absent.sqlite"

    with pytest.raises(InputDataError, match=r"SQLite database file not found"):
        read_source(sql_source(f"sqlite:///{missing}"))
    assert not missing.exists()


def test_query_error_names_the_query_key(tickets_db, read_source):
    with pytest.raises(
        InputDataError, match=r"the query failed: no such table: ticket\. Check `acquire.sources\[0\].query`"
    ):
        read_source(sql_source(f"sqlite:///{tickets_db}", query="SELECT * FROM ticket"))


def test_unknown_driver_is_rejected(read_source):
    with pytest.raises(ParamsError, match=r"names a database driver that is not installed"):
        read_source(sql_source("nosuchdb://127.0.0.1/tickets"))


def test_reserved_column_name_is_rejected(tickets_db, read_source):
    with pytest.raises(InputDataError, match=r"fields named \['source_row'\].*SELECT x AS other_name"):
        read_source(
            sql_source(f"sqlite:///{tickets_db}", query="SELECT id AS source_row, body, intent FROM tickets")
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": None}, r"set exactly one of `url`"),
        ({"url_env": "TICKETS_URL"}, r"set exactly one of `url`"),
        ({"chunk_size": 0}, r"`acquire.sources\[0\].chunk_size` is invalid"),
        ({"parameters": {"acquire_watermark": 1}}, r"`acquire_watermark` is reserved"),
        ({"key": ["id"]}, r"`key` only applies to incremental sources"),
        ({"password_env": "not a name"}, r"`acquire.sources\[0\].password_env` is invalid"),
    ],
)
def test_invalid_params_are_rejected(overrides, message):
    raw = sql_source("sqlite:///tickets.sqlite")
    raw.update(overrides)

    with pytest.raises(ParamsError, match=message):
        parse_sources([raw])


# PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_tickets(postgres_server):
    """A database `tickets` with a login role `reader` (password PASSWORD) and a tickets table."""
    server = postgres_server
    server.psql("DROP DATABASE IF EXISTS tickets")
    server.psql("DROP ROLE IF EXISTS reader")
    server.psql(f"CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'")
    server.psql("CREATE DATABASE tickets OWNER reader")
    server.psql(
        "CREATE TABLE tickets (id integer PRIMARY KEY, body text, intent text, updated_at timestamptz);"
        "INSERT INTO tickets VALUES"
        " (1, 'card not working', 'card', '2024-01-01 10:00+00'),"
        " (2, 'refund please', 'refund', '2024-01-02 10:00+00'),"
        " (3, 'pin blocked', 'card', '2024-01-03 10:00+00');"
        "GRANT SELECT ON tickets TO reader;",
        database="tickets",
    )
    return server


@pytest.mark.postgres
def test_postgres_reads_with_password_env(postgres_tickets, read_source, monkeypatch, caplog):
    monkeypatch.setenv("PG_PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    raw = sql_source(
        postgres_tickets.url("reader", "tickets"),
        password_env="PG_PASSWORD",
        query="SELECT id, body, intent, updated_at FROM tickets WHERE intent = :intent ORDER BY id",
        parameters={"intent": "card"},
        chunk_size=1,
    )

    batch = read_source(raw)

    assert batch.records["body"].tolist() == ["card not working", "pin blocked"]
    assert batch.records["updated_at"].tolist() == ["2024-01-01T10:00:00+00:00", "2024-01-03T10:00:00+00:00"]
    assert batch.location == f"postgresql+psycopg://reader:***@127.0.0.1:{postgres_tickets.port}/tickets"
    assert PASSWORD not in caplog.text


@pytest.mark.postgres
def test_postgres_wrong_password_fails_without_echo(postgres_tickets, read_source, monkeypatch):
    monkeypatch.setenv("PG_PASSWORD", "not-" + PASSWORD)

    with pytest.raises(
        InputDataError, match=r"could not connect to the database: .*password authentication failed"
    ) as caught:
        read_source(sql_source(postgres_tickets.url("reader", "tickets"), password_env="PG_PASSWORD"))
    assert PASSWORD not in str(caught.value)


@pytest.mark.postgres
def test_postgres_incremental_timestamp_watermark(postgres_tickets, read_source, monkeypatch, tmp_path):
    monkeypatch.setenv(
        "PG_URL", postgres_tickets.url("reader", "tickets").replace("reader@", f"reader:{PASSWORD}@")
    )
    raw = sql_source(
        None,
        url_env="PG_URL",
        query="SELECT id, body, intent, updated_at FROM tickets",
        watermark="updated_at",
        key=["id"],
    )

    first = read_source(raw, snapshot_dir=tmp_path)
    postgres_tickets.psql(
        "INSERT INTO tickets VALUES (4, 'refund missing', 'refund', '2024-01-04 10:00+00');"
        "UPDATE tickets SET body = 'card still not working', updated_at = '2024-01-05 10:00+00' "
        "WHERE id = 1;",
        database="tickets",
    )
    second = read_source(raw, snapshot_dir=tmp_path)

    assert first.extra["watermark_after"] == "2024-01-03T10:00:00+00:00"
    assert second.extra["watermark_before"] == "2024-01-03T10:00:00+00:00"
    assert second.extra["rows_read"] == 2
    assert second.extra["rows_new"] == 1
    assert second.extra["rows_updated"] == 1
    assert second.records.sort_values("source_row")["body"].tolist() == [
        "card still not working",
        "refund please",
        "pin blocked",
        "refund missing",
    ]
    assert dt.datetime.fromisoformat(second.extra["watermark_after"]) == dt.datetime(
        2024, 1, 5, 10, tzinfo=dt.timezone.utc
    )
    assert PASSWORD not in (tmp_path / "tickets-db.parquet").read_bytes().decode("latin-1")


def test_sqlite_with_password_fails_without_echo(tickets_db, read_source, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)

    with pytest.raises(
        InputDataError, match=r"the database URL is invalid for its dialect \(Invalid SQLite URL"
    ) as caught:
        read_source(sql_source(f"sqlite:///{tickets_db}", password_env="DB_PASSWORD"))
    assert PASSWORD not in str(caught.value)
