"""Secrets planted in environment variables never reach output files, snapshots, metrics, errors or logs."""

from __future__ import annotations

import importlib
import json
import logging
import shlex
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from stages import acquire as acquire_stage
from stages.core.errors import InputDataError

TOKEN = "planted-secret-5b1e9d0c"
REPO_ROOT = Path(__file__).resolve().parents[3]
BANKING77 = REPO_ROOT / "data" / "sources" / "banking77"


# Loggers that `stages.core.cli.setup_logging` quiets to WARNING; a test that ran a stage through
# `run_stage` earlier in the session leaves them quiet, so each test turns them up again.
LIBRARY_LOGGERS = ("urllib3", "filelock", "httpx", "alembic", "great_expectations", "sqlalchemy", "mlflow")


def capture_every_log(caplog: pytest.LogCaptureFixture) -> None:
    """Capture records of every level from the stages and the libraries they call."""
    caplog.set_level(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def find_secret(folder: Path, secret: str) -> list[str]:
    """Return the files under `folder` that contain `secret`: Parquet cells and metadata, or raw bytes."""
    hits = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            metadata = b"".join(key + value for key, value in (table.schema.metadata or {}).items())
            cells = [str(cell) for cell in table.to_pandas().to_numpy().ravel().tolist()]
            found = secret.encode() in metadata or any(
                secret in cell for cell in [*cells, *table.column_names]
            )
        else:
            found = secret.encode() in path.read_bytes()
        if found:
            hits.append(str(path))
    return hits


def run_stage(tmp_path: Path, sources: list[dict[str, Any]]) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"seed": 0, "acquire": {"sources": sources}}), encoding="utf-8")
    out = tmp_path / "out"
    acquire_stage.main(
        [
            "--params", str(params),
            "--out", str(out / "rows.parquet"),
            "--quarantine", str(out / "quarantine.parquet"),
            "--metrics", str(out / "acquire.json"),
            "--snapshots", str(out / "snapshots"),
        ]
    )  # fmt: skip
    return out


def http_sources(server_url: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "api",
            "type": "http",
            "url": server_url,
            "records_path": "items",
            "headers_env": {"Authorization": {"env": "PLANTED_TOKEN", "prefix": "Bearer "}},
            "params_env": {"api_key": "PLANTED_TOKEN"},
            "pagination": {"type": "next_link"},
            "columns": {"text": "body"},
            "watermark": "version",
            "watermark_param": "since",
            "key": ["id"],
        }
    ]


def serve_pages(json_server) -> None:
    def route(query: dict[str, str], headers: dict[str, str]):
        if headers.get("Authorization") != f"Bearer {TOKEN}" or query.get("api_key") != TOKEN:
            return 401, {}, {"error": "unauthorized"}
        if query.get("page") == "2":
            return 200, {}, {"items": [{"id": 2, "body": "second", "version": 2}, "not a record"]}
        # The next link echoes the API key, as some APIs do.
        return (
            200,
            {},
            {"items": [{"id": 1, "body": "first", "version": 1}], "next": f"/items?page=2&api_key={TOKEN}"},
        )

    json_server.routes["/items"] = route


def test_http_secret_stays_out_of_outputs_and_logs(
    json_server, recorded_sleeps, tmp_path, monkeypatch, caplog, capsys
):
    monkeypatch.setenv("PLANTED_TOKEN", TOKEN)
    serve_pages(json_server)
    capture_every_log(caplog)

    out = run_stage(tmp_path, http_sources(json_server.url("/items")))

    assert len(pq.read_table(out / "rows.parquet")) == 2
    assert len(pq.read_table(out / "quarantine.parquet")) == 1
    assert (out / "snapshots" / "api.parquet").is_file()
    assert find_secret(out, TOKEN) == []
    assert find_secret(tmp_path, TOKEN) == []
    assert TOKEN not in caplog.text
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    # urllib3 logs each request line at DEBUG; the reader's filter masks the key in it.
    request_lines = [
        record.getMessage() for record in caplog.records if record.name == "urllib3.connectionpool"
    ]
    assert any("api_key=***" in line for line in request_lines)


def test_http_secret_stays_out_of_errors(json_server, recorded_sleeps, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PLANTED_TOKEN", TOKEN)
    json_server.routes["/items"] = lambda query, headers: (
        500,
        {},
        {"error": f"upstream failed for key {TOKEN}"},
    )
    capture_every_log(caplog)
    sources = http_sources(json_server.url("/items"))
    sources[0]["retry"] = {"max_retries": 1}

    with pytest.raises(InputDataError) as caught:
        run_stage(tmp_path, sources)

    assert "HTTP 500" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text
    assert find_secret(tmp_path, TOKEN) == []


@pytest.mark.postgres
def test_sql_password_stays_out_of_outputs_and_logs(postgres_server, tmp_path, monkeypatch, caplog, capsys):
    postgres_server.psql("DROP DATABASE IF EXISTS planted")
    postgres_server.psql("DROP ROLE IF EXISTS planted_reader")
    postgres_server.psql(f"CREATE ROLE planted_reader LOGIN PASSWORD '{TOKEN}'")
    postgres_server.psql("CREATE DATABASE planted OWNER planted_reader")
    postgres_server.psql(
        "CREATE TABLE notes (id integer, body text); INSERT INTO notes VALUES (1, 'first'), (2, 'second');"
        "GRANT SELECT ON notes TO planted_reader;",
        database="planted",
    )
    monkeypatch.setenv("PLANTED_URL", postgres_server.url(f"planted_reader:{TOKEN}", "planted"))
    monkeypatch.setenv("PLANTED_TOKEN", TOKEN)
    capture_every_log(caplog)
    sources = [
        {
            "name": "from-url-env",
            "type": "sql",
            "url_env": "PLANTED_URL",
            "query": "SELECT id, body FROM notes",
            "columns": {"text": "body"},
            "watermark": "id",
        },
        {
            "name": "from-password-env",
            "type": "sql",
            "url": postgres_server.url("planted_reader", "planted"),
            "password_env": "PLANTED_TOKEN",
            "query": "SELECT id, body FROM notes WHERE id > :after",
            "parameters": {"after": 0},
            "columns": {"text": "body"},
        },
    ]

    out = run_stage(tmp_path, sources)

    rows = pq.read_table(out / "rows.parquet").to_pandas()
    assert rows["text"].tolist() == ["first", "second", "first", "second"]
    assert set(rows["source_location"]) == {postgres_server.url("planted_reader:***", "planted")}
    assert find_secret(tmp_path, TOKEN) == []
    assert TOKEN not in caplog.text
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err


# Stages after acquire, run with their dvc.yaml commands; together they write every kind of output.
DOWNSTREAM_STAGES = ("curate", "split", "augment", "baselines", "train", "evaluate", "report")
SECRET_LABELS = ["card_arrival", "change_pin", "exchange_rate", "lost_or_stolen_card"]


def banking_rows(split: str, per_label: int) -> list[dict[str, Any]]:
    raw = pd.read_csv(BANKING77 / f"{split}.csv")
    raw = raw[raw["category"].isin(SECRET_LABELS)].groupby("category", sort=True).head(per_label)
    return [
        {"id": number, "body": text, "intent": label}
        for number, (text, label) in enumerate(zip(raw["text"], raw["category"], strict=True), start=1)
    ]


def stage_command(stage: str) -> tuple[str, list[str]]:
    """Return (module, arguments) of a stage's command in dvc.yaml."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    words = shlex.split(pipeline["stages"][stage]["cmd"])
    return words[2], words[3:]


def pipeline_params(server_url: str, tiny_encoder: Path) -> dict[str, Any]:
    return {
        "seed": 0,
        "model": {"name": str(tiny_encoder)},
        "acquire": {
            "sources": [
                {
                    "name": "tickets-api",
                    "type": "http",
                    "url": server_url,
                    "records_path": "items",
                    "headers_env": {"Authorization": {"env": "PLANTED_TOKEN", "prefix": "Bearer "}},
                    "params_env": {"api_key": "PLANTED_TOKEN"},
                    "pagination": {"type": "next_link"},
                    "columns": {"text": "body", "label": "intent"},
                    "split": "train",
                },
                {
                    "name": "tickets-db",
                    "type": "sql",
                    "url_env": "PLANTED_SQLITE_URL",
                    "query": "SELECT id, body, intent FROM tickets ORDER BY id",
                    "columns": {"text": "body", "label": "intent"},
                    "split": "test",
                },
            ]
        },
        "split": {"stability": {"enabled": False}},
        # Generating rows needs the prepared language model, so augment passes the train rows through.
        "augment": {"enabled": False},
        "baselines": {"keyword_rules": {"card_arrival": ["arrive", "arrived"]}},
        "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 0, "max_length": 32, "threads": 1,
                  "device": "cpu", "lora": {"r": 4, "target_modules": ["query"]}},
        "evaluate": {"latency_rows": 2, "max_length": 32, "device": "cpu", "experiment": "planted"},
    }  # fmt: skip


@pytest.mark.slow
def test_secret_stays_out_of_every_stage_output(
    json_server, recorded_sleeps, tiny_encoder, tmp_path, monkeypatch, caplog, capsys
):
    train_rows = banking_rows("train", 24)
    pages = [train_rows[: len(train_rows) // 2], train_rows[len(train_rows) // 2 :]]

    def route(query: dict[str, str], headers: dict[str, str]):
        if headers.get("Authorization") != f"Bearer {TOKEN}" or query.get("api_key") != TOKEN:
            return 401, {}, {"error": "unauthorized"}
        if query.get("page") == "2":
            return 200, {}, {"items": pages[1]}
        return 200, {}, {"items": pages[0], "next": f"/tickets?page=2&api_key={TOKEN}"}

    json_server.routes["/tickets"] = route
    database = tmp_path / "tickets.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE tickets (id INTEGER, body TEXT, intent TEXT)")
        connection.executemany("INSERT INTO tickets VALUES (:id, :body, :intent)", banking_rows("test", 8))
    # SQLite ignores unknown URI options, so the token rides along as one, as a real key would.
    monkeypatch.setenv("PLANTED_SQLITE_URL", f"sqlite:///file:{database}?mode=ro&uri=true&token={TOKEN}")
    monkeypatch.setenv("PLANTED_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "expectations").symlink_to(REPO_ROOT / "expectations", target_is_directory=True)
    params = pipeline_params(json_server.url("/tickets"), tiny_encoder)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    capture_every_log(caplog)

    for stage in ("acquire", *DOWNSTREAM_STAGES):
        module, arguments = stage_command(stage)
        importlib.import_module(module).main(arguments)

    rows = pq.read_table(tmp_path / "data" / "raw" / "rows.parquet").to_pandas()
    assert len(rows) == len(train_rows) + 32
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "reports" / "report.html").is_file()
    assert find_secret(tmp_path, TOKEN) == []
    assert TOKEN not in caplog.text
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["planted"])
    assert len(runs) >= 1
    logged = " ".join(str(value) for value in runs.iloc[0].to_dict().values())
    assert "PLANTED_TOKEN" in logged  # the variable's name is logged as a param, its value never
    assert TOKEN not in logged
