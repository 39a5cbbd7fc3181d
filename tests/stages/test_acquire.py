"""The acquire stage with file sources: encodings, malformed records, bad params and the output table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages import acquire as acquire_stage
from stages.acquire import acquire, parse_sources
from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError, PipelineError
from stages.core.io import read_json, read_table


def source(path: Path, **overrides: Any) -> dict[str, Any]:
    suffix = path.suffix.lstrip(".")
    raw = {
        "name": "intents",
        "type": suffix,
        "path": str(path),
        "columns": {"text": "text", "label": "label"},
    }
    raw.update(overrides)
    return raw


def run(*sources: dict[str, Any], seed: int = 0):
    return acquire(parse_sources(list(sources)), seed=seed)


def test_csv_with_utf8_bom_is_read(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_bytes("text,label\ncafé card,card\n".encode("utf-8-sig"))

    table, _, _ = run(source(path))

    assert table["text"].tolist() == ["café card"]
    assert table["label"].tolist() == ["card"]


def test_csv_in_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_bytes("text,label\nzürich transfer,transfer\n".encode("utf-16"))

    table, _, _ = run(source(path))

    assert table["text"].tolist() == ["zürich transfer"]


def test_cp1252_needs_explicit_encoding(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_bytes("text,label\n“smart quotes” – fee,fees\n".encode("cp1252"))

    with pytest.raises(
        InputDataError, match=r"line 2: byte 0x93 at offset 11 is not valid utf-8.*encoding` to its encoding"
    ):
        run(source(path))
    table, _, _ = run(source(path, encoding="cp1252"))
    assert table["text"].tolist() == ["“smart quotes” – fee"]


def test_unknown_encoding_is_reported(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,label\na,b\n", encoding="utf-8")

    with pytest.raises(InputDataError, match=r"unknown encoding 'klingon'"):
        run(source(path, encoding="klingon"))


def test_ragged_csv_rows_are_quarantined_with_line(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text(
        "text,label\ngood one,card\ntoo,many,fields\nshort\nanother good,refund\n", encoding="utf-8"
    )

    table, quarantine, metrics = run(source(path))

    assert table["text"].tolist() == ["good one", "another good"]
    assert table["source_row"].tolist() == [2, 5]
    rejected = quarantine.frame()
    assert rejected["quarantine_reason"].tolist() == ["malformed_row", "malformed_row"]
    assert rejected["source_row"].tolist() == [3, 4]
    assert rejected["quarantine_detail"].tolist() == [
        "line 3: expected 2 fields, found 3",
        "line 4: expected 2 fields, found 1",
    ]
    assert rejected["text"].tolist() == ["too,many,fields", "short"]
    assert metrics["rows_in"] == 4
    assert metrics["rows_quarantined"] == 2


def test_csv_multiline_field_keeps_start_line(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text('text,label\n"first line\nsecond line",card\nnext,refund\n', encoding="utf-8")

    table, _, _ = run(source(path))

    assert table["text"].tolist() == ["first line\nsecond line", "next"]
    assert table["source_row"].tolist() == [2, 4]


def test_unbalanced_quote_fails_with_line(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text('text,label\nok,card\n"never closed,card\n', encoding="utf-8")

    with pytest.raises(InputDataError, match=r"line 3: .*unbalanced quote"):
        run(source(path))


def test_invalid_jsonl_lines_are_quarantined(tmp_path):
    path = tmp_path / "intents.jsonl"
    lines = [
        json.dumps({"text": "card lost", "label": "card"}),
        '{"text": "broken", ',
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "refund late", "label": "refund", "meta": {"channel": "app"}}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    table, quarantine, metrics = run(source(path))

    assert table["text"].tolist() == ["card lost", "refund late"]
    assert table["source_row"].tolist() == [1, 5]
    rejected = quarantine.frame()
    assert rejected["quarantine_reason"].tolist() == ["invalid_json", "not_an_object"]
    assert rejected["source_row"].tolist() == [2, 4]
    assert rejected["quarantine_detail"].iloc[0].startswith("line 2, column")
    assert metrics["quarantine_reasons"] == {"invalid_json": 1, "not_an_object": 1}


def test_nested_jsonl_fields_use_dotted_names(tmp_path):
    path = tmp_path / "intents.jsonl"
    path.write_text(
        json.dumps({"body": {"text": "card lost"}, "meta": {"intent": "card"}}) + "\n", encoding="utf-8"
    )

    table, _, _ = run(source(path, columns={"text": "body.text", "label": "meta.intent"}))

    assert table["text"].tolist() == ["card lost"]
    assert table["label"].tolist() == ["card"]


def test_parquet_rows_are_numbered_from_one(tmp_path):
    path = tmp_path / "intents.parquet"
    pq.write_table(
        pa.table({"text": ["a", "b", "c"], "label": ["x", "y", "x"], "score": [1.0, 2.5, None]}), path
    )

    table, _, _ = run(source(path))

    assert table["source_row"].tolist() == [1, 2, 3]
    assert table["text"].tolist() == ["a", "b", "c"]


def test_unreadable_parquet_fails(tmp_path):
    path = tmp_path / "intents.parquet"
    path.write_text("text,label\n", encoding="utf-8")

    with pytest.raises(InputDataError, match=r"not a readable Parquet file"):
        run(source(path))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_missing_file_names_the_params_key(tmp_path, suffix):
    path = tmp_path / f"absent.{suffix}"

    with pytest.raises(
        InputDataError, match=rf"absent.{suffix}: file not found. Check `acquire.sources\[0\].path`"
    ):
        run(source(path))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_empty_file_fails(tmp_path, suffix):
    path = tmp_path / f"empty.{suffix}"
    path.write_bytes(b"")

    with pytest.raises(InputDataError, match=r"file is empty"):
        run(source(path))


def test_header_only_csv_fails(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,label\n", encoding="utf-8")

    with pytest.raises(InputDataError, match=r"file has a header but no data rows"):
        run(source(path))


def test_duplicate_header_fails(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,text\na,b\n", encoding="utf-8")

    with pytest.raises(InputDataError, match=r"line 1: duplicate column names \['text'\]"):
        run(source(path))


def test_missing_mapped_column_names_file_column_and_key(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,category\na,card\n", encoding="utf-8")

    with pytest.raises(
        InputDataError,
        match=r"intents.csv, field `label`: column `label` \(mapped to `label`\) not found; "
        r"columns are \['text', 'category'\]\. Set `acquire.sources\[0\].columns.label`",
    ):
        run(source(path))


def test_unknown_source_type_is_rejected(tmp_path):
    with pytest.raises(
        ParamsError,
        match=r"`acquire.sources\[0\].type` is not a known source type "
        r"\(known: csv, hf, http, jsonl, parquet, sql, synthetic\)",
    ):
        parse_sources([{"name": "x", "type": "excel", "path": "x.xlsx"}])


def test_duplicate_source_names_are_rejected(tmp_path):
    raw = {"name": "same", "type": "csv", "path": "a.csv"}

    with pytest.raises(ParamsError, match=r"`acquire.sources\[1\].name` is used by an earlier source"):
        parse_sources([raw, raw])


def test_unknown_key_is_rejected():
    with pytest.raises(ParamsError, match=r"`acquire.sources\[0\].paht` is not a known key"):
        parse_sources([{"name": "x", "type": "csv", "path": "a.csv", "paht": "b.csv"}])


def test_unknown_split_values_are_quarantined(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,label,part\na,x,train\nb,y,holdout\nc,x,dev\n", encoding="utf-8")

    table, quarantine, _ = run(source(path, columns={"text": "text", "label": "label", "split": "part"}))

    assert table["split"].tolist() == ["train", "validation"]
    assert quarantine.counts() == {"unknown_split": 1}


def test_limit_and_sample_rows_keep_source_order(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text(
        "text,label\n" + "".join(f"row {number},x\n" for number in range(1, 21)), encoding="utf-8"
    )

    limited, _, _ = run(source(path, limit=5))
    sampled, _, _ = run(source(path, sample_rows=6), seed=3)
    again, _, _ = run(source(path, sample_rows=6), seed=3)

    assert limited["text"].tolist() == [f"row {number}" for number in range(1, 6)]
    assert sampled["source_row"].is_monotonic_increasing
    assert len(sampled) == 6
    assert sampled["text"].tolist() == again["text"].tolist()


def test_stage_output_round_trips_through_parquet(tmp_path):
    csv_path = tmp_path / "intents.csv"
    csv_path.write_text("text,label\ncard lost,card\nbad,row,here\nrefund late,refund\n", encoding="utf-8")
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps({"seed": 1, "acquire": {"sources": [source(csv_path, split="train")]}}), encoding="utf-8"
    )
    out = tmp_path / "out"
    acquire_stage.main(
        [
            "--params", str(params),
            "--out", str(out / "rows.parquet"),
            "--quarantine", str(out / "quarantine.parquet"),
            "--metrics", str(out / "acquire.json"),
        ]
    )  # fmt: skip
    table, _, _ = run(source(csv_path, split="train"), seed=1)

    written = read_table(out / "rows.parquet")
    quarantine = read_table(out / "quarantine.parquet")

    assert list(written.columns) == S.ALL_COLUMNS
    assert written.dtypes.to_dict() == table.dtypes.to_dict()
    pd.testing.assert_frame_equal(written, table)
    assert written[S.SOURCE_ROW].dtype == "int64"
    assert written[S.SYNTHETIC].dtype == "bool"
    assert written[S.TEXT].dtype == "string"
    assert quarantine["quarantine_reason"].tolist() == ["malformed_row"]
    assert read_json(out / "acquire.json")["rows_out"] == 2


def test_stage_output_is_byte_identical_on_rerun(tmp_path):
    csv_path = tmp_path / "intents.csv"
    csv_path.write_text("text,label\ncard lost,card\nrefund late,refund\n", encoding="utf-8")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"seed": 1, "acquire": {"sources": [source(csv_path)]}}), encoding="utf-8")

    outputs = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        acquire_stage.main(
            [
                "--params",
                str(params),
                "--out",
                str(out / "rows.parquet"),
                "--quarantine",
                str(out / "q.parquet"),
                "--metrics",
                str(out / "m.json"),
            ]
        )
        outputs.append((out / "rows.parquet").read_bytes())

    assert outputs[0] == outputs[1]


def test_stage_errors_are_pipeline_errors(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps(
            {"acquire": {"sources": [{"name": "x", "type": "csv", "path": str(tmp_path / "absent.csv")}]}}
        ),
        encoding="utf-8",
    )

    with pytest.raises(PipelineError):
        acquire_stage.main(
            [
                "--params",
                str(params),
                "--out",
                str(tmp_path / "r.parquet"),
                "--quarantine",
                str(tmp_path / "q.parquet"),
                "--metrics",
                str(tmp_path / "m.json"),
            ]
        )
    assert not (tmp_path / "r.parquet").exists()
