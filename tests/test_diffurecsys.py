"""DiffuRecSys: cross-attention approximator, offset noise, ablation rows, ensemble inference."""
import pytest
import torch

from conftest import build_model, tiny_args
from recbole_diffurec.config import Config
from recbole_diffurec.layers import DiffuRecApproximator, DiffuRecSysApproximator
from recbole_diffurec.model import DiffuRec, DiffuRecSys, DiffuRecSysV1
from recbole_diffurec.quick_start import run
from recbole_diffurec.metrics import ACCURACY as METRICS

SMALL = ("--diffusion_steps=4", "--n_heads=2")
B, L, H = 4, 6, 16
LENGTHS = torch.tensor([6, 2, 1, 4])


def build(tiny_data, model="DiffuRecSys", *extra):
    config, net, train, _, test = build_model(tiny_data, model, *SMALL, *extra)
    return config, net, train, test


def history(length=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, length, H, generator=g), torch.arange(length)[None, :] < LENGTHS[:, None]


def test_ablation_rows_by_name_and_config(workdir):
    base = Config("DiffuRec", "ml-100k")
    v1 = Config("DiffuRecSysV1", "ml-100k")
    v2 = Config("DiffuRecSys", "ml-100k")
    assert base["offset_noise_strength"] == 0.0
    assert v1["offset_noise_strength"] == 0.0
    assert v2["offset_noise_strength"] == 0.1
    # every other key is inherited from DiffuRec.yaml
    for key in ("hidden_size", "diffusion_steps", "lr_step_size", "n_ensemble", "lambda_uncertainty"):
        assert base[key] == v1[key] == v2[key]
    # V1 by config
    assert Config("DiffuRecSys", "ml-100k", cmd_args=["--offset_noise_strength=0"])["offset_noise_strength"] == 0
    assert issubclass(DiffuRecSys, DiffuRec) and issubclass(DiffuRecSysV1, DiffuRecSys)


def test_cross_attention_shapes_chaining_and_padding():
    approx = DiffuRecSysApproximator(H, n_layers=3, n_heads=4, dropout=0.1, lambda_uncertainty=0.5).eval()
    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.tensor([0.0, 250.0, 500.0, 750.0])

    def out(seq, mask, seed=1):
        return approx(seq, mask, x_t, t, LENGTHS - 1, generator=torch.Generator().manual_seed(seed))

    ref = out(seq_emb, key_mask)
    assert ref.shape == (B, H)
    # padded items change nothing (lambda is [B, 1, H]: the same draw whatever the length)
    garbage = seq_emb.clone()
    garbage[~key_mask] = 50 * torch.randn(int((~key_mask).sum()), H)
    assert torch.allclose(out(garbage, key_mask), ref, atol=1e-5)
    # nor does extra trailing padding
    longer = torch.cat([seq_emb, torch.randn(B, 4, H)], 1)
    longer_mask = torch.cat([key_mask, torch.zeros(B, 4, dtype=torch.bool)], 1)
    assert torch.allclose(out(longer, longer_mask), ref, atol=1e-5)
    # blocks are chained: the first block's weights change the output (the repository's bug
    # would make only the last block count)
    with torch.no_grad():
        approx.blocks[0].block.feed_forward.fc2.weight.add_(torch.randn(H, 4 * H))  # not a constant: LN removes that
    assert not torch.allclose(out(seq_emb, key_mask), ref, atol=1e-4)


def test_x_t_reaches_output_through_cross_attention():
    approx = DiffuRecSysApproximator(H, n_layers=2, n_heads=2, dropout=0.0, lambda_uncertainty=1.0).eval()
    seq_emb, key_mask = history()
    t = torch.zeros(B)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = approx(seq_emb, key_mask, torch.zeros(B, H), t, LENGTHS - 1, generator=g())
    b = approx(seq_emb, key_mask, 3 * torch.randn(B, H), t, LENGTHS - 1, generator=g())
    assert not torch.allclose(a, b)


def test_every_block_receives_gradient():
    approx = DiffuRecSysApproximator(H, n_layers=3, n_heads=4, dropout=0.1, lambda_uncertainty=0.01).train()
    seq_emb, key_mask = history()
    out = approx(seq_emb, key_mask, torch.randn(B, H), torch.full((B,), 100.0), LENGTHS - 1)
    out.pow(2).sum().backward()
    for name, param in approx.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def spy_q_sample(model):
    """Record the arguments of the model's q_sample calls: returns the dict they land in."""
    seen, original = {}, model.diffusion.q_sample

    def spy(x_start, t, noise):
        seen.update(x_start=x_start, t=t, noise=noise)
        return original(x_start, t, noise)

    model.diffusion.q_sample = spy
    return seen


def _loss_with_seed(model, interaction, seed):
    torch.manual_seed(seed)
    return model.calculate_loss(interaction)


def test_offset_zero_is_the_standard_noise_path(tiny_data, workdir):
    # lambda 1: at the default 1e-3 an untrained x_t moves the loss by less than float32 resolves
    _, model, train, _ = build(tiny_data, "DiffuRecSys", "--offset_noise_strength=0", "--lambda_uncertainty=1")
    model.eval()  # no dropout: the loss is a function of the random draws only
    batch = next(iter(train))
    loss0 = _loss_with_seed(model, batch, 3)
    # the same draws with the noise made by hand from plain N(0, I)
    original = model.diffusion.q_sample
    captured = spy_q_sample(model)
    assert torch.equal(_loss_with_seed(model, batch, 3), loss0)
    torch.manual_seed(3)
    t = model.diffusion.sample_timesteps(len(batch))
    assert torch.equal(captured["t"], t)  # the timesteps come first from the seeded generator
    assert torch.equal(captured["noise"], torch.randn(len(batch), model.hidden_size))
    # a positive strength changes the loss under the same seed
    model.offset_noise_strength = 0.5
    model.diffusion.q_sample = original
    assert not torch.equal(_loss_with_seed(model, batch, 3), loss0)


def test_offset_noise_is_training_only(tiny_data, workdir):
    _, model, _, test = build(tiny_data, "DiffuRecSys", "--offset_noise_strength=5.0")
    model.eval()
    interaction = next(iter(test))[0]
    torch.manual_seed(0)
    a = model.full_sort_predict(interaction)
    model.offset_noise_strength = 0.0
    torch.manual_seed(0)
    b = model.full_sort_predict(interaction)
    assert torch.equal(a, b)


def test_ensemble_is_the_mean_of_independent_runs(tiny_data, workdir):
    _, model, _, test = build(tiny_data, "DiffuRecSys", "--n_ensemble=4")
    model.eval()
    interaction = next(iter(test))[0]
    seq, seq_len = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        members = model.sample_members(seq, seq_len, 4, torch.Generator().manual_seed(9))
        assert members.shape == (4, len(interaction), model.hidden_size)
        member_scores = members @ model.item_embedding.weight.T  # [4, B, N+1]
        # the runs are independent draws
        assert not torch.allclose(member_scores[0], member_scores[1])
        x0 = model.sample_xstart(seq, seq_len, torch.Generator().manual_seed(9))
    assert torch.allclose(x0 @ model.item_embedding.weight.T, member_scores.mean(0), atol=1e-4)


def test_ensemble_of_one_is_a_single_run(tiny_data, workdir):
    _, model, _, test = build(tiny_data, "DiffuRecSys")
    model.eval()
    interaction = next(iter(test))[0]
    seq, seq_len = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        one = model.sample_members(seq, seq_len, 1, torch.Generator().manual_seed(2))[0]
        x0 = model.sample_xstart(seq, seq_len, torch.Generator().manual_seed(2))
    assert torch.equal(one, x0)


@pytest.mark.parametrize("model", ["DiffuRec", "DiffuRecSysV1", "DiffuRecSys"])
def test_variants_end_to_end(model, tiny_data, workdir):
    result = run(model, "ml-100k", cmd_args=tiny_args(tiny_data, *SMALL, "--n_ensemble=2"))
    assert result["model"] == model
    for split in ("best_valid_result", "test_result"):
        for m in METRICS:
            assert 0.0 <= float(result[split][m]) <= 1.0


def test_unchained_blocks_use_only_the_last_block():
    """chain_blocks False (the DiffuRecSys repository): every block reads the history, so only
    the last block reaches the output; its output is the last block applied to the history."""
    approx = DiffuRecSysApproximator(H, 3, 2, 0.0, lambda_uncertainty=0.5, chain_blocks=False).eval()
    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.tensor([0.0, 250.0, 500.0, 750.0])
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ref = approx(seq_emb, key_mask, x_t, t, LENGTHS - 1, generator=g())
    with torch.no_grad():
        approx.blocks[0].block.feed_forward.fc2.weight.add_(torch.randn(H, 4 * H))
    assert torch.allclose(approx(seq_emb, key_mask, x_t, t, LENGTHS - 1, generator=g()), ref)
    # the same numbers as the last block by hand, with the same lambda draw
    query = approx.sample_lambda((B, 1, H), "cpu", g()) * (x_t + approx.t_embedder(t)).unsqueeze(1)
    by_hand = approx.norm(approx.blocks[-1](seq_emb, key_mask, query, LENGTHS - 1)).squeeze(1)
    assert torch.allclose(by_hand, ref, atol=1e-6)


def pathway_size(model):
    """Frobenius norms of the timestep MLP's first weight and of every cross-attention query weight."""
    weights = [model.approximator.t_embedder.mlp[0].weight] + [
        b.cross_attention.query.weight for b in model.approximator.blocks
    ]
    return torch.stack([w.detach().norm() for w in weights])


@pytest.mark.parametrize("paper_decay, survives", [(False, True), (True, False)])
def test_pathway_survives_training_with_the_defaults(tiny_data, paper_decay, survives):
    """The x_t/t pathway sees its input through lambda ~ 1e-3, so its gradient is tiny. Under the
    papers' L2 decay inside Adam the decay term dominates that gradient and the weights shrink
    towards zero within a few hundred steps; the defaults (no decay on the pathway) keep them.
    The papers' case runs too, so this test is known to be able to fail."""
    from recbole_diffurec.trainer import Trainer

    extra = ["--hidden_size=16", "--n_heads=2", "--weight_decay=0.0001"]
    if paper_decay:
        extra.append("--pathway_weight_decay=True")
    config, model, train, _ = build(tiny_data, "DiffuRecSys", *extra)
    assert config["pathway_weight_decay"] is paper_decay  # the default exempts the pathway
    optimizer = Trainer(config, model).optimizer
    before = pathway_size(model)
    model.train()
    step = 0
    while step < 300:
        for batch in train:
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()
            step += 1
    ratio = pathway_size(model) / before
    if survives:
        assert bool((ratio > 0.5).all()), ratio
    else:
        assert bool((ratio < 0.35).all()), ratio


@pytest.mark.parametrize("approximator", [DiffuRecApproximator, DiffuRecSysApproximator])
def test_lambda_zero_is_the_no_diffusion_control(approximator):
    """lambda_uncertainty 0 (the accuracy table's control row): x_t and t never reach the output,
    so training and the reverse process reduce to one deterministic transformer."""
    approx = approximator(H, 2, 2, 0.0, lambda_uncertainty=0.0).eval()
    seq_emb, key_mask = history()
    a = approx(seq_emb, key_mask, torch.zeros(B, H), torch.zeros(B), LENGTHS - 1)
    b = approx(seq_emb, key_mask, 5 * torch.randn(B, H), torch.full((B,), 900.0), LENGTHS - 1)
    assert torch.equal(a, b)


@pytest.mark.parametrize("lam, moves", [(0.0, False), (1.0, True)])
def test_pathway_stats_measure_what_x_t_does(tiny_data, workdir, lam, moves):
    """benchmarks/pathway.py's figures: with lambda 0 nothing reaches the output, so every figure is
    exactly zero; with lambda 1 (untrained weights) x_t and the reverse runs change x_0 and the
    top-10 lists. The figures repeat exactly with the same seed."""
    from recbole_diffurec.pathway import pathway_stats

    _, model, _, test = build(tiny_data, "DiffuRecSys", f"--lambda_uncertainty={lam}", "--hidden_size=16")
    stats = pathway_stats(model, test, n_users=40, runs=3)
    assert stats["users"] == 40
    assert stats == pathway_stats(model, test, n_users=40, runs=3)
    changes = ("x0_spread", "xt_zero_change", "top10_runs", "top10_single_vs_ens")
    if moves:
        assert all(stats[k] > 0 for k in changes), stats
        assert stats["x0_spread"] > 1e-2
    else:
        assert stats["x0_spread"] < 1e-6, stats  # (the float rounding of a mean of equal rows)
        assert all(stats[k] == 0 for k in changes[1:] + ("top10_k1_vs_kT",)), stats
    assert stats["dt_norm"] > 0 and stats["item_norm"] > 0


# ----- variants that let x_t through (condition_norm, condition_token, target_scale) -----
@pytest.mark.parametrize("approximator, kwargs", [
    (DiffuRecApproximator, {"condition_norm": "layernorm"}),
    (DiffuRecApproximator, {"condition_norm": "linear"}),
    (DiffuRecApproximator, {"condition_token": True}),
    (DiffuRecSysApproximator, {"condition_norm": "layernorm"}),
])
def test_condition_variants_let_x_t_through_and_ignore_padding(approximator, kwargs):
    approx = approximator(H, 2, 2, 0.0, lambda_uncertainty=0.001, **kwargs).eval()
    seq_emb, key_mask = history()
    t = torch.zeros(B)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    x_t = 3 * torch.randn(B, H)
    ref = approx(seq_emb, key_mask, x_t, t, LENGTHS - 1, generator=g())
    other = approx(seq_emb, key_mask, torch.zeros(B, H), t, LENGTHS - 1, generator=g())
    if kwargs.get("condition_norm") != "layernorm" or kwargs.get("condition_token"):
        assert not torch.allclose(ref, other, atol=1e-4)
    else:  # the LayerNorm makes the condition's scale its own: x_t moves it at lambda 1e-3 anyway
        assert (ref - other).abs().max() > 1e-6
    # trailing padding changes nothing where lambda is one draw per sample (the token sits after
    # the padding, which is masked); the additive mode draws lambda per position, so its draws
    # depend on the padded length
    if kwargs.get("condition_token") or approximator is DiffuRecSysApproximator:
        longer = torch.cat([seq_emb, torch.randn(B, 3, H)], 1)
        longer_mask = torch.cat([key_mask, torch.zeros(B, 3, dtype=torch.bool)], 1)
        assert torch.allclose(approx(longer, longer_mask, x_t, t, LENGTHS - 1, generator=g()), ref, atol=1e-5)
    # the map's weights are on the pathway (no weight decay by default)
    if kwargs.get("condition_norm", "none") != "none":
        mapped = {id(p) for p in approx.condition_map.parameters()}
        assert mapped and mapped <= {id(p) for p in approx.pathway_parameters()}


def test_condition_token_is_diffurec_only(tiny_data, workdir):
    from recbole_diffurec.utils import UsageError

    with pytest.raises(UsageError, match="condition_token is DiffuRec's variant"):
        build(tiny_data, "DiffuRecSys", "--condition_token=True")
    with pytest.raises(UsageError, match="condition_norm' must be one of none, layernorm, linear"):
        build(tiny_data, "DiffuRec", "--condition_norm=batchnorm")


@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_target_scale_sets_the_diffused_scale_and_returns_x0(scale, tiny_data, workdir):
    """Training diffuses target_scale * x_0; with an approximator that always predicts v, the
    reverse process ends at exactly v whatever the scale (its last step returns the prediction)."""
    _, model, train, test = build(tiny_data, "DiffuRec", f"--target_scale={scale}")
    model.eval()
    batch = next(iter(train))
    seen = spy_q_sample(model)
    model.calculate_loss(batch)
    expected = model.item_embedding(batch[model.POS_ITEM_ID]) * scale
    assert torch.allclose(seen["x_start"], expected)
    v = torch.randn(model.hidden_size)
    model.approximator.forward = lambda seq_emb, *a, **k: v.expand(seq_emb.shape[0], -1)
    interaction = next(iter(test))[0]
    x0 = model.sample_members(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN], 2)
    assert torch.allclose(x0, v.expand_as(x0), atol=1e-5)
