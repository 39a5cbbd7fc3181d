"""Tests of the augment stage: candidates, filters, lineage, quarantine and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from augment_data import (
    NORMALISE,
    PLANTED_ANSWER,
    VALIDATION_COPY,
    build_splits,
    config,
    planted_generator,
    run_planted,
)
from tiny_models import build_tiny_causal_lm, build_tiny_translation_model

from stages import augment as stage
from stages.augmentation.backtranslation import load_translator
from stages.augmentation.config import AugmentConfig, BackTranslationConfig, FewShotConfig
from stages.augmentation.edits import delete_words, edit_text, swap_words
from stages.augmentation.fewshot import build_prompts, parse_candidates, run_fewshot
from stages.augmentation.filters import class_cap_rejections
from stages.augmentation.generators import fewshot_generate_fn
from stages.augmentation.pipeline import (
    AUGMENT_METHOD,
    GENERATOR_MODEL,
    PARENT_IDS,
    PROMPT_HASH,
    Generators,
    augment_train,
    check_train,
    target_labels,
)
from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError
from stages.core.local_lm import load_lm
from stages.core.params import parse_value
from stages.core.quarantine import REASON
from stages.splitting.similarity import jaccard, normalise_text, shingles

torch.set_num_threads(1)


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return build_splits()


def max_similarity(text: str, frame: pd.DataFrame) -> float:
    mine = shingles(normalise_text(text), "char", 5)
    return max(jaccard(mine, shingles(normalise_text(other), "char", 5)) for other in frame[S.TEXT])


# Targets.


def test_targets_below_floor_smallest_first(splits):
    assert target_labels(splits["train"], config(class_floor=9)) == ["card_lost", "refund"]


def test_targets_limited_by_max_classes(splits):
    assert target_labels(splits["train"], config(class_floor=100, max_classes=1)) == ["card_lost"]


def test_targets_all_classes(splits):
    assert target_labels(splits["train"], config(target_classes="all")) == ["card_lost", "refund", "top_up"]


# Leakage: near-copies of validation and test rows never enter train.


def test_planted_test_copy_quarantined(splits):
    result = run_planted(splits)
    quarantined = result.quarantine.frame()
    copies = quarantined[quarantined[S.TEXT].str.lower().str.contains("train station")]
    assert len(copies) >= 3 * 2  # three copies from each of two prompts (card_lost, refund)
    assert set(copies[REASON]) <= {"duplicate_of_test", "near_duplicate_of_test"}
    assert "duplicate_of_test" in set(copies[REASON])
    assert "near_duplicate_of_test" in set(copies[REASON])
    assert copies["quarantine_detail"].str.contains("test-0").all()


def test_planted_validation_copy_quarantined(splits):
    result = run_planted(splits)
    quarantined = result.quarantine.frame()
    copies = quarantined[quarantined[S.TEXT] == VALIDATION_COPY]
    assert len(copies) == 2
    assert set(copies[REASON]) == {"duplicate_of_validation"}


def test_no_new_row_near_validation_or_test(splits):
    result = run_planted(splits, config(edits={"rows_per_class": 8}))
    assert len(result.new_rows) > 0
    for text in result.new_rows[S.TEXT]:
        assert max_similarity(text, splits["validation"]) < 0.8
        assert max_similarity(text, splits["test"]) < 0.8


# Lineage.


def test_every_new_row_has_train_parent(splits):
    result = run_planted(splits)
    train_ids = set(splits["train"][S.ROW_ID])
    assert len(result.new_rows) > 0
    for _, row in result.new_rows.iterrows():
        parents = json.loads(row[PARENT_IDS])
        assert parents
        assert set(parents) <= train_ids
        assert row[S.SYNTHETIC]
        assert row[S.SOURCE_TYPE] == "augment"
        assert row[AUGMENT_METHOD] in {"fewshot", "edits"}
        assert len(row[PROMPT_HASH]) == 64
    assert set(result.lineage["parent_id"]) <= train_ids


def test_parent_labels_match_new_label(splits):
    result = run_planted(splits)
    label_of = dict(zip(splits["train"][S.ROW_ID], splits["train"][S.LABEL], strict=True))
    for _, row in result.new_rows.iterrows():
        assert {label_of[parent] for parent in json.loads(row[PARENT_IDS])} == {row[S.LABEL]}


def test_generator_model_recorded(splits):
    result = run_planted(splits)
    fewshot = result.new_rows[result.new_rows[AUGMENT_METHOD] == "fewshot"]
    edits = result.new_rows[result.new_rows[AUGMENT_METHOD] == "edits"]
    assert set(fewshot[GENERATOR_MODEL]) == {"planted-model"}
    assert edits[GENERATOR_MODEL].str.startswith("word-edits(").all()


def test_real_rows_kept_unchanged(splits):
    result = run_planted(splits)
    real = result.train[~result.train[S.SYNTHETIC]]
    assert real[S.ROW_ID].tolist() == splits["train"][S.ROW_ID].tolist()
    assert real[S.TEXT].tolist() == splits["train"][S.TEXT].tolist()
    assert (real[PARENT_IDS] == "[]").all()


def test_row_ids_unique(splits):
    result = run_planted(splits)
    ids = pd.concat([result.train[S.ROW_ID], result.quarantine.frame()[S.ROW_ID]])
    assert ids.is_unique


# Quarantine.


def test_rejected_rows_have_reasons(splits):
    result = run_planted(splits)
    quarantined = result.quarantine.frame()
    assert len(quarantined) > 0
    assert quarantined[REASON].notna().all()
    assert (quarantined[REASON] != "").all()
    assert quarantined["quarantine_stage"].eq("augment").all()
    assert result.metrics["rows_in"] == len(result.train) + len(quarantined)


def test_unparseable_and_truncated_outputs_quarantined(splits):
    result = run_planted(splits, answer="1. a first useful message about my card\n2. cut off mid", tokens=120)
    reasons = result.quarantine.counts()
    assert reasons.get("truncated_output") == 2
    empty = run_planted(splits, answer="", tokens=3)
    assert empty.quarantine.counts().get("no_candidate_parsed") == 2


def test_length_bounds_quarantine(splits):
    cfg = config(filters={"min_chars": 30, "max_chars": 40, "label_check": {"min_probability": 0.0}})
    result = run_planted(splits, cfg)
    counts = result.quarantine.counts()
    assert counts.get("too_short", 0) > 0
    assert counts.get("too_long", 0) > 0
    assert result.new_rows[S.TEXT].str.len().between(30, 40).all()


def test_label_check_rejects_wrong_label(splits):
    answer = "1. i want a refund for my cancelled order right now\n2. the refund for the purchase is missing"
    cfg = config(class_floor=7, edits={"enabled": False}, filters={"label_check": {"min_probability": 0.4}})
    result = run_planted(splits, cfg, answer=answer)
    # The only target class is card_lost; refund texts contradict it.
    assert result.metrics["target_classes"].keys() == {"card_lost"}
    assert result.quarantine.counts() == {"label_disagrees": 2}
    assert result.quarantine.frame()["quarantine_detail"].str.contains("classifier predicts refund").all()


def test_class_cap_limits_synthetic_share(splits):
    cfg = config(filters={"max_synthetic_share": 0.25, "label_check": {"min_probability": 0.0}})
    result = run_planted(
        splits, cfg, answer="\n".join(f"{n}. a very different card text number {n} here" for n in range(1, 2))
    )
    counts = result.train.groupby(S.LABEL)[S.SYNTHETIC].agg(["sum", "count"])
    assert ((counts["sum"] / counts["count"]) <= 0.25 + 1e-9).all()
    assert result.quarantine.counts().get("class_cap", 0) > 0


def test_class_cap_formula():
    rejections = class_cap_rejections(["a"] * 5 + ["b"] * 2, {"a": 3, "b": 10}, 0.5)
    assert rejections[0].positions == [3, 4]


def test_pii_in_generation_redacted(splits):
    answer = "1. my card is lost, call me on +44 20 7946 0958 or mail me at jo@example.com please"
    cfg = config(
        edits={"enabled": False}, filters={"max_chars": 300, "label_check": {"min_probability": 0.0}}
    )
    result = run_planted(splits, cfg, answer=answer)
    texts = " ".join(pd.concat([result.new_rows[S.TEXT], result.quarantine.frame()[S.TEXT]]))
    assert "jo@example.com" not in texts
    assert "[EMAIL]" in texts


def test_disabled_augment_copies_train(splits):
    result = run_planted(splits, config(enabled=False))
    assert len(result.new_rows) == 0
    assert len(result.train) == len(splits["train"])


# Few-shot prompts and parsing.


def test_prompt_contains_examples_and_label(splits):
    settings = FewShotConfig(k=2, prompts_per_class=2, examples_per_prompt=4)
    prompts = build_prompts(splits["train"], ["card_lost"], settings, seed=1)
    assert len(prompts) == 2
    assert prompts[0].messages[-1] == {"role": "assistant", "content": "1."}
    content = prompts[0].messages[-2]["content"]
    assert '"card lost"' in content
    assert "Write 4 new" in content
    assert len(prompts[0].parent_ids) == 2
    for parent in prompts[0].parent_ids:
        text = splits["train"].set_index(S.ROW_ID).loc[parent, S.TEXT]
        assert text in content
    assert prompts[0].prompt_hash != prompts[1].prompt_hash


def test_template_without_examples_rejected():
    with pytest.raises(
        ParamsError, match=r"augment\.fewshot\.template.*must contain the placeholders \['examples'\]"
    ):
        parse_value({"fewshot": {"template": "Write {n} messages about {label}."}}, "augment", AugmentConfig)


def test_template_unknown_placeholder_rejected():
    with pytest.raises(ParamsError, match="unknown placeholders"):
        parse_value({"fewshot": {"template": "{examples} {n} {intent}"}}, "augment", AugmentConfig)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("1. first one\n2. second one", ["first one", "second one"]),
        ("Here you go:\n1) first one\n2) second one\nHope it helps", ["first one", "second one"]),
        ('- "quoted one"\n* “curly one”\n• bullet one', ["quoted one", "curly one", "bullet one"]),
        ("1. first one 2. second one 3. third one", ["first one", "second one", "third one"]),
        ("just one line of text", ["just one line of text"]),
        ("line one\nline two", ["line one", "line two"]),
        ("1. **Customer:** bold speaker", ["bold speaker"]),
        ('#1: "cut quote', ["cut quote"]),
        ("", []),
        ("Sure! Here are some:", []),
    ],
)
def test_parse_candidates(output, expected):
    assert parse_candidates(output) == expected


# Edits.


def test_delete_keeps_one_word():
    generator = np.random.default_rng(0)
    for _ in range(20):
        assert len(delete_words(["a", "b", "c"], 0.99, generator)) >= 1


def test_swap_keeps_words():
    generator = np.random.default_rng(0)
    words = ["one", "two", "three", "four", "five"]
    swapped = swap_words(words, 0.4, generator)
    assert sorted(swapped) == sorted(words)
    assert swapped != words


def test_edit_text_seeded():
    first = edit_text("a b c d e f g h", 0.2, 0.2, np.random.default_rng(3))
    second = edit_text("a b c d e f g h", 0.2, 0.2, np.random.default_rng(3))
    assert first == second


# Determinism with a real (tiny) causal LM.


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_lm(build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny"), device="cpu")


def run_tiny(splits, lm, seed):
    cfg = config(
        fewshot={"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0},
        filters={"min_words": 1, "min_chars": 1, "label_check": {"min_probability": 0.0}},
    )
    generators = Generators(fewshot=fewshot_generate_fn(lm, cfg, seed), fewshot_model=lm.name)
    return augment_train(
        splits["train"],
        {"validation": splits["validation"], "test": splits["test"]},
        cfg,
        seed,
        generators,
        NORMALISE,
    )


def test_same_seed_same_rows(splits, tiny_lm):
    first = run_tiny(splits, tiny_lm, 11)
    second = run_tiny(splits, tiny_lm, 11)
    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.quarantine.frame(), second.quarantine.frame())
    assert first.metrics["methods"]["fewshot"]["generated"] > 0


def test_other_seed_other_rows(splits, tiny_lm):
    first = run_tiny(splits, tiny_lm, 11)
    second = run_tiny(splits, tiny_lm, 12)
    assert first.train[S.TEXT].tolist() != second.train[S.TEXT].tolist()


# Back-translation.


@pytest.fixture(scope="module")
def translation_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mt")
    forward = build_tiny_translation_model(folder / "en-xx", seed=1)
    backward = build_tiny_translation_model(folder / "xx-en", seed=2)
    return forward, backward


def test_backtranslation_round_trip(splits, translation_models):
    forward, backward = translation_models
    cfg = config(
        edits={"enabled": False},
        fewshot={"enabled": False},
        backtranslation={
            "enabled": True,
            "forward_model": str(forward),
            "backward_model": str(backward),
            "rows_per_class": 3,
            "max_new_tokens": 8,
            "device": "cpu",
        },
        filters={"min_words": 1, "min_chars": 1, "label_check": {"min_probability": 0.0}},
    )
    translator, reason = load_translator(cfg.backtranslation)
    assert reason is None
    result = augment_train(
        splits["train"],
        {"validation": splits["validation"], "test": splits["test"]},
        cfg,
        3,
        Generators(translator=translator),
        NORMALISE,
    )
    stats = result.metrics["methods"]["backtranslation"]
    assert stats["status"] == "ran"
    assert stats["generated"] == 6  # two target classes, three rows each
    made = pd.concat([result.new_rows, result.quarantine.frame()])
    assert set(made[GENERATOR_MODEL]) == {f"{forward} -> {backward}"}
    assert made[PARENT_IDS].map(lambda value: len(json.loads(value))).eq(1).all()


def test_missing_translation_model_fails_clearly(tmp_path):
    missing = str(tmp_path / "no-such-model")
    settings = BackTranslationConfig(forward_model=missing, on_unavailable="fail")
    with pytest.raises(
        ParamsError, match=r"`augment\.backtranslation\.forward_model` names a translation model"
    ):
        load_translator(settings)
    with pytest.raises(ParamsError, match="on_unavailable: skip"):
        load_translator(settings)


def test_missing_translation_model_skipped(splits, tmp_path):
    settings = BackTranslationConfig(forward_model=str(tmp_path / "no-such-model"), on_unavailable="skip")
    translator, reason = load_translator(settings)
    assert translator is None
    assert "augment.backtranslation.forward_model" in reason
    cfg = config(backtranslation={"enabled": True})
    result = augment_train(
        splits["train"],
        {"validation": splits["validation"], "test": splits["test"]},
        cfg,
        3,
        Generators(fewshot=planted_generator(PLANTED_ANSWER), translator_unavailable=reason),
        NORMALISE,
    )
    assert result.metrics["methods"]["backtranslation"]["status"] == "skipped"
    assert result.metrics["methods"]["backtranslation"]["reason"] == reason


# The stage entry point.


def write_splits(splits: dict[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in splits.items():
        paths[name] = folder / f"{name}.parquet"
        frame.to_parquet(paths[name])
    return paths


def prepared_tiny_lm(tmp_path: Path) -> Path:
    from stages.core.local_lm import LMConfig
    from stages.prepare_model import prepare_model

    source = build_tiny_causal_lm(tmp_path / "tiny-source")
    out = tmp_path / "base_lm"
    prepare_model(LMConfig(name=str(source)), out)
    return out


def test_stage_writes_outputs(splits, tmp_path):
    base_lm = prepared_tiny_lm(tmp_path)
    paths = write_splits(splits, tmp_path / "split")
    params = tmp_path / "params.yaml"
    params.write_text(
        "seed: 5\n"
        f"lm:\n  name: {tmp_path / 'tiny-source'}\n"
        "augment:\n"
        "  class_floor: 9\n"
        "  fewshot: {prompts_per_class: 1, max_new_tokens: 10, device: cpu}\n"
        "  backtranslation: {enabled: true, forward_model: missing/model}\n"
        "  filters: {min_words: 1, label_check: {min_probability: 0.0}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "augmented"
    stage.main(
        [
            "--params", str(params),
            "--train", str(paths["train"]),
            "--validation", str(paths["validation"]),
            "--test", str(paths["test"]),
            "--base-lm", str(base_lm),
            "--out", str(out / "train.parquet"),
            "--quarantine", str(out / "quarantine.parquet"),
            "--lineage", str(out / "lineage.parquet"),
            "--metrics", str(tmp_path / "augment.json"),
        ]
    )  # fmt: skip
    augmented = pd.read_parquet(out / "train.parquet")
    quarantined = pd.read_parquet(out / "quarantine.parquet")
    metrics = json.loads((tmp_path / "augment.json").read_text(encoding="utf-8"))
    assert metrics["rows_in"] == len(augmented) + len(quarantined)
    assert metrics["methods"]["backtranslation"]["status"] == "skipped"
    assert metrics["methods"]["fewshot"]["tokens_per_second"] > 0
    assert augmented[S.SYNTHETIC].sum() == metrics["accepted"]
    assert (out / "lineage.parquet").is_file()


@pytest.mark.slow
def test_packaged_model_generates(splits):
    base_lm = Path("models/base_lm")
    if not (base_lm / "model.safetensors").is_file():
        pytest.skip("models/base_lm is missing; run `dvc repro prepare_model`")
    lm = load_lm(base_lm, device="cpu")
    cfg = config(class_floor=7, edits={"enabled": False}, fewshot={"max_new_tokens": 48})
    generators = Generators(fewshot=fewshot_generate_fn(lm, cfg, 1), fewshot_model=lm.name)
    result = augment_train(
        splits["train"],
        {"validation": splits["validation"], "test": splits["test"]},
        cfg,
        1,
        generators,
        NORMALISE,
    )
    assert result.metrics["methods"]["fewshot"]["generated"] > 0
    assert result.metrics["tokens_per_second"] > 0


def test_assistant_prefix_put_back_before_parsing(splits):
    generate_fn = planted_generator("my card went missing today\n2. i cannot find my bank card anywhere")
    settings = FewShotConfig(prompts_per_class=1, k=2)
    prompts = build_prompts(splits["train"], ["card_lost"], settings, seed=1)
    outputs, _ = run_fewshot(prompts, generate_fn, max_new_tokens=100)
    assert outputs[0].raw.startswith("1. my card went missing today")
    assert outputs[0].candidates == ["my card went missing today", "i cannot find my bank card anywhere"]


def test_train_without_label_column_rejected(splits):
    with pytest.raises(InputDataError, match="column `label` is missing"):
        check_train(splits["train"].drop(columns=[S.LABEL]), "train.parquet")


def test_class_cap_counts_existing_synthetic_rows():
    rejections = class_cap_rejections(["a"] * 3, {"a": 4}, 0.5, {"a": 3})
    assert rejections[0].positions == [1, 2]
