"""The `hf` source: `datasets.load_dataset` on local files and folders, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pytest

from stages.acquire import acquire, parse_sources
from stages.core.errors import InputDataError, ParamsError


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `datasets` and the hub client offline, also when they were imported before the variables."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def hf_source(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    source = {
        "name": "intents",
        "type": "hf",
        "path": "csv",
        "columns": {"text": "text", "label": "label"},
        "cache_dir": str(tmp_path / "hf-cache"),
    }
    source.update(overrides)
    return source


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows), encoding="utf-8")
    return path


def test_csv_data_files_are_loaded(tmp_path, read_source):
    data = write_csv(tmp_path / "intents.csv", [("card lost", "card"), ("refund late", "refund")])

    batch = read_source(hf_source(tmp_path, data_files=str(data)))

    assert batch.records["text"].tolist() == ["card lost", "refund late"]
    assert batch.records["source_row"].tolist() == [1, 2]
    assert batch.location == f"csv data_files={data}"
    assert batch.query == "split=train"
    assert batch.acquired_at is None


def test_json_lines_with_named_splits(tmp_path, read_source):
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text(json.dumps({"text": "card lost", "label": "card"}) + "\n", encoding="utf-8")
    test.write_text(
        "".join(json.dumps({"text": text, "label": "refund"}) + "\n" for text in ("a", "b")), encoding="utf-8"
    )
    raw = hf_source(
        tmp_path,
        path="json",
        data_files={"train": str(train), "test": str(test)},
        dataset_split="test",
        split="test",
    )

    batch = read_source(raw)

    assert batch.records["text"].tolist() == ["a", "b"]
    assert batch.query == "split=test"


def test_local_folder_is_loaded(tmp_path, read_source):
    folder = tmp_path / "dataset"
    write_csv(folder / "train.csv", [("card lost", "card")])
    write_csv(folder / "test.csv", [("refund late", "refund"), ("pin blocked", "card")])

    batch = read_source(hf_source(tmp_path, path=str(folder), dataset_split="test"))

    assert batch.records["text"].tolist() == ["refund late", "pin blocked"]


def test_class_labels_become_names(tmp_path, read_source):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["card", "refund"])}
    )
    dataset = datasets.Dataset.from_dict(
        {"text": ["card lost", "refund late"], "label": [0, 1]}, features=features
    )
    data = tmp_path / "intents.parquet"
    dataset.to_parquet(str(data))

    named = read_source(hf_source(tmp_path, path="parquet", data_files=str(data)))
    numbered = read_source(hf_source(tmp_path, path="parquet", data_files=str(data), class_label_names=False))

    assert named.records["label"].tolist() == ["card", "refund"]
    assert numbered.records["label"].tolist() == [0, 1]


def test_acquire_maps_hf_rows(tmp_path):
    data = write_csv(tmp_path / "intents.csv", [("card lost", "card"), ("refund late", "refund")])
    configs = parse_sources([hf_source(tmp_path, data_files=str(data), split="train")])

    table, _, _ = acquire(configs, seed=0)

    assert table["label"].tolist() == ["card", "refund"]
    assert set(table["source_type"]) == {"hf"}
    assert set(table["split"]) == {"train"}
    assert table["source_query"].tolist() == ["split=train", "split=train"]


def test_missing_data_file_fails(tmp_path, read_source):
    with pytest.raises(InputDataError, match=r"dataset or data files not found .*data_files"):
        read_source(hf_source(tmp_path, data_files=str(tmp_path / "absent.csv")))


def test_unknown_split_fails(tmp_path, read_source):
    data = write_csv(tmp_path / "intents.csv", [("card lost", "card")])

    with pytest.raises(InputDataError, match=r"Unknown split \"validation\".*dataset_split"):
        read_source(hf_source(tmp_path, data_files=str(data), dataset_split="validation"))


def test_loading_script_is_not_run(tmp_path, read_source):
    folder = tmp_path / "scripted"
    folder.mkdir()
    marker = tmp_path / "script-ran"
    (folder / "scripted.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")

    with pytest.raises(InputDataError, match=r"could not be loaded .*scripts are no longer supported"):
        read_source(hf_source(tmp_path, path=str(folder)))
    assert not marker.exists()


def test_trust_remote_code_is_rejected(tmp_path):
    with pytest.raises(
        ParamsError,
        match=r"`acquire.sources\[0\].trust_remote_code` is invalid "
        r"\(dataset loading scripts are not supported",
    ):
        parse_sources([hf_source(tmp_path, data_files="x.csv", trust_remote_code=True)])


def test_hub_id_offline_fails_clearly(tmp_path, read_source):
    with pytest.raises(
        InputDataError, match=r"some-org/some-dataset: the dataset could not be fetched .*data_files"
    ):
        read_source(hf_source(tmp_path, path="some-org/some-dataset"))
