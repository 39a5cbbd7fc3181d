"""Incremental SQL and HTTP sources: snapshots extended past a watermark, merged by key."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from stages import acquire as acquire_stage
from stages.acquire import acquire, parse_sources
from stages.acquisition.incremental import SNAPSHOT_METADATA_KEY, max_watermark
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import read_json, read_table


def add_tickets(path: Path, rows: list[tuple[int, str, str, int]]) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS tickets (id INTEGER, body TEXT, intent TEXT, version INTEGER)"
        )
        connection.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)", rows)


def execute(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(sql)


@pytest.fixture
def tickets_db(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.sqlite"
    add_tickets(
        path,
        [
            (1, "card not working", "card", 10),
            (2, "refund please", "refund", 20),
            (3, "pin blocked", "card", 30),
        ],
    )
    return path


def sql_source(path: Path, **overrides: Any) -> dict[str, Any]:
    source = {
        "name": "tickets",
        "type": "sql",
        "url": f"sqlite:///{path}",
        "query": "SELECT id, body, intent, version FROM tickets",
        "columns": {"text": "body", "label": "intent"},
        "watermark": "version",
        "key": ["id"],
    }
    source.update(overrides)
    return source


def snapshot_state(path: Path) -> dict[str, Any]:
    return json.loads(pq.read_schema(path).metadata[SNAPSHOT_METADATA_KEY])


def test_first_run_reads_all_and_writes_snapshot(tickets_db, tmp_path, read_source):
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()

    batch = read_source(sql_source(tickets_db), snapshot_dir=snapshots)

    assert batch.records["body"].tolist() == ["card not working", "refund please", "pin blocked"]
    assert batch.extra["refresh"] == "full (no snapshot yet)"
    assert batch.extra["rows_new"] == 3
    assert batch.extra["watermark_after"] == "30"
    state = snapshot_state(snapshots / "tickets.parquet")
    assert state["watermark"] == {"type": "int", "value": "30"}
    assert state["next_source_row"] == 4
    assert state["last_read_complete"] is True


def test_rerun_merges_new_rows_by_key(tickets_db, tmp_path, read_source):
    read_source(sql_source(tickets_db), snapshot_dir=tmp_path)
    add_tickets(tickets_db, [(4, "refund missing", "refund", 40)])
    execute(tickets_db, "UPDATE tickets SET body = 'card still not working', version = 50 WHERE id = 1")

    batch = read_source(sql_source(tickets_db), snapshot_dir=tmp_path)

    assert batch.extra["rows_read"] == 2
    assert batch.extra["rows_new"] == 1
    assert batch.extra["rows_updated"] == 1
    assert batch.extra["watermark_before"] == "30"
    assert batch.extra["watermark_after"] == "50"
    records = batch.records.set_index("id")
    # The updated record keeps the row number it got when first read.
    assert records.loc["1", "source_row"] == 1
    assert records.loc["1", "body"] == "card still not working"
    assert records.loc["4", "source_row"] == 4
    assert (
        records.loc["2", "source_query"]
        == "SELECT * FROM (SELECT id, body, intent, version FROM tickets) AS acquire_source "
        "ORDER BY acquire_source.version"
    )
    assert records.loc["4", "source_query"].endswith('-- parameters: {"acquire_watermark": "30"}')
    assert len(batch.records) == 4


def test_rerun_without_changes_gives_same_rows(tickets_db, tmp_path):
    configs = parse_sources([sql_source(tickets_db)])

    first, _, _ = acquire(configs, seed=0, snapshot_dir=tmp_path)
    second, _, metrics = acquire(configs, seed=0, snapshot_dir=tmp_path)

    assert metrics["sources"]["tickets"]["rows_read"] == 0
    assert second["row_id"].tolist() == first["row_id"].tolist()
    assert second["content_hash"].tolist() == first["content_hash"].tolist()
    assert second["acquired_at"].tolist() == first["acquired_at"].tolist()


def test_row_ids_stay_stable_across_updates(tickets_db, tmp_path):
    configs = parse_sources([sql_source(tickets_db)])
    first, _, _ = acquire(configs, seed=0, snapshot_dir=tmp_path)
    execute(tickets_db, "UPDATE tickets SET body = 'pin still blocked', version = 60 WHERE id = 3")

    second, _, _ = acquire(configs, seed=0, snapshot_dir=tmp_path)

    assert second["row_id"].tolist() == first["row_id"].tolist()
    assert second["content_hash"].tolist()[:2] == first["content_hash"].tolist()[:2]
    assert second["content_hash"].iloc[2] != first["content_hash"].iloc[2]


def test_without_key_exact_duplicates_are_skipped(tmp_path, read_source):
    path = tmp_path / "events.sqlite"
    add_tickets(path, [(1, "a", "x", 1), (2, "b", "x", 2)])
    raw = sql_source(path, key=[], query="SELECT body, intent, version FROM tickets", watermark="version")
    read_source(raw, snapshot_dir=tmp_path)
    add_tickets(path, [(3, "c", "x", 3)])

    batch = read_source(raw, snapshot_dir=tmp_path)

    assert batch.records["body"].tolist() == ["a", "b", "c"]
    assert batch.extra["rows_new"] == 1


def test_refresh_full_reads_everything_again(tickets_db, tmp_path, read_source):
    read_source(sql_source(tickets_db), snapshot_dir=tmp_path)
    execute(tickets_db, "DELETE FROM tickets WHERE id = 2")

    batch = read_source(sql_source(tickets_db, refresh="full"), snapshot_dir=tmp_path)

    assert batch.extra["refresh"] == "full (refresh: full)"
    assert batch.records["id"].tolist() == ["1", "3"]
    assert batch.extra["rows_read"] == 2


def test_changed_query_reads_everything_again(tickets_db, tmp_path, read_source):
    read_source(sql_source(tickets_db), snapshot_dir=tmp_path)

    batch = read_source(
        sql_source(tickets_db, query="SELECT id, body, intent, version FROM tickets WHERE intent = 'card'"),
        snapshot_dir=tmp_path,
    )

    assert batch.extra["refresh"] == "full (source definition changed)"
    assert batch.records["id"].tolist() == ["1", "3"]


def test_unreadable_snapshot_fails(tickets_db, tmp_path, read_source):
    (tmp_path / "tickets.parquet").write_text("not parquet")

    with pytest.raises(
        InputDataError, match=r"tickets.parquet: the snapshot is not a readable Parquet file .*refresh: full"
    ):
        read_source(sql_source(tickets_db), snapshot_dir=tmp_path)


def test_watermark_without_snapshot_folder_fails(tickets_db, read_source):
    with pytest.raises(
        ParamsError, match=r"`acquire.sources\[0\].watermark` needs a snapshot folder.*--snapshots DIR"
    ):
        read_source(sql_source(tickets_db), snapshot_dir=None)


def test_missing_watermark_column_fails(tickets_db, tmp_path, read_source):
    with pytest.raises(InputDataError, match=r"the query failed: no such column: acquire_source.updated_at"):
        read_source(sql_source(tickets_db, watermark="updated_at"), snapshot_dir=tmp_path)


def test_mixed_watermark_types_fail():
    assert max_watermark([3, 7.5, None], 5, "version", "db") == 7.5
    with pytest.raises(InputDataError, match=r"watermark values mix types \(int and str\)"):
        max_watermark([3, "2024-01-01"], None, "version", "db")


# HTTP --------------------------------------------------------------------------------------------


def versioned_route(records: list[dict[str, Any]], honour_since: bool = True):
    """Serve `records` on one page; with `honour_since`, only those with version > `since`."""

    def route(query: dict[str, str], headers: dict[str, str]):
        since = int(query["since"]) if "since" in query and honour_since else None
        selected = [record for record in records if since is None or record["version"] > since]
        return 200, {}, {"items": selected}

    return route


def http_source(url: str, **overrides: Any) -> dict[str, Any]:
    source = {
        "name": "api",
        "type": "http",
        "url": url,
        "records_path": "items",
        "columns": {"text": "body", "label": "intent"},
        "watermark": "version",
        "watermark_param": "since",
        "key": ["id"],
    }
    source.update(overrides)
    return source


def api_records(*rows: tuple[int, str, int]) -> list[dict[str, Any]]:
    return [
        {"id": number, "body": body, "intent": "card", "version": version} for number, body, version in rows
    ]


def test_http_rerun_sends_watermark_and_appends(json_server, recorded_sleeps, tmp_path, read_source):
    records = api_records((1, "a", 1), (2, "b", 2))
    json_server.routes["/items"] = versioned_route(records)
    read_source(http_source(json_server.url("/items")), snapshot_dir=tmp_path)
    records.append(api_records((3, "c", 3))[0])

    batch = read_source(http_source(json_server.url("/items")), snapshot_dir=tmp_path)

    assert [request.query.get("since") for request in json_server.requests] == [None, "2"]
    assert batch.records["body"].tolist() == ["a", "b", "c"]
    assert batch.records["source_query"].tolist()[2] == json_server.url("/items?since=2")
    assert batch.extra["watermark_after"] == "3"


def test_http_server_ignoring_watermark_adds_no_duplicates(
    json_server, recorded_sleeps, tmp_path, read_source
):
    records = api_records((1, "a", 1), (2, "b", 2))
    json_server.routes["/items"] = versioned_route(records, honour_since=False)
    read_source(http_source(json_server.url("/items")), snapshot_dir=tmp_path)
    records.append(api_records((3, "c", 3))[0])

    batch = read_source(http_source(json_server.url("/items")), snapshot_dir=tmp_path)

    assert batch.records["body"].tolist() == ["a", "b", "c"]
    assert batch.extra["rows_not_newer"] == 2
    assert batch.extra["rows_new"] == 1


def test_http_partial_read_keeps_old_watermark(json_server, recorded_sleeps, tmp_path, read_source):
    pages = {"1": api_records((1, "a", 5)), "2": "not json"}
    json_server.routes["/paged"] = lambda query, headers: (
        200,
        {},
        {"items": pages[query["page"]]} if query["page"] == "1" else pages["2"],
    )
    raw = http_source(json_server.url("/paged"), pagination={"type": "page"}, on_error="keep_partial")

    batch = read_source(raw, snapshot_dir=tmp_path)

    assert batch.records["body"].tolist() == ["a"]
    assert batch.extra["complete"] is False
    assert batch.extra["watermark_after"] is None
    assert snapshot_state(tmp_path / "api.parquet")["last_read_complete"] is False


def test_http_rejected_records_stay_in_quarantine(json_server, recorded_sleeps, tmp_path):
    records: list[Any] = [*api_records((1, "a", 1)), "stray"]
    json_server.routes["/items"] = lambda query, headers: (
        200,
        {},
        {"items": records if "since" not in query else api_records((2, "b", 2))},
    )
    configs = parse_sources([http_source(json_server.url("/items"))])
    acquire(configs, seed=0, snapshot_dir=tmp_path)

    table, quarantine, _ = acquire(configs, seed=0, snapshot_dir=tmp_path)

    assert table["text"].tolist() == ["a", "b"]
    assert quarantine.frame()["source_row"].tolist() == [2]
    assert table["source_row"].tolist() == [1, 3]


# Stage entry point --------------------------------------------------------------------------------


def test_stage_writes_snapshot_folder(tickets_db, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"seed": 1, "acquire": {"sources": [sql_source(tickets_db)]}}))
    outputs = tmp_path / "out"
    argv = [
        "--params", str(params),
        "--out", str(outputs / "rows.parquet"),
        "--quarantine", str(outputs / "quarantine.parquet"),
        "--metrics", str(outputs / "acquire.json"),
        "--snapshots", str(outputs / "snapshots"),
    ]  # fmt: skip

    acquire_stage.main(argv)
    add_tickets(tickets_db, [(4, "refund missing", "refund", 40)])
    acquire_stage.main(argv)

    assert (outputs / "snapshots" / "tickets.parquet").is_file()
    assert len(read_table(outputs / "rows.parquet")) == 4
    metrics = read_json(outputs / "acquire.json")
    assert metrics["sources"]["tickets"]["rows_new"] == 1
    assert metrics["sources"]["tickets"]["snapshot"] == str(outputs / "snapshots" / "tickets.parquet")
