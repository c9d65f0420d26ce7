"""Named beta schedules (docs/MODEL.md §1), as DiffuRec's ``get_named_beta_schedule``.

Each returns a float64 tensor of T betas in (0, 1].
"""
from __future__ import annotations

import math
from typing import Callable

import torch

SCHEDULES = ("trunc_lin", "linear", "cosine", "sqrt", "trunc_cos")


def betas_for_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> torch.Tensor:
    """beta_i = 1 - alpha_bar((i+1)/T) / alpha_bar(i/T), capped at ``max_beta``."""
    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def betas_for_alpha_bar_left(num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> torch.Tensor:
    """As ``betas_for_alpha_bar`` but shifted left: beta_0 = 1 - alpha_bar(0) (DiffuRec's trunc_cos)."""
    betas = [min(1 - alpha_bar(0), max_beta)]
    betas += [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps - 1)]
    return torch.tensor(betas, dtype=torch.float64)


def get_named_beta_schedule(name: str, num_steps: int) -> torch.Tensor:
    """The betas of schedule ``name`` for ``num_steps`` diffusion steps (float64, shape [T])."""
    scale = 1000 / num_steps
    if name == "trunc_lin":
        # linear, shifted up by 0.01; at T=32: 0.013125 .. 0.635
        start, end = scale * 0.0001 + 0.01, scale * 0.02 + 0.01
        if end > 1:
            end = scale * 0.001 + 0.01
        return torch.linspace(start, end, num_steps, dtype=torch.float64)
    if name == "linear":
        # Ho et al. (2020), extended to any number of steps
        return torch.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=torch.float64)
    if name == "cosine":
        # Nichol & Dhariwal (2021)
        return betas_for_alpha_bar(num_steps, lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2)
    if name == "sqrt":
        # Li et al., Diffusion-LM (2022)
        return betas_for_alpha_bar(num_steps, lambda s: 1 - math.sqrt(s + 0.0001))
    if name == "trunc_cos":
        return betas_for_alpha_bar_left(num_steps, lambda s: math.cos((s + 0.1) / 1.1 * math.pi / 2) ** 2)
    raise ValueError(f"unknown noise schedule '{name}'; choose one of {', '.join(SCHEDULES)}")
