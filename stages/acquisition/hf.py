"""Reader for Hugging Face datasets through `datasets.load_dataset`.

`path` is a hub dataset id, a local dataset folder, or a packaged builder (`csv`, `json`,
`parquet`, `text`) together with `data_files`. Loading scripts are not supported: `trust_remote_code`
is never passed on, and `datasets` 4 and later reject a folder or repository that only has a script.
A hub id needs the network or a filled Hugging Face cache (`HF_DATASETS_OFFLINE=1` reads the cache only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from stages.acquisition.base import (
    PROVENANCE_RECORD_COLUMNS,
    ReadContext,
    SourceBatch,
    SourceConfig,
    register,
)
from stages.acquisition.live import utc_now
from stages.core.errors import InputDataError

logger = logging.getLogger(__name__)

DataFiles = str | list[str] | dict[str, str | list[str]]
# Builders of `datasets` that read local files named by `data_files`.
PACKAGED_BUILDERS = {"arrow", "csv", "json", "pandas", "parquet", "text", "xml"}


class HfSourceConfig(SourceConfig):
    type: Literal["hf"] = "hf"
    # Hub dataset id, local dataset folder, or packaged builder name (csv, json, parquet, text).
    path: str = Field(min_length=1)
    # The dataset's configuration (subset) name, `name` in `load_dataset`.
    config_name: str | None = Field(default=None, min_length=1)
    data_files: DataFiles | None = None
    data_dir: str | None = Field(default=None, min_length=1)
    # The dataset's own split to load (`split` in `load_dataset`); `split` above sets the pipeline split.
    dataset_split: str = Field(default="train", min_length=1)
    # A git revision (branch, tag or commit) of a hub dataset.
    revision: str | None = Field(default=None, min_length=1)
    # Cache folder of `datasets`; None uses its default (HF_DATASETS_CACHE).
    cache_dir: str | None = Field(default=None, min_length=1)
    # Turn ClassLabel columns (integers) into their label names.
    class_label_names: bool = True
    # Loading scripts run code from the dataset, so they are never enabled.
    trust_remote_code: bool = False

    @field_validator("trust_remote_code")
    @classmethod
    def _no_remote_code(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "dataset loading scripts are not supported; use a dataset that ships data files "
                "(Parquet, CSV, JSON) or load local files with `path: csv` and `data_files`"
            )
        return value


def describe_location(config: HfSourceConfig) -> str:
    """Return the dataset's location for provenance: the path, plus data files or folder when given."""
    location = config.path
    if config.data_files is not None:
        location += f" data_files={config.data_files}"
    if config.data_dir is not None:
        location += f" data_dir={config.data_dir}"
    return location


def describe_query(config: HfSourceConfig) -> str:
    parts = [f"split={config.dataset_split}"]
    if config.config_name is not None:
        parts.append(f"config={config.config_name}")
    if config.revision is not None:
        parts.append(f"revision={config.revision}")
    return ", ".join(parts)


def class_labels_to_names(dataset: object, frame: pd.DataFrame) -> pd.DataFrame:
    """Replace the integers of each ClassLabel column by their names."""
    from datasets import ClassLabel

    for column, feature in dataset.features.items():  # type: ignore[attr-defined]
        if isinstance(feature, ClassLabel) and column in frame:
            frame[column] = [
                None if value is None or value < 0 else feature.int2str(int(value)) for value in frame[column]
            ]
    return frame


@register("hf", HfSourceConfig)
def read_hf(config: HfSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Load one split of a dataset with `datasets.load_dataset`; `source_row` is the 1-based row index."""
    import datasets

    key = f"acquire.sources[{index}]"
    location = describe_location(config)
    logger.info("source %s: loading %s (%s)", config.name, location, describe_query(config))
    try:
        dataset = datasets.load_dataset(
            config.path,
            name=config.config_name,
            data_files=config.data_files,
            data_dir=config.data_dir,
            split=config.dataset_split,
            revision=config.revision,
            cache_dir=config.cache_dir,
        )
    except FileNotFoundError as exc:
        raise InputDataError(
            location,
            f"dataset or data files not found ({exc})",
            f"Check `{key}.path` and `{key}.data_files` (local paths are relative to the repository root).",
        ) from None
    except ConnectionError as exc:
        raise InputDataError(
            location,
            f"the dataset could not be fetched ({exc})",
            "Connect to the Hugging Face Hub, fill the cache first, or load local files with "
            f"`{key}.path: csv` (or json, parquet) and `data_files`.",
        ) from None
    except (ValueError, RuntimeError, datasets.exceptions.DatasetsError) as exc:
        # ValueError: unknown split or config; RuntimeError: a dataset that only has a loading script.
        raise InputDataError(
            location,
            f"the dataset could not be loaded ({exc})",
            f"Check `{key}.dataset_split`, `{key}.config_name` and `{key}.data_files`.",
        ) from None

    frame = dataset.to_pandas()
    if config.class_label_names:
        frame = class_labels_to_names(dataset, frame)
    if frame.empty:
        raise InputDataError(
            location,
            f"split `{config.dataset_split}` has no rows",
            f"Check `{key}.dataset_split` and `{key}.data_files`.",
        )
    clashes = sorted(set(frame.columns) & set(PROVENANCE_RECORD_COLUMNS))
    if clashes:
        raise InputDataError(
            location,
            f"the dataset has columns named {clashes}, which the acquire stage uses for provenance",
            "Rename them in the data files.",
            field=clashes[0],
        )
    frame = frame.reset_index(drop=True)
    frame["source_row"] = pd.Series(range(1, len(frame) + 1), dtype="int64")
    # A hub dataset can change between loads, so its load time is recorded; local files have none.
    is_local = config.path in PACKAGED_BUILDERS or Path(config.path).exists()
    return SourceBatch(
        records=frame,
        location=location,
        query=describe_query(config),
        acquired_at=None if is_local else utc_now(),
    )
