"""Tests of the baselines_lm stage: zero-shot, few-shot and template outputs on the selected test inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from e2e_rows import build_e2e_lm, e2e_frame

from stages import baselines_lm
from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.core.io import read_table, write_table
from stages.generation.scoring import GENERATED_TOKENS, LATENCY_MS, PREDICTION, SINGLE_LATENCY_MS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {"train": e2e_frame("devset.csv", 5, "train"), "test": e2e_frame("testset_w_refs.csv", 4, "test")}


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory, frames) -> Path:
    return build_e2e_lm(tmp_path_factory.mktemp("lm") / "tiny", list(frames.values()))


def run_baselines(folder: Path, frames, lm_folder: Path, **sections) -> Path:
    """Write inputs and params, run the stage and return its output folder."""
    for name, frame in frames.items():
        write_table(frame, folder / f"{name}.parquet")
    params = {
        "seed": 3,
        "task": {"type": "generation"},
        "lm": {"name": str(lm_folder)},
        "generation": {
            "test_inputs": 3,
            "max_new_tokens": 6,
            "batch_size": 2,
            "latency_inputs": 1,
            "device": "cpu",
        },
        "baselines_lm": {"few_shot_examples": 2},
        **sections,
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    baselines_lm.main(
        [
            f"--params={folder / 'params.yaml'}",
            f"--train={folder / 'train.parquet'}",
            f"--test={folder / 'test.parquet'}",
            f"--out-dir={folder / 'baselines'}",
            f"--metrics={folder / 'baselines.json'}",
        ]
    )
    return folder / "baselines"


def test_every_baseline_writes_table_for_same_inputs(tmp_path, frames, lm_folder):
    out = run_baselines(tmp_path, frames, lm_folder)
    names = sorted(path.stem for path in out.glob("*.parquet"))
    assert names == ["few_shot", "template", "zero_shot"]
    tables = {name: read_table(out / f"{name}.parquet") for name in names}
    inputs = tables["template"][S.TEXT].tolist()
    assert len(inputs) == 3
    assert inputs == sorted(inputs)
    for table in tables.values():
        assert table[S.TEXT].tolist() == inputs
        assert list(table.columns) == [S.TEXT, PREDICTION, GENERATED_TOKENS, LATENCY_MS, SINGLE_LATENCY_MS]
        assert table[LATENCY_MS].gt(0).all()
    assert tables["zero_shot"][GENERATED_TOKENS].between(1, 6).all()
    assert tables["zero_shot"][SINGLE_LATENCY_MS].notna().sum() == 1


def test_template_baseline_realises_each_input(tmp_path, frames, lm_folder):
    out = run_baselines(
        tmp_path, frames, lm_folder, baselines_lm={"zero_shot": False, "few_shot_examples": 0}
    )
    assert sorted(path.stem for path in out.glob("*.parquet")) == ["template"]
    table = read_table(out / "template.parquet")
    assert table[PREDICTION].iloc[0] == "Blue Spice is a coffee shop in the city centre."


def test_metrics_list_scores_and_demonstrations(tmp_path, frames, lm_folder):
    run_baselines(tmp_path, frames, lm_folder)
    metrics = json.loads((tmp_path / "baselines.json").read_text())
    assert metrics["test_inputs"] == 3
    assert set(metrics["systems"]) == {"few_shot", "template", "zero_shot"}
    for scores in metrics["systems"].values():
        assert {"bleu", "chrf", "rouge_l", "latency_ms_per_example", "generated_tokens_per_second"} <= set(
            scores
        )
    demonstrations = metrics["few_shot_examples"]
    assert len(demonstrations) == 2
    assert len({example["text"] for example in demonstrations}) == 2
    train_texts = set(frames["train"][S.TEXT])
    assert all(example["text"] in train_texts for example in demonstrations)
    assert metrics["systems"]["template"]["bleu"] > 0


def test_greedy_outputs_repeat_across_runs(tmp_path, frames, lm_folder):
    first = read_table(run_baselines(tmp_path / "a", frames, lm_folder) / "few_shot.parquet")
    second = read_table(run_baselines(tmp_path / "b", frames, lm_folder) / "few_shot.parquet")
    assert first[PREDICTION].tolist() == second[PREDICTION].tolist()


def test_more_demonstrations_than_train_inputs_raises(tmp_path, frames, lm_folder):
    with pytest.raises(
        InputDataError, match=r"5 distinct inputs, fewer than baselines_lm.few_shot_examples = 9"
    ):
        run_baselines(tmp_path, frames, lm_folder, baselines_lm={"few_shot_examples": 9})


def test_template_on_non_mr_input_names_the_setting(tmp_path, frames, lm_folder):
    broken = dict(frames)
    broken["test"] = frames["test"].assign(text="just a sentence")
    with pytest.raises(
        InputDataError, match=r"is not a meaning representation.*baselines_lm.template: false"
    ):
        run_baselines(tmp_path, broken, lm_folder)


def test_baseline_prompt_overrides_prompt(tmp_path, frames, lm_folder, monkeypatch):
    seen: dict[str, list] = {}
    real_run_system = baselines_lm.run_system

    def recording_run_system(lm, inputs, prompts, config, seed, name):
        seen[name] = list(prompts)
        return real_run_system(lm, inputs, prompts, config, seed, name)

    monkeypatch.setattr(baselines_lm, "run_system", recording_run_system)
    run_baselines(
        tmp_path,
        frames,
        lm_folder,
        prompt={"style": "plain", "plain_template": "Attributes: {input}\nText:"},
        baselines_lm={
            "few_shot_examples": 1,
            "prompt": {"style": "plain", "plain_template": "Describe the place with {input}\nAnswer:"},
        },
    )
    assert all(prompt.startswith("Describe the place with ") for prompt in seen["zero_shot"])
    # Few-shot prompts repeat the baseline template for the demonstration and the test input.
    assert all(prompt.count("Describe the place with ") == 2 for prompt in seen["few_shot"])
    assert not any("Attributes:" in prompt for prompts in seen.values() for prompt in prompts)
