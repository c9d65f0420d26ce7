"""Gaussian diffusion over item embeddings: forward process, posterior, reverse step and loop.

Network-free (docs/MODEL.md §1-2): the reverse process takes a denoising callable
``denoise_fn(x_t, t_scaled) -> pred_xstart`` and knows nothing of the model. Names follow
improved-diffusion / DiffuRec so the two can be read side by side.

Shapes: B batch, H hidden, T diffusion steps; t is a LongTensor [B] in {0..T-1}.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import Tensor, nn

DenoiseFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, scaled t) -> predicted x_0
Device = Union[torch.device, str, None]


def extract(coef: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """coef[t] broadcast to the shape of ``x``: t [B] -> [B, 1, ..., 1]; t [B, L] (one step per
    position of a sequence) -> [B, L, 1, ..., 1]."""
    return coef[t].view(*t.shape, *([1] * (x.dim() - t.dim())))


def offset_noise(
    shape: Sequence[int], strength: float, generator: torch.Generator | None = None, device: Device = None
) -> Tensor:
    """eps = z + strength * o: z ~ N(0, I) per element, o ~ N(0, 1) one scalar per sample
    (Eq. 17 of DiffuRecSys; the "offset noise" of image diffusion). strength 0 gives plain z."""
    noise = torch.randn(shape, generator=generator, device=device)
    if strength:
        offset = torch.randn(shape[0], *([1] * (len(shape) - 1)), generator=generator, device=device)
        noise = noise + strength * offset
    return noise


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """``count`` steps of {0..T-1}, evenly spaced and always keeping 0 and T-1 when count > 1
    (improved-diffusion's ``space_timesteps`` with one section)."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"cannot take {count} of {num_timesteps} diffusion steps")
    if count == 1:
        return [0]
    stride = (num_timesteps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


class GaussianDiffusion(nn.Module):
    """DDPM with an x_0-predicting ("START_X") network and fixed-large reverse variance.

    Args:
        betas: float64 tensor [T] (see ``schedules.get_named_beta_schedule``).
        rescale_timesteps: feed the network t * 1000 / T instead of t (DiffuRec does).
        timestep_map: for a respaced process (see ``respace``), the original step of each of its
            steps; the network always sees original steps. Default: the identity.
        original_num_steps: T of the process the network was trained on. Default: len(betas).
    """

    def __init__(
        self, betas: Tensor | Sequence[float], rescale_timesteps: bool = True,
        timestep_map: Tensor | Sequence[int] | None = None, original_num_steps: int | None = None,
    ) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        assert betas.dim() == 1 and (betas > 0).all() and (betas <= 1).all(), "betas must be 1-D in (0, 1]"
        self.num_timesteps = int(betas.shape[0])
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps or self.num_timesteps
        timestep_map = torch.arange(self.num_timesteps) if timestep_map is None else torch.as_tensor(timestep_map)
        assert timestep_map.shape == (self.num_timesteps,)
        self.register_buffer("timestep_map", timestep_map.long(), persistent=False)

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])

        # forward process q(x_t | x_0)
        sqrt_alphas_cumprod = alphas_cumprod.sqrt()
        sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt()
        # posterior q(x_{t-1} | x_t, x_0)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        posterior_mean_coef1 = betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod)
        posterior_mean_coef2 = (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod)
        # reverse p(x_{t-1} | x_t): "fixed large" variance, beta_t, with the posterior variance at
        # t = 1 in place of beta_0 (improved-diffusion, DiffuRec); unused at t = 0 (no noise there),
        # so a one-step process (T = 1, e.g. respaced) takes beta_0
        first = posterior_variance[1:2] if self.num_timesteps > 1 else betas[:1]
        model_log_variance = torch.log(torch.cat([first, betas[1:]]))

        for name, value in (
            ("betas", betas),
            ("alphas_cumprod", alphas_cumprod),
            ("alphas_cumprod_prev", alphas_cumprod_prev),
            ("sqrt_alphas_cumprod", sqrt_alphas_cumprod),
            ("sqrt_one_minus_alphas_cumprod", sqrt_one_minus_alphas_cumprod),
            ("posterior_variance", posterior_variance),
            ("posterior_mean_coef1", posterior_mean_coef1),
            ("posterior_mean_coef2", posterior_mean_coef2),
            ("model_log_variance", model_log_variance),
        ):
            # computed in float64, stored float32; not in state_dict: they follow from the config
            self.register_buffer(name, value.float(), persistent=False)
        # the same values as Python scalars (float32-rounded, so products match the buffers'), for
        # the reverse loop, where all rows share one step
        self._coef1 = posterior_mean_coef1.float().tolist()
        self._coef2 = posterior_mean_coef2.float().tolist()
        self._sigma = torch.exp(0.5 * model_log_variance.float()).tolist()

    def respace(self, count: int) -> GaussianDiffusion:
        """The same process on ``count`` of its steps (improved-diffusion's SpacedDiffusion): the
        kept steps keep their alpha_bar, so beta'_i = 1 - alpha_bar[s_i] / alpha_bar[s_{i-1}].
        Used for faster sampling with a network trained on all T steps."""
        keep = space_timesteps(self.num_timesteps, count)
        alphas_cumprod = self.alphas_cumprod.double()
        betas, last = [], 1.0
        for s in keep:
            betas.append(1 - alphas_cumprod[s].item() / last)
            last = alphas_cumprod[s].item()
        return GaussianDiffusion(
            torch.tensor(betas, dtype=torch.float64), self.rescale_timesteps,
            timestep_map=self.timestep_map[keep], original_num_steps=self.original_num_steps,
        ).to(self.betas.device)

    def scale_timesteps(self, t: Tensor) -> Tensor:
        """What the network sees of t: its original step, times 1000 / T if rescaling."""
        t = self.timestep_map[t].float()
        return t * (1000.0 / self.original_num_steps) if self.rescale_timesteps else t

    def unscale_timesteps(self, t_scaled: Tensor) -> Tensor:
        """The original steps (of the trained T-step process) that ``scale_timesteps`` fed the network."""
        t = t_scaled * (self.original_num_steps / 1000.0) if self.rescale_timesteps else t_scaled
        return t.round().long()

    def sample_timesteps(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        """Uniform t in {0..T-1}. (DiffuRec's "lossaware" sampler is never fed losses: uniform too.)"""
        return torch.randint(0, self.num_timesteps, (batch_size,), device=device, generator=generator)

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), given the noise."""
        assert noise.shape == x_start.shape
        return extract(self.sqrt_alphas_cumprod, t, x_start) * x_start + extract(
            self.sqrt_one_minus_alphas_cumprod, t, x_start
        ) * noise

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of the posterior q(x_{t-1} | x_t, x_0)."""
        assert x_start.shape == x_t.shape
        mean = extract(self.posterior_mean_coef1, t, x_t) * x_start + extract(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, extract(self.posterior_variance, t, x_t)

    def p_mean_variance(self, denoise_fn: DenoiseFn, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """pred_xstart = denoise_fn(x_t, scaled t); the reverse mean is the posterior mean at it."""
        pred_xstart = denoise_fn(x_t, self.scale_timesteps(t))
        mean, _ = self.q_posterior_mean_variance(pred_xstart, x_t, t)
        return mean, extract(self.model_log_variance, t, x_t), pred_xstart

    def p_sample(
        self, denoise_fn: DenoiseFn, x_t: Tensor, t: Tensor, noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One reverse step x_t -> x_{t-1} = mean + exp(logvar / 2) z, with z = 0 where t == 0."""
        mean, log_variance, _ = self.p_mean_variance(denoise_fn, x_t, t)
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device)
        nonzero = (t != 0).float().view(-1, *([1] * (x_t.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * log_variance) * noise

    def p_sample_loop(
        self, denoise_fn: DenoiseFn, x_T: Tensor, noise: Sequence[Tensor] | None = None,  # noqa: N803
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The whole reverse process from x_T (e.g. N(0, I)) through t = T-1 .. 0; returns x_0.

        The same steps as iterating ``p_sample``, written lean for inference: every row is at the
        same step, so coefficients are Python scalars (no gathers), the step fed to the network is
        a view of one precomputed tensor, and the noise of all steps is drawn at once ([T, B, ...],
        or given as ``noise``): inside the loop only the network and the update allocate."""
        steps, B = self.num_timesteps, x_T.shape[0]
        if noise is None:
            noise = torch.randn((steps,) + tuple(x_T.shape), generator=generator, device=x_T.device)
        assert noise.shape == (steps,) + tuple(x_T.shape)
        t_scaled = self.scale_timesteps(torch.arange(steps, device=x_T.device))  # [T]
        x = x_T
        for i in reversed(range(steps)):
            pred_xstart = denoise_fn(x, t_scaled[i].expand(B))
            # posterior mean at pred_xstart (Eq. 7 of DDPM), plus sigma_t z except at t = 0
            x = self._coef1[i] * pred_xstart + self._coef2[i] * x
            if i > 0:
                x = x + self._sigma[i] * noise[i]
        return x
