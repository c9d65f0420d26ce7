"""The approximator: shapes, padding invariance, gradients reach every block."""
import torch

from recbole_diffurec.layers import DiffuRecApproximator, MultiHeadAttention, timestep_embedding

B, L, H = 4, 7, 16
LENGTHS = torch.tensor([7, 3, 1, 5])


def history(lengths=LENGTHS, length=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq_emb = torch.randn(len(lengths), length, H, generator=g)
    key_mask = torch.arange(length)[None, :] < lengths[:, None]  # right padding, as RecBole
    return seq_emb, key_mask


def run(approx, seq_emb, key_mask, x_t, t, lengths=LENGTHS, seed=1):
    return approx(seq_emb, key_mask, x_t, t, lengths - 1, generator=torch.Generator().manual_seed(seed))


def test_timestep_embedding_closed_form():
    t = torch.tensor([0.0, 31.25, 1000.0])
    emb = timestep_embedding(t, 8)
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    assert torch.allclose(emb[:, :4], torch.cos(t[:, None] * freqs))
    assert torch.allclose(emb[:, 4:], torch.sin(t[:, None] * freqs))
    assert timestep_embedding(t, 9).shape == (3, 9)
    # one step per position (t [B, L]), odd width included: each row is the embedding of its steps
    steps = torch.tensor([[0.0, 31.25], [1000.0, 500.0]])
    for dim in (8, 9):
        assert torch.equal(timestep_embedding(steps, dim), torch.stack([timestep_embedding(row, dim) for row in steps]))


def test_shapes_and_dropout_off_in_eval():
    approx = DiffuRecApproximator(H, n_layers=2, n_heads=4, dropout=0.1, lambda_uncertainty=0.001).eval()
    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.tensor([0.0, 100.0, 500.0, 968.75])
    out = run(approx, seq_emb, key_mask, x_t, t)
    assert out.shape == (B, H)
    assert torch.equal(out, run(approx, seq_emb, key_mask, x_t, t))  # same lambda draw, no dropout


def test_padding_invariance():
    """Changing padded positions, or cutting trailing padding, changes no output."""
    approx = DiffuRecApproximator(H, n_layers=3, n_heads=4, dropout=0.1, lambda_uncertainty=0.5).eval()
    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.tensor([10.0, 20.0, 30.0, 40.0])
    ref = run(approx, seq_emb, key_mask, x_t, t)

    garbage = seq_emb.clone()
    garbage[~key_mask] = 100 * torch.randn(int((~key_mask).sum()), H)
    # lambda is drawn for every position, so the same generator gives the same draw
    assert torch.allclose(run(approx, garbage, key_mask, x_t, t), ref, atol=1e-5)

    # the same histories, padded to 12 instead of 7: lambda is drawn per position, so compare
    # with lambda = constant mu (std 0 via a deterministic sampler)
    approx.sample_lambda = lambda shape, device, generator=None: torch.full(shape, 0.5)
    ref = run(approx, seq_emb, key_mask, x_t, t)
    longer = torch.cat([seq_emb, torch.randn(B, 5, H)], dim=1)
    longer_mask = torch.cat([key_mask, torch.zeros(B, 5, dtype=torch.bool)], dim=1)
    assert torch.allclose(run(approx, longer, longer_mask, x_t, t), ref, atol=1e-5)


def test_real_items_matter():
    approx = DiffuRecApproximator(H, n_layers=1, n_heads=2, dropout=0.0, lambda_uncertainty=0.001).eval()
    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.zeros(B)
    ref = run(approx, seq_emb, key_mask, x_t, t)
    changed = seq_emb.clone()
    changed[0, 0] += torch.randn(H)  # a real item of user 0 (not a constant: LayerNorm removes that)
    out = run(approx, changed, key_mask, x_t, t)
    assert not torch.allclose(out[0], ref[0])
    assert torch.allclose(out[1:], ref[1:])


def test_key_mask_only_attention():
    attn = MultiHeadAttention(H, 4, dropout=0.0).eval()
    q = torch.randn(2, 1, H)
    mem = torch.randn(2, 5, H)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    ref = attn(q, mem, mask)
    mem2 = mem.clone()
    mem2[0, 2:] = torch.randn(3, H)
    out = attn(q, mem2, mask)
    assert torch.allclose(out[0], ref[0], atol=1e-6)


def test_gradients_reach_every_block():
    approx = DiffuRecApproximator(H, n_layers=3, n_heads=4, dropout=0.1, lambda_uncertainty=0.001).train()
    seq_emb, key_mask = history()
    x_t = torch.randn(B, H, requires_grad=True)
    out = run(approx, seq_emb.requires_grad_(), key_mask, x_t, torch.full((B,), 250.0))
    out.pow(2).sum().backward()
    for name, param in approx.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x_t.grad.abs().sum() > 0


def test_last_block_at_last_position_is_exact():
    """Computing only the last real item's output in the final block gives the full computation's numbers."""
    from recbole_diffurec.layers import DiffuRecSysApproximator

    seq_emb, key_mask = history()
    x_t, t = torch.randn(B, H), torch.tensor([0.0, 125.0, 500.0, 875.0])
    for cls in (DiffuRecApproximator, DiffuRecSysApproximator):
        approx = cls(H, n_layers=3, n_heads=4, dropout=0.1, lambda_uncertainty=0.3).eval()
        fast = run(approx, seq_emb, key_mask, x_t, t)
        # reference: every block on every position (last=None), then read at the last real item
        approx.blocks[-1].forward = _full_then_gather(approx.blocks[-1])
        full = run(approx, seq_emb, key_mask, x_t, t)
        assert torch.allclose(fast, full, atol=1e-5), cls.__name__
        assert fast.shape == (B, H)


def _full_then_gather(block):
    """The block's forward computing every position, then reading ``last`` (the argument before
    ``causal``, its final one)."""
    original = block.forward

    def forward(h, key_mask, *args):
        *rest, last, causal = args
        out = original(h, key_mask, *rest, None, causal)  # [B, L, H]
        return out[torch.arange(out.shape[0]), last].unsqueeze(1)

    return forward
