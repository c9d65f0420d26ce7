"""Length-grouped training batches (data.py) and length-sorted chunked inference."""
from collections import Counter

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader import TrainDataLoader

from conftest import tiny_args
from recbole_diffurec.config import Config
from recbole_diffurec.data import SequentialTrainDataLoader, length_grouped_order
from recbole_diffurec.utils import get_model


def batches_of(order, size):
    return list(torch.split(order, size))


def test_order_is_a_permutation_with_sorted_pools():
    lengths = torch.randint(1, 50, (1003,), generator=torch.Generator().manual_seed(0))
    order = length_grouped_order(lengths, 10, 4, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(1003))
    batches = batches_of(order, 10)
    assert len(batches[-1]) == 3 and all(len(b) == 10 for b in batches[:-1])  # the short one last
    # within a batch, lengths come from one sorted pool: spread far below a random batch's
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in batches[:-1]]).mean()
    random_spread = torch.tensor(
        [float(lengths[b].max() - lengths[b].min()) for b in batches_of(torch.randperm(1003), 10)[:-1]]
    ).mean()
    assert spread < random_spread / 3


def test_one_pool_gives_disjoint_length_ranges_and_is_seeded():
    lengths = torch.randint(1, 50, (200,), generator=torch.Generator().manual_seed(0))
    order = length_grouped_order(lengths, 20, 10, torch.Generator().manual_seed(2))  # one pool: all
    ranges = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches_of(order, 20))
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    again = length_grouped_order(lengths, 20, 10, torch.Generator().manual_seed(2))
    other = length_grouped_order(lengths, 20, 10, torch.Generator().manual_seed(3))
    assert torch.equal(order, again) and not torch.equal(order, other)
    unshuffled = length_grouped_order(lengths, 20, 10, shuffle=False)
    assert torch.equal(lengths[unshuffled], lengths.sort().values)


def loaders(tiny_data, grouping):
    config = Config("DiffuRec", "ml-100k", cmd_args=tiny_args(
        tiny_data, "--diffusion_steps=4", f"--train_length_grouping={grouping}", "--train_batch_size=64"))
    return config, data_preparation(config, create_dataset(config))


def epoch_samples(config, train):
    samples, longest = Counter(), []
    for batch in train:
        lengths = batch[config["ITEM_LIST_LENGTH_FIELD"]]
        longest.append(int(lengths.max()))
        for u, i, n in zip(batch[config["USER_ID_FIELD"]].tolist(), batch[config["ITEM_ID_FIELD"]].tolist(), lengths.tolist()):
            samples[(u, i, n)] += 1
    return samples, sum(longest)


def test_grouped_loader_sees_every_sample_once_in_shorter_batches(tiny_data, workdir):
    config, (plain, _, _) = loaders(tiny_data, 0)
    gconfig, (grouped, _, _) = loaders(tiny_data, 2)
    assert type(plain) is TrainDataLoader and isinstance(grouped, SequentialTrainDataLoader)
    plain_samples, plain_padded = epoch_samples(config, plain)
    first, grouped_padded = epoch_samples(gconfig, grouped)
    second, _ = epoch_samples(gconfig, grouped)
    assert first == plain_samples == second  # the same samples, each once per epoch
    assert grouped_padded < plain_padded  # the batches' longest histories add up to less
    assert len(grouped) == len(plain)


def test_grouped_training_runs_end_to_end(tiny_data, workdir):
    from recbole_diffurec.quick_start import run

    result = run("DiffuRecSys", "ml-100k", cmd_args=tiny_args(
        tiny_data, "--diffusion_steps=4", "--train_length_grouping=2", "--train_batch_size=64"))
    assert 0.0 <= float(result["test_result"]["ndcg@10"]) <= 1.0


@pytest.mark.parametrize("chunk", [0, 4, 7, 1000])
def test_chunked_inference_reassembles_users_in_order(tiny_data, workdir, chunk):
    config, (_, _, test) = loaders(tiny_data, 0)
    model = get_model("DiffuRec")(config, test._dataset)
    model.inference_batch_size = chunk
    calls = []

    def fake_members(item_seq, item_seq_len, n_ensemble=1, generator=None):
        calls.append(item_seq_len.clone())
        return (model.item_embedding(item_seq).sum(1) + item_seq_len[:, None])[None]  # a function of each row

    model.sample_members = fake_members
    interaction = next(iter(test))[0]
    seq, seq_len = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    got = model.sample_xstart(seq, seq_len)
    assert torch.allclose(got, model.item_embedding(seq).sum(1) + seq_len[:, None])
    assert not got.is_inference()  # callers may write into what they derive from it
    if chunk and chunk < len(seq):
        assert len(calls) == -(-len(seq) // chunk) and all(len(c) <= chunk for c in calls)
        assert torch.equal(torch.cat(calls), seq_len.sort().values)  # sorted by length
    else:
        assert len(calls) == 1
