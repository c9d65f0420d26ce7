"""Diffusion math, torch only: no network, no config."""
from recbole_diffurec.diffusion.gaussian_diffusion import GaussianDiffusion, extract, offset_noise, space_timesteps
from recbole_diffurec.diffusion.schedules import SCHEDULES, get_named_beta_schedule

__all__ = [
    "GaussianDiffusion", "SCHEDULES", "extract", "get_named_beta_schedule", "offset_noise", "space_timesteps",
]
