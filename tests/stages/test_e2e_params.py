"""The generation pipeline's params file: every section parses with its stage's config."""

from __future__ import annotations

from pathlib import Path

import yaml

from stages.acquire import AcquireConfig, parse_sources
from stages.core.local_lm import parse_lm_config
from stages.core.params import TaskConfig, parse_section, parse_seed, parse_value
from stages.curation.config import CurateConfig
from stages.generation.config import (
    BaselinesConfig,
    DecodingConfig,
    EvaluateConfig,
    PromptConfig,
    TrainConfig,
)
from stages.splitting.config import SplitConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_PARAMS = REPO_ROOT / "pipelines" / "e2e" / "params.yaml"
E2E_PIPELINE = REPO_ROOT / "pipelines" / "e2e" / "dvc.yaml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_every_section_parses():
    params = load(E2E_PARAMS)
    assert parse_seed(params) == 42
    assert parse_section(params, "task", TaskConfig).type == "generation"
    sources = parse_sources(parse_value(params["acquire"], "acquire", AcquireConfig).sources)
    assert [source.columns.target for source in sources] == ["ref", "ref"]
    assert [source.columns.group for source in sources] == ["mr", "mr"]
    assert parse_section(params, "split", SplitConfig).group_by == "column"
    assert parse_section(params, "prompt", PromptConfig).style == "plain"
    parse_section(params, "generation", DecodingConfig)
    # The untuned baselines get an instruction in the chat template; the adapter a plain prompt.
    assert parse_section(params, "baselines_lm", BaselinesConfig).prompt.style == "chat"
    curate = parse_section(params, "curate", CurateConfig)
    assert curate.coverage.enabled and not curate.coverage.quarantine
    assert parse_section(params, "train_lm", TrainConfig).min_input_coverage == 1.0
    parse_section(params, "evaluate_lm", EvaluateConfig)


def test_model_matches_root_pipeline():
    # The prepare_model stage of the root pipeline writes models/base_lm from the root params.
    assert parse_lm_config(load(E2E_PARAMS)).name == parse_lm_config(load(REPO_ROOT / "params.yaml")).name


def test_stages_read_e2e_params_and_write_apart():
    stages = load(E2E_PIPELINE)["stages"]
    assert set(stages) == {"acquire", "curate", "split", "baselines_lm", "train_lm", "evaluate_lm"}
    for name, stage in stages.items():
        assert stage["wdir"] == "../..", name
        assert "--params pipelines/e2e/params.yaml" in stage["cmd"], name
        for out in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert path.split("/")[1] == "e2e", (name, path)


def test_mlflow_data_inputs_are_stage_outputs():
    params = load(E2E_PARAMS)
    config = parse_section(params, "evaluate_lm", EvaluateConfig)
    outputs = set()
    for stage in load(E2E_PIPELINE)["stages"].values():
        outputs |= {out if isinstance(out, str) else next(iter(out)) for out in stage.get("outs", [])}
    assert set(config.data_inputs) <= outputs
    assert config.dvc_lock == "pipelines/e2e/dvc.lock"
