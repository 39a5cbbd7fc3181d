"""Every params example in docs/sources.md runs through the acquire stage against local fixtures."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from stages.acquire import acquire, parse_sources

REPO_ROOT = Path(__file__).resolve().parents[3]
DOC = REPO_ROOT / "docs" / "sources.md"
API_TOKEN = "doc-token-81f2c4"
DB_PASSWORD = "doc-password-6a0e3b"
# The example API URL in the doc; tests point it at their local server.
DOC_API_BASE = "http://127.0.0.1:8000"
DOC_PG_PORT = ":5432/"


def doc_examples() -> list[dict[str, Any]]:
    """Return the `acquire` sections of the YAML blocks in docs/sources.md, in order."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [yaml.safe_load(block)["acquire"] for block in blocks if "acquire:" in block]


EXAMPLES = {section["sources"][0]["name"]: section for section in doc_examples()}


def test_doc_covers_every_source_type():
    types = {source["type"] for section in EXAMPLES.values() for source in section["sources"]}

    assert types == {"csv", "sql", "http", "hf", "synthetic"}


def create_tickets_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE tickets (id INTEGER, body TEXT, intent TEXT, status TEXT, updated_at TEXT)"
        )
        connection.executemany(
            "INSERT INTO tickets VALUES (?, ?, ?, ?, ?)",
            [
                (1, "my card has not arrived", "card_arrival", "closed", "2024-03-01T09:00:00Z"),
                (2, "please refund me", "refund", "open", "2024-03-02T09:00:00Z"),
                (3, "I lost my card", "lost_or_stolen_card", "closed", "2024-03-03T09:00:00Z"),
            ],
        )


TICKETS = [
    {
        "id": 1,
        "body": "my card has not arrived",
        "intent": "card_arrival",
        "updated_at": "2024-03-01T09:00:00Z",
    },
    {"id": 2, "body": "please refund me", "intent": "refund", "updated_at": "2024-03-02T09:00:00Z"},
    {
        "id": 3,
        "body": "I lost my card",
        "intent": "lost_or_stolen_card",
        "updated_at": "2024-03-03T09:00:00Z",
    },
]


def serve_tickets_api(json_server) -> None:
    """Serve TICKETS at /api/tickets, two per page, with a cursor and the `updated_after` filter."""

    def route(query: dict[str, str], headers: dict[str, str]):
        if headers.get("Authorization") != f"Bearer {API_TOKEN}":
            return 401, {}, {"error": "unauthorized"}
        if query.get("status") != "closed":
            return 400, {}, {"error": "status filter expected"}
        after = query.get("updated_after", "")
        selected = [ticket for ticket in TICKETS if ticket["updated_at"] > after]
        start = int(query.get("cursor", "0"))
        page = selected[start : start + 2]
        next_cursor = str(start + 2) if start + 2 < len(selected) else None
        return 200, {}, {"data": page, "meta": {"next_cursor": next_cursor}}

    json_server.routes["/api/tickets"] = route


@pytest.fixture
def doc_workspace(tmp_path, monkeypatch, json_server) -> Path:
    """A working folder laid out like the repository: BANKING77 files, a tickets database, the API server."""
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    (sources / "banking77").symlink_to(REPO_ROOT / "data" / "sources" / "banking77")
    create_tickets_db(sources / "tickets.sqlite")
    serve_tickets_api(json_server)
    monkeypatch.setenv("TICKETS_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def localised(section: dict[str, Any], api_base: str, pg_port: int | None = None) -> dict[str, Any]:
    """Point the example's API URL at the local server and its PostgreSQL port at the test server."""
    text = yaml.safe_dump(section).replace(DOC_API_BASE, api_base)
    if pg_port is not None:
        text = text.replace(DOC_PG_PORT, f":{pg_port}/")
    return yaml.safe_load(text)


@pytest.mark.parametrize("name", [name for name in EXAMPLES if name != "tickets-pg"])
def test_doc_example_runs(name, doc_workspace, json_server, recorded_sleeps):
    section = localised(EXAMPLES[name], json_server.base_url)
    configs = parse_sources(section["sources"])

    table, _, metrics = acquire(configs, seed=42, snapshot_dir=doc_workspace / "data" / "snapshots")

    assert len(table) > 0
    assert table["text"].notna().all()
    assert metrics["rows_in"] == metrics["rows_out"] + metrics["rows_quarantined"]
    if name == "tickets-db":
        assert table["text"].tolist() == ["my card has not arrived", "I lost my card"]
    if name == "tickets-api":
        assert table["label"].tolist() == ["card_arrival", "refund", "lost_or_stolen_card"]
        assert metrics["sources"]["tickets-api"]["watermark_after"] == "2024-03-03T09:00:00Z"
    if name == "card-templates":
        assert len(table) == 200
        assert table["synthetic"].all()


@pytest.mark.postgres
def test_doc_postgres_example_runs(postgres_server, doc_workspace, monkeypatch):
    postgres_server.psql("DROP DATABASE IF EXISTS tickets")
    postgres_server.psql("DROP ROLE IF EXISTS reader")
    postgres_server.psql(f"CREATE ROLE reader LOGIN PASSWORD '{DB_PASSWORD}'")
    postgres_server.psql("CREATE DATABASE tickets OWNER reader")
    postgres_server.psql(
        "CREATE TABLE tickets (id integer, body text, intent text);"
        "INSERT INTO tickets VALUES (1, 'card not working', 'card'), (2, 'refund please', 'refund');"
        "GRANT SELECT ON tickets TO reader;",
        database="tickets",
    )
    monkeypatch.setenv("TICKETS_DB_PASSWORD", DB_PASSWORD)
    section = localised(EXAMPLES["tickets-pg"], "", pg_port=postgres_server.port)

    table, _, _ = acquire(parse_sources(section["sources"]), seed=42)

    assert table["text"].tolist() == ["card not working"]


@pytest.mark.slow
def test_doc_examples_run_in_dvc_repro(repo_copy, json_server):
    """`dvc repro acquire` with every example but PostgreSQL, then a forced incremental rerun."""
    serve_tickets_api(json_server)
    create_tickets_db(repo_copy / "data" / "sources" / "tickets.sqlite")
    sources = [
        source
        for name, section in EXAMPLES.items()
        if name != "tickets-pg"
        for source in localised(section, json_server.base_url)["sources"]
    ]
    params_path = repo_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["acquire"] = {"sources": sources}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    # Only the acquire stage, exactly as the repository declares it, so other stages cannot interfere.
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    (repo_copy / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"acquire": pipeline["stages"]["acquire"]}}, sort_keys=False)
    )
    env = dict(os.environ)
    env.update(
        {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            "TICKETS_API_TOKEN": API_TOKEN,
            "HF_DATASETS_CACHE": str(repo_copy / "hf-cache"),
            "DVC_NO_ANALYTICS": "1",
        }
    )

    def dvc(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=repo_copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        return output

    subprocess.run(["git", "init", "-q"], cwd=repo_copy, check=True)
    if not (repo_copy / ".dvc").is_dir():
        dvc("init", "-q")
    dvc("repro", "acquire")
    rows = pq.read_table(repo_copy / "data" / "raw" / "rows.parquet").to_pandas()
    with sqlite3.connect(repo_copy / "data" / "sources" / "tickets.sqlite") as connection:
        connection.execute(
            "INSERT INTO tickets VALUES (4, 'card declined', 'card', 'closed', '2024-03-04T09:00:00Z')"
        )
    dvc("repro", "--force", "acquire")
    rerun = pq.read_table(repo_copy / "data" / "raw" / "rows.parquet").to_pandas()

    assert set(rows["source"]) == {
        "banking77-train",
        "tickets-db",
        "tickets-api",
        "banking77-hf-test",
        "card-templates",
    }
    assert len(rerun) == len(rows) + 1
    assert sorted((repo_copy / "data" / "snapshots").iterdir()) == [
        repo_copy / "data" / "snapshots" / "tickets-api.parquet",
        repo_copy / "data" / "snapshots" / "tickets-db.parquet",
    ]
    lock = (repo_copy / "dvc.lock").read_text()
    assert "data/snapshots" in lock
    assert API_TOKEN not in lock
    assert "TICKETS_API_TOKEN" in lock
