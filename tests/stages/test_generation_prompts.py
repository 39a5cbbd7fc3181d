"""Tests of stages.generation.prompts: prompt building and the target-only loss mask."""

from __future__ import annotations

import pytest
import torch
from e2e_rows import build_e2e_lm, e2e_frame
from tiny_models import build_word_tokenizer

from stages.core.errors import ParamsError
from stages.core.local_lm import format_prompt, load_lm
from stages.generation.config import PromptConfig
from stages.generation.prompts import (
    IGNORE_INDEX,
    build_prompt,
    build_training_example,
    check_prompt_style,
    collate_training,
    encode_completion,
    encode_prompt,
)

torch.set_num_threads(1)

MR = "name[Blue Spice], eatType[coffee shop], area[riverside]"
TARGET = "Blue Spice is a coffee shop by the riverside."


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    frame = e2e_frame("devset.csv", 3, "train")
    folder = build_e2e_lm(tmp_path_factory.mktemp("lm") / "tiny", [frame], extra_text=f"{MR} {TARGET}")
    return load_lm(folder, device="cpu")


def test_chat_prompt_has_demonstrations_before_input():
    config = PromptConfig(system="Be brief.", instruction="Describe: {input}")
    messages = build_prompt(config, MR, [("name[A]", "A is here."), ("name[B]", "B is there.")])
    assert [message["role"] for message in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[1]["content"] == "Describe: name[A]"
    assert messages[2]["content"] == "A is here."
    assert messages[-1]["content"] == f"Describe: {MR}"


def test_chat_prompt_without_system_leaves_template_default():
    messages = build_prompt(PromptConfig(), MR)
    assert [message["role"] for message in messages] == ["user"]


def test_plain_prompt_joins_filled_templates():
    config = PromptConfig(style="plain", plain_template="MR: {input}\nText:", target_prefix=" ")
    prompt = build_prompt(config, MR, [("name[A]", "A is here.")])
    assert prompt == f"MR: name[A]\nText: A is here.\n\nMR: {MR}\nText:"


def test_prompt_config_requires_placeholder():
    with pytest.raises(ValueError, match=r"must contain the placeholder \{input\}"):
        PromptConfig(instruction="Describe the restaurant.")


def test_chat_style_without_chat_template_raises():
    tokenizer = build_word_tokenizer(chat=False)
    with pytest.raises(ParamsError, match=r"`prompt.style` needs a chat template.*prompt.style: plain"):
        check_prompt_style(PromptConfig(style="chat"), tokenizer, "tiny")
    check_prompt_style(PromptConfig(style="plain"), tokenizer, "tiny")


def test_encoded_prompt_matches_generation_input(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    for config in (PromptConfig(), PromptConfig(style="plain")):
        prompt = build_prompt(config, MR)
        as_generated = tokenizer(format_prompt(tiny_lm, prompt), add_special_tokens=isinstance(prompt, str))
        assert encode_prompt(tokenizer, prompt) == as_generated["input_ids"]


def test_completion_ends_with_eos(tiny_lm):
    ids = encode_completion(tiny_lm.tokenizer, PromptConfig(), TARGET)
    assert ids[-1] == tiny_lm.tokenizer.eos_token_id
    assert tiny_lm.tokenizer.decode(ids[:-1]).replace(" ", "") == TARGET.replace(" ", "")


def test_training_example_masks_prompt_tokens():
    example = build_training_example([5, 6, 7], [8, 9, 2], max_length=16)
    assert example.input_ids == [5, 6, 7, 8, 9, 2]
    assert example.labels == [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9, 2]
    assert example.prompt_tokens == 3
    assert not example.truncated


def test_training_example_cuts_target_to_max_length():
    example = build_training_example([5, 6, 7], [8, 9, 10, 2], max_length=5)
    assert example.input_ids == [5, 6, 7, 8, 9]
    assert example.labels == [IGNORE_INDEX] * 3 + [8, 9]
    assert example.truncated


def test_training_example_without_room_for_target_raises():
    with pytest.raises(ValueError, match="prompt has 4 tokens, which leaves no room"):
        build_training_example([1, 2, 3, 4], [8, 2], max_length=4)


def test_collate_pads_right_with_ignored_labels():
    examples = [
        build_training_example([5, 6], [8, 2], 16),
        build_training_example([5, 6, 7, 7], [9, 9, 2], 16),
    ]
    batch = collate_training(examples, [0, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 2, 0, 0, 0], [5, 6, 7, 7, 9, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]
    ignored = IGNORE_INDEX
    assert batch["labels"].tolist() == [
        [ignored, ignored, 8, 2, ignored, ignored, ignored],
        [ignored, ignored, ignored, ignored, 9, 9, 2],
    ]


def test_model_loss_counts_only_target_tokens(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    config = PromptConfig()
    prompt_ids = encode_prompt(tokenizer, build_prompt(config, MR))
    short = build_training_example(
        prompt_ids, encode_completion(tokenizer, config, "Blue Spice is here."), 256
    )
    long = build_training_example(prompt_ids, encode_completion(tokenizer, config, TARGET), 256)
    batch = collate_training([short, long], [0, 1], tokenizer.pad_token_id)

    with torch.no_grad():
        loss = tiny_lm.model(**batch).loss
        logits = tiny_lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Position t predicts token t + 1: gather the log-probabilities of the target tokens only.
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    expected_terms = []
    for row, example in enumerate([short, long]):
        for position in range(example.prompt_tokens, len(example.input_ids)):
            expected_terms.append(-log_probs[row, position - 1, example.input_ids[position]])
    expected = torch.stack(expected_terms).mean()
    assert len(expected_terms) == (len(short.input_ids) - short.prompt_tokens) + (
        len(long.input_ids) - long.prompt_tokens
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
