"""Loading models and data never runs code from them: a scan of every call in stages/ and a load check.

The scan fails when a new call site loads a model without an explicit `trust_remote_code`, loads
model weights from a pickle, or unpickles anything from a file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = REPO_ROOT / "stages"

# Modules whose import alone means something is (or can be) unpickled.
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
# joblib.Parallel pickles tasks for its worker processes, which is allowed, but joblib's file loaders are not.
JOBLIB_FILE_FUNCTIONS = {"load", "dump"}
# Classes whose from_pretrained loads configuration or tokenizer files, never weights.
NO_WEIGHTS_LOADERS = {
    "AutoTokenizer",
    "AutoConfig",
    "AutoProcessor",
    "PreTrainedTokenizerFast",
    "GenerationConfig",
}
# PEFT loads adapter_model.safetensors when present and otherwise torch.load(weights_only=True)
# (peft.utils.save_and_load.torch_load, peft 0.21). Its from_pretrained has no use_safetensors switch.
PEFT_LOADERS = {"PeftModel", "PeftModelForCausalLM", "PeftModelForSequenceClassification"}


def source_files() -> list[Path]:
    return sorted(STAGES.rglob("*.py"))


def calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def callee(call: ast.Call) -> str:
    """Return the called name as dotted text, e.g. `AutoModelForCausalLM.from_pretrained`."""
    return ast.unparse(call.func)


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO_ROOT)}:{node.lineno}"


def parsed_sources() -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) for path in source_files()
    ]


SOURCES = parsed_sources()


def test_scan_finds_model_loaders():
    loaders = [
        call for _, tree in SOURCES for call in calls(tree) if callee(call).endswith(".from_pretrained")
    ]
    assert len(loaders) >= 8


def test_from_pretrained_passes_trust_remote_code():
    problems = []
    for path, tree in SOURCES:
        for call in calls(tree):
            name = callee(call)
            if not name.endswith(".from_pretrained") or name.split(".")[0] in PEFT_LOADERS:
                continue
            value = keyword(call, "trust_remote_code")
            if value is None:
                problems.append(f"{where(path, call)} {name} does not pass trust_remote_code")
            elif is_true(value):
                problems.append(f"{where(path, call)} {name} turns trust_remote_code on unconditionally")
    assert problems == []


def test_model_weights_load_from_safetensors():
    problems = []
    for path, tree in SOURCES:
        for call in calls(tree):
            name = callee(call)
            owner = name.split(".")[0]
            if not name.endswith(".from_pretrained") or owner in NO_WEIGHTS_LOADERS | PEFT_LOADERS:
                continue
            if keyword(call, "gguf_file") is not None:
                continue  # weights come from the GGUF file, which contains no pickled data
            if not is_true(keyword(call, "use_safetensors")):
                problems.append(f"{where(path, call)} {name} does not pass use_safetensors=True")
    assert problems == []


def test_saved_weights_use_safetensors():
    problems = []
    for path, tree in SOURCES:
        for call in calls(tree):
            name = callee(call)
            if not name.endswith(".save_pretrained") or "tokenizer" in name.lower():
                continue
            value = keyword(call, "safe_serialization")
            if value is not None and not is_true(value):
                problems.append(f"{where(path, call)} {name} turns safe_serialization off")
    assert problems == []


def test_torch_load_is_weights_only():
    problems = []
    for path, tree in SOURCES:
        for call in calls(tree):
            if callee(call) in {"torch.load", "load"} and not is_true(keyword(call, "weights_only")):
                problems.append(f"{where(path, call)} torch.load without weights_only=True")
    assert problems == []


def test_nothing_is_unpickled():
    problems = []
    for path, tree in SOURCES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            problems += [f"{where(path, node)} imports {name}" for name in names if name in PICKLE_MODULES]
            if isinstance(node, ast.ImportFrom) and node.module == "joblib":
                imported = {alias.name for alias in node.names} & JOBLIB_FILE_FUNCTIONS
                problems += [f"{where(path, node)} imports joblib.{name}" for name in sorted(imported)]
        for call in calls(tree):
            name = callee(call)
            if name.endswith("read_pickle") or name.endswith("unsafe_load") or name == "joblib.load":
                problems.append(f"{where(path, call)} calls {name}")
            if name in {"np.load", "numpy.load"} and is_true(keyword(call, "allow_pickle")):
                problems.append(f"{where(path, call)} calls {name} with allow_pickle=True")
            if name in {"yaml.load", "yaml.load_all"}:
                problems.append(f"{where(path, call)} calls {name}; use yaml.safe_load")
            if name in {"eval", "exec"}:
                problems.append(f"{where(path, call)} calls the builtin {name}")
    assert problems == []


def test_load_dataset_never_trusts_remote_code():
    problems = []
    for path, tree in SOURCES:
        for call in calls(tree):
            if callee(call).endswith("load_dataset") and keyword(call, "trust_remote_code") is not None:
                problems.append(f"{where(path, call)} passes trust_remote_code to load_dataset")
    assert problems == []


def test_trust_remote_code_defaults_off():
    fields = []
    for path, tree in SOURCES:
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "trust_remote_code":
                fields.append(where(path, node))
                assert isinstance(node.value, ast.Constant), where(path, node)
                assert node.value.value is False, where(path, node)
    assert len(fields) >= 3

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section in ("model", "lm"):
        assert params[section].get("trust_remote_code", False) is False


@pytest.fixture
def pickled_causal_lm(tmp_path: Path) -> Path:
    """A tiny Llama folder whose weights are only in pytorch_model.bin (a pickle), with a tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from stages.core.models import resolve_model

    folder = tmp_path / "pickled-lm"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-MiniLM-L6-v2"))
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickled_weights_are_rejected(pickled_causal_lm: Path):
    from stages.core.errors import ParamsError
    from stages.core.local_lm import LMConfig
    from stages.prepare_model import load_named_model

    with pytest.raises(ParamsError, match=r"`lm\.name` cannot be loaded .* with safetensors weights"):
        load_named_model(LMConfig(name=str(pickled_causal_lm)))
