"""The diffusion core against closed forms (docs/MODEL.md §1-2)."""
import math

import pytest
import torch

from recbole_diffurec.diffusion import SCHEDULES, GaussianDiffusion, get_named_beta_schedule, offset_noise


def make(name="trunc_lin", T=32, rescale=True):
    return GaussianDiffusion(get_named_beta_schedule(name, T), rescale_timesteps=rescale)


def test_trunc_lin_endpoints_at_T32():
    betas = get_named_beta_schedule("trunc_lin", 32)
    assert betas.dtype == torch.float64 and betas.shape == (32,)
    assert betas[0].item() == pytest.approx(0.013125)
    assert betas[-1].item() == pytest.approx(0.635)
    # linear in between
    assert betas[16].item() == pytest.approx(0.013125 + 16 * (0.635 - 0.013125) / 31)
    d = make()
    assert d.alphas_cumprod[0].item() == pytest.approx(0.986875, rel=1e-6)
    assert d.alphas_cumprod[-1].item() < 1e-5


def test_trunc_lin_caps_large_end():
    # T=10: scale 100, end 2.01 > 1, so end = 100 * 0.001 + 0.01
    betas = get_named_beta_schedule("trunc_lin", 10)
    assert betas[-1].item() == pytest.approx(0.11)
    assert betas[0].item() == pytest.approx(0.02)


def test_linear_schedule():
    betas = get_named_beta_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize(
    "name,alpha_bar,left",
    [
        ("cosine", lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2, False),
        ("sqrt", lambda s: 1 - math.sqrt(s + 0.0001), False),
        ("trunc_cos", lambda s: math.cos((s + 0.1) / 1.1 * math.pi / 2) ** 2, True),
    ],
)
def test_alpha_bar_schedules(name, alpha_bar, left):
    T = 20
    betas = get_named_beta_schedule(name, T)
    # the cumulative product follows alpha_bar(t/T) / alpha_bar(0) wherever no beta is capped
    prod = torch.cumprod(1 - betas, 0)
    for i in (0, 5, 10, 15):
        if left:
            expected = alpha_bar(i / T)  # beta_0 = 1 - alpha_bar(0), then ratios
        else:
            expected = alpha_bar((i + 1) / T) / alpha_bar(0)
        if (betas[: i + 1] < 0.999).all():
            assert prod[i].item() == pytest.approx(expected, rel=1e-9)
    assert (betas <= 0.999).all() and (betas > 0).all()


def test_every_schedule_valid_and_unknown_rejected():
    for name in SCHEDULES:
        betas = get_named_beta_schedule(name, 32)
        assert betas.shape == (32,) and (betas > 0).all() and (betas <= 1).all()
    with pytest.raises(ValueError, match="unknown noise schedule"):
        get_named_beta_schedule("quadratic", 32)


def test_buffers_float32_follow_module_not_in_state_dict():
    d = make()
    assert d.sqrt_alphas_cumprod.dtype == torch.float32
    assert d.state_dict() == {}
    assert "posterior_mean_coef1" in dict(d.named_buffers())


def test_q_sample_zero_noise_and_moments():
    d = make()
    x0 = torch.randn(5, 8)
    t = torch.tensor([0, 3, 10, 20, 31])
    ab = d.alphas_cumprod[t][:, None]
    assert torch.allclose(d.q_sample(x0, t, torch.zeros_like(x0)), ab.sqrt() * x0)
    # with x0 = 0 the sample is sqrt(1 - alpha_bar) * noise
    noise = torch.randn(5, 8)
    assert torch.allclose(d.q_sample(torch.zeros_like(x0), t, noise), (1 - ab).sqrt() * noise)


def test_q_sample_one_step_per_position():
    """t [B, L] (sequence training with a step per position): element (b, l) is noised at t[b, l]."""
    d = make()
    x0, noise = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    t = torch.randint(0, 32, (3, 4))
    ab = d.alphas_cumprod[t][..., None]
    assert torch.allclose(d.q_sample(x0, t, noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


def test_posterior_is_product_of_gaussians():
    """q(x_{t-1}|x_t,x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x_0, 1 - ab_{t-1})."""
    d = make().double()  # float32-stored coefficients, compared in float64
    x0, xt = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    for step in (1, 7, 31):
        t = torch.full((4,), step)
        beta = d.betas[step]
        alpha = 1 - beta
        ab_prev = d.alphas_cumprod_prev[step]
        # precision-weighted combination of the two Gaussians in x_{t-1}
        prec = alpha / beta + 1 / (1 - ab_prev)
        mean = (alpha.sqrt() / beta * xt + ab_prev.sqrt() / (1 - ab_prev) * x0) / prec
        got_mean, got_var = d.q_posterior_mean_variance(x0, xt, t)
        assert torch.allclose(got_mean, mean, atol=1e-5)
        assert torch.allclose(got_var, torch.full_like(got_var, (1 / prec).item()), rtol=1e-5)
    # at t = 0 the posterior mean is x0 itself
    mean0, var0 = d.q_posterior_mean_variance(x0, xt, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(mean0, x0, atol=1e-6) and torch.all(var0 == 0)


def test_reverse_variance_is_fixed_large():
    d = make()
    lv = d.model_log_variance
    assert lv[0].item() == pytest.approx(math.log(d.posterior_variance[1].item()), rel=1e-5)
    assert torch.allclose(lv[1:], d.betas[1:].log())


def test_no_noise_at_t0():
    d = make()
    oracle = torch.randn(6, 4)
    x_t = torch.randn(6, 4)
    t = torch.zeros(6, dtype=torch.long)
    a = d.p_sample(lambda x, s: oracle, x_t, t, noise=torch.randn(6, 4))
    b = d.p_sample(lambda x, s: oracle, x_t, t, noise=torch.randn(6, 4))
    assert torch.equal(a, b)
    assert torch.allclose(a, oracle, atol=1e-6)  # posterior mean at t = 0 is the prediction


def test_p_sample_adds_scaled_noise_elsewhere():
    d = make()
    pred = torch.randn(3, 4)
    x_t, z = torch.randn(3, 4), torch.randn(3, 4)
    t = torch.full((3,), 5)
    mean, _ = d.q_posterior_mean_variance(pred, x_t, t)
    got = d.p_sample(lambda x, s: pred, x_t, t, noise=z)
    assert torch.allclose(got, mean + d.betas[5].sqrt() * z, atol=1e-6)


def test_timesteps_uniform_and_rescaled():
    d = make(T=8)
    t = d.sample_timesteps(80000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(t, minlength=8).float() / 80000
    assert t.min() == 0 and t.max() == 7
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.01)
    assert d.scale_timesteps(torch.tensor([4])).item() == 500.0
    assert make(T=8, rescale=False).scale_timesteps(torch.tensor([4])).item() == 4.0


def test_offset_noise_zero_strength_is_standard_noise():
    a = offset_noise((4, 8), 0.0, generator=torch.Generator().manual_seed(3))
    b = torch.randn((4, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_offset_noise_shifts_each_sample_by_one_value():
    s = 0.5
    a = offset_noise((4, 8), s, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    z = torch.randn((4, 8), generator=g)
    o = torch.randn((4, 1), generator=g)
    assert torch.allclose(a, z + s * o)
    shift = a - z
    assert torch.allclose(shift, shift[:, :1].expand_as(shift))  # constant across dimensions
    assert not torch.allclose(shift[0], shift[1])  # different per sample


def test_space_timesteps():
    from recbole_diffurec.diffusion import space_timesteps

    assert space_timesteps(32, 32) == list(range(32))
    assert space_timesteps(32, 1) == [0]
    assert space_timesteps(32, 2) == [0, 31]
    assert space_timesteps(32, 4) == [0, 10, 21, 31]
    with pytest.raises(ValueError):
        space_timesteps(32, 33)


def test_respace_keeps_alpha_bar_at_kept_steps():
    d = make()
    full = d.respace(32)
    assert torch.allclose(full.betas, d.betas, atol=1e-6)
    assert torch.allclose(full.posterior_mean_coef1, d.posterior_mean_coef1, atol=1e-5)
    r = d.respace(4)
    keep = [0, 10, 21, 31]
    assert r.num_timesteps == 4 and r.timestep_map.tolist() == keep
    assert torch.allclose(r.alphas_cumprod, d.alphas_cumprod[keep], rtol=1e-5)
    # q(x_t | x_0) at respaced step i is the original process at step keep[i]
    x0, noise = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(r.q_sample(x0, torch.arange(4), noise), d.q_sample(x0, torch.tensor(keep), noise), atol=1e-5)


@pytest.mark.parametrize("count,steps", [(None, tuple(reversed(range(32)))), (4, (31, 21, 10, 0)), (1, (0,))])
def test_reverse_loop_with_oracle_returns_x_start(count, steps):
    """All T steps, or a respaced process: the network sees original steps T-1 .. 0, rescaled by 1000 / T."""
    d = make() if count is None else make().respace(count)
    x_start = torch.randn(7, 16)
    seen = []

    def oracle(x_t, t_scaled):
        seen.append(t_scaled[0].item())
        return x_start

    out = d.p_sample_loop(oracle, torch.randn(7, 16), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x_start, atol=1e-5)
    assert seen == [t * 1000 / 32 for t in steps]


@pytest.mark.parametrize("count", [None, 5])
def test_reverse_loop_equals_iterated_p_sample(count):
    """The lean loop (scalar coefficients, noise drawn up front) is exactly T steps of p_sample."""
    d = make() if count is None else make().respace(count)
    w = torch.randn(16, 16) / 4

    def net(x_t, t_scaled):  # depends on x_t and on the step
        return torch.tanh(x_t @ w) + t_scaled[:, None] / 1000

    x_T = torch.randn(5, 16)
    noise = torch.randn(d.num_timesteps, 5, 16)
    x = x_T
    for i in reversed(range(d.num_timesteps)):
        x = d.p_sample(net, x, torch.full((5,), i), noise=noise[i])
    assert torch.allclose(d.p_sample_loop(net, x_T, noise=noise), x, atol=1e-6)
