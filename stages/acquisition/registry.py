"""Imports every reader module so that each registers its source type."""

from stages.acquisition import files, hf, http, sql, synthetic  # noqa: F401
from stages.acquisition.base import READERS

__all__ = ["READERS"]
