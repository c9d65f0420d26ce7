"""Each compatibility patch of recbole_diffurec.compat, and the model/trainer registration."""
import numpy as np
import pytest
import torch

import recbole_diffurec  # noqa: F401
from recbole_diffurec import compat


class Opaque:
    """Not on torch's weights-only allow list."""

    def __init__(self, value):
        self.value = value


def test_numpy_aliases_present_and_harmless():
    for name in ("float_", "complex_", "unicode_", "bool8"):
        assert hasattr(np, name)
    assert np.float_ is np.float64
    compat.apply()  # idempotent


def test_recbole_config_builds_under_numpy2():
    from recbole.config import Config

    config = Config(model="SASRec", dataset="ml-100k", config_dict={"show_progress": False, "train_neg_sample_args": None})
    assert config["model"] == "SASRec"
    # RecBole's metrics use np.float, restored by its own compatibility_settings
    assert np.float is np.float64


def test_torch_load_trusts_recbole_callers_only(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"obj": Opaque(3)}, path)
    # any caller outside RecBole keeps torch's safe default
    with pytest.raises(Exception):
        torch.load(path)
    # a caller in a recbole.* module gets the pre-2.6 default
    namespace = {"__name__": "recbole.trainer.fake", "torch": torch}
    exec("def load(p):\n    return torch.load(p)\n", namespace)
    assert namespace["load"](path)["obj"].value == 3
    # an explicit weights_only is always respected
    exec("def load_strict(p):\n    return torch.load(p, weights_only=True)\n", namespace)
    with pytest.raises(Exception):
        namespace["load_strict"](path)


def test_recbole_quick_start_imports():
    import recbole.quick_start

    assert callable(recbole.quick_start.load_data_and_model)


def test_recbole_lookups_are_registered():
    import recbole.quick_start.quick_start as qs
    import recbole.utils
    from recbole.utils import ModelType

    from recbole_diffurec.trainer import Trainer
    from recbole_diffurec.utils import UsageError

    assert recbole.utils.get_model("SASRec").__name__ == "SASRec"
    assert qs.get_model is recbole.utils.get_model
    assert recbole.utils.get_trainer(ModelType.SEQUENTIAL, "SASRec") is Trainer
    with pytest.raises(UsageError):
        recbole.utils.get_model("NoSuchModel")


@pytest.mark.parametrize("tail", [0.8, 0.1, 3])
def test_tail_percentage_patch_gives_recbole_values(tail):
    """The vectorised get_tail returns exactly what RecBole's loop returns (share and count tails)."""
    from recbole.evaluator.metrics import TailPercentage

    rng = np.random.default_rng(0)
    counts = {int(i): int(c) for i, c in zip(range(1, 60), rng.integers(1, 9, 59))}
    items = rng.integers(1, 60, size=(30, 10))
    metric = TailPercentage.__new__(TailPercentage)
    metric.tail = tail
    patched = TailPercentage.get_tail
    assert patched._recbole_diffurec_patched
    expected = patched._original(metric, items, counts)
    got = patched(metric, items, counts)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert 0 < expected.mean() < 1
