"""The curate params section: defaults, and errors that name the offending key."""

from __future__ import annotations

import pytest
import yaml
from curation_samples import REPO_ROOT

from stages.core.errors import ParamsError
from stages.core.params import parse_section
from stages.curation.config import CurateConfig, parse_task_type


def test_repository_params_parse():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    config = parse_section(params, "curate", CurateConfig)
    assert config.protected_splits == ["test"]
    assert parse_task_type(params) == "classification"


def test_repository_params_match_the_defaults():
    # params.yaml lists every key; the code's defaults must be the same run.
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert parse_section(params, "curate", CurateConfig) == CurateConfig()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"min_chars": 0}, "curate.min_chars"),
        ({"unicode_form": "NFX"}, "curate.unicode_form"),
        ({"conflicting_labels": "drop"}, "curate.conflicting_labels"),
        ({"protected_splits": ["holdout"]}, "curate.protected_splits"),
        ({"near_duplicates": {"threshold": 1.5}}, "curate.near_duplicates.threshold"),
        ({"near_duplicates": {"num_bands": 7}}, "curate.near_duplicates"),
        ({"pii": {"phone_region": "ZZ"}}, "curate.pii.phone_region"),
        ({"language": {"keep": ["english"]}}, "curate.language.keep"),
        ({"label_issues": {"filter_by": "magic"}}, "curate.label_issues.filter_by"),
        ({"labels": {"unknown": "drop"}}, "curate.labels.unknown"),
        ({"near_duplicate": {}}, "curate.near_duplicate"),
    ],
)
def test_bad_value_names_the_key(section: dict, key: str):
    with pytest.raises(ParamsError, match=rf"`{key}`"):
        parse_section({"curate": section}, "curate", CurateConfig)


def test_min_above_max_is_rejected():
    with pytest.raises(ParamsError, match="min_chars \\(50\\) must not exceed max_chars \\(10\\)"):
        parse_section({"curate": {"min_chars": 50, "max_chars": 10}}, "curate", CurateConfig)


def test_unknown_task_type_is_rejected():
    with pytest.raises(ParamsError, match=r"`task\.type`"):
        parse_task_type({"task": {"type": "regression"}})
