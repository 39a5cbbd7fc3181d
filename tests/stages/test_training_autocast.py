"""Mixed precision settings: which autocast context each device and setting gets."""

from __future__ import annotations

import torch

from stages.training.model import autocast_context

CPU = torch.device("cpu")


def test_cpu_autocasts_to_bf16_only_when_asked():
    with autocast_context(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.bfloat16
    for setting in ("auto", "fp16", "no"):
        with autocast_context(CPU, setting):
            assert not torch.is_autocast_enabled("cpu"), setting
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_other_devices_without_cuda_run_float32():
    with autocast_context(torch.device("meta"), "bf16"):
        assert not torch.is_autocast_enabled("cpu")
