"""How much the diffusion's x_t/t pathway changes what a trained diffusion model recommends.

``pathway_stats(model, data)`` runs the reverse process on the first ``n_users`` users of an
evaluation loader and measures, all from seeded generators (the figures repeat exactly):

- ``x0_spread``: the relative spread of x_0 over ``runs`` independent reverse runs,
  mean over users of mean_r ||x0_r - mean x0|| / ||mean x0||;
- ``xt_zero_change``: the relative change of x_0 when the approximator is given zeros instead of
  x_t (same generator draws otherwise), mean over users of ||x0 - x0_zero|| / ||x0||;
- ``top10_runs``: the share of users whose top-10 set differs between two single reverse runs;
- ``top10_k1_vs_kT``: ... between a one-step reverse process and the full T steps (same draws);
- ``top10_single_vs_ens``: ... between a single run and the mean of ``runs`` runs;
- ``dt_norm``: the mean norm of the timestep embedding d_t over t = 0..T-1, beside
  ``item_norm``, the mean norm of an item embedding (the scale x_0 lives at).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from recbole.data.dataloader import AbstractDataLoader

    from recbole_diffurec.model import DiffuRec

FIELDS = ("x0_spread", "xt_zero_change", "top10_runs", "top10_k1_vs_kT", "top10_single_vs_ens", "dt_norm", "item_norm")


def _users(model, data, n_users):
    seqs, lens = [], []
    for batch in data:
        interaction = batch[0]
        seqs.append(interaction[model.ITEM_SEQ])
        lens.append(interaction[model.ITEM_SEQ_LEN])
        if sum(len(x) for x in lens) >= n_users:
            break
    return torch.cat(seqs)[:n_users], torch.cat(lens)[:n_users]


def _top10(model, x0):
    scores = model.score(x0)
    scores[:, 0] = -float("inf")  # the padding id
    return torch.sort(torch.topk(scores, 10, dim=1).indices, dim=1).values


def _differ(a, b):
    return float((a != b).any(dim=1).float().mean())


def _rel(a, b):
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-30)).mean())


@torch.inference_mode()
def pathway_stats(model: DiffuRec, data: AbstractDataLoader, n_users: int = 2000, runs: int = 4, seed: int = 0) -> dict[str, float]:
    """The figures above, as a dict, for a DiffuRec-family ``model`` (put in eval mode here)."""
    model.eval()
    seq, length = _users(model, data, n_users)
    seq, length = seq.to(model.device), length.to(model.device)

    def reverse(n=1, zero_xt=False, steps=None, seed_=seed):
        generator = torch.Generator(device=model.device).manual_seed(seed_)
        with model.inference_settings(sampling_steps=steps):
            return model.sample_members(seq, length, n, generator, zero_xt=zero_xt)

    members = reverse(n=runs)  # [R, U, H]
    mean = members.mean(0)
    spread = float(
        ((members - mean).norm(dim=-1) / mean.norm(dim=-1).clamp_min(1e-30)).mean(0).mean()
    )
    single = reverse()[0]
    zeroed = reverse(zero_xt=True)[0]
    other = reverse(seed_=seed + 1)[0]
    steps_t = model.diffusion.num_timesteps
    k_full = reverse(steps=0)[0]
    k_one = reverse(steps=1)[0]
    t = torch.arange(steps_t, device=model.device)
    dt = model.approximator.t_embedder(model.diffusion.scale_timesteps(t)).float()
    items = model.item_embedding.weight[1:]
    top = _top10(model, single)
    return {
        "users": int(seq.shape[0]),
        "x0_spread": spread,
        "xt_zero_change": _rel(zeroed, single),
        "top10_runs": _differ(top, _top10(model, other)),
        "top10_k1_vs_kT": _differ(_top10(model, k_one), _top10(model, k_full)),
        "top10_single_vs_ens": _differ(top, _top10(model, mean)),
        "dt_norm": float(dt.norm(dim=-1).mean()),
        "item_norm": float(items.norm(dim=-1).mean()),
    }
