"""Shared fixtures: a tiny slice of RecBole's bundled ml-100k, cut at test time, and a scratch
working directory (RecBole writes log/, log_tensorboard/ and saved/ under the current one)."""
import csv
import os

import pytest

import recbole_diffurec  # noqa: F401  (patches and registration first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny model and budget for end-to-end runs: seconds per run on 2 CPU cores.
TINY = [
    "--epochs=1",
    "--hidden_size=8",
    "--n_layers=1",
    "--n_heads=1",
    "--MAX_ITEM_LIST_LENGTH=10",
    "--train_batch_size=256",
    "--show_progress=False",
    "--state=WARNING",
]


def tiny_args(tiny_data, *extra, model=None):
    """TINY plus ``extra``, where a key in ``extra`` replaces the same key of TINY; with ``model``,
    only the keys of TINY that the model defines (GRU4Rec has no blocks or heads)."""
    from recbole_diffurec.keys import own_args

    keys = {e.split("=")[0] for e in extra}
    tiny = [a for a in TINY if a.split("=")[0] not in keys]
    return [f"--data_path={tiny_data}"] + (own_args(tiny, model) if model else tiny) + list(extra)


def build_model(tiny_data, model, *extra):
    """(config, model, train, valid, test) of ``model`` on the tiny slice, with TINY plus ``extra``."""
    from recbole.data import create_dataset, data_preparation

    from recbole_diffurec.config import Config
    from recbole_diffurec.utils import get_model

    config = Config(model, "ml-100k", cmd_args=tiny_args(tiny_data, *extra, model=model))
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, get_model(model)(config, train._dataset), train, valid, test


def bundled_ml100k():
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k", "ml-100k.inter")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data path holding ml-100k/ml-100k.inter: the first 60 users, 30 earliest items each."""
    root = tmp_path_factory.mktemp("data")
    with open(bundled_ml100k(), newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        rows = list(reader)
    names = [h.split(":")[0] for h in header]
    iu, it = names.index("user_id"), names.index("timestamp")
    by_user = {}
    for row in rows:
        by_user.setdefault(row[iu], []).append(row)
    users = sorted(by_user, key=int)[:60]
    os.makedirs(root / "ml-100k")
    with open(root / "ml-100k" / "ml-100k.inter", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        for u in users:
            writer.writerows(sorted(by_user[u], key=lambda r: float(r[it]))[:30])
    return str(root)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
