"""install(): each change to numpy, torch and RecBole, its idempotence, RecBole's own entry points
on our models, and that no other module of the package patches a third-party object."""
import ast
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import recbole_diffurec  # noqa: F401
from conftest import ROOT, tiny_args
from recbole_diffurec import compat

PACKAGE = os.path.join(ROOT, "recbole_diffurec")


class Opaque:
    """Not on torch's weights-only allow list."""

    def __init__(self, value):
        self.value = value


def test_numpy_aliases_present_and_harmless():
    for name in ("float_", "complex_", "unicode_", "bool8"):
        assert hasattr(np, name)
    assert np.float_ is np.float64
    compat.install()  # idempotent


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
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    # a caller in a recbole.* module gets the pre-2.6 default
    namespace = {"__name__": "recbole.trainer.fake", "torch": torch}
    exec("def load(p):\n    return torch.load(p)\n", namespace)
    assert namespace["load"](path)["obj"].value == 3
    # an explicit weights_only is always respected
    exec("def load_strict(p):\n    return torch.load(p, weights_only=True)\n", namespace)
    with pytest.raises(pickle.UnpicklingError):
        namespace["load_strict"](path)


def test_recbole_quick_start_imports():
    import recbole.quick_start

    assert callable(recbole.quick_start.load_data_and_model)


def test_recbole_lookups_are_registered():
    import recbole.quick_start.quick_start as qs
    import recbole.utils
    from recbole.utils import ModelType

    from recbole_diffurec.trainer import Trainer
    from recbole_diffurec.errors import UsageError

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
    expected = compat.original(TailPercentage, "get_tail")(metric, items, counts)
    got = patched(metric, items, counts)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert 0 < expected.mean() < 1


def test_install_twice_keeps_the_third_party_originals():
    import recbole.data.utils as recbole_data_utils
    import recbole.utils
    import recbole.utils.utils as recbole_utils
    from recbole.utils import ModelType

    from recbole_diffurec.trainer import Trainer

    before = dict(compat.ORIGINALS)
    compat.install()
    compat.install()
    assert compat.ORIGINALS == before
    for owner, name in ((recbole_utils, "get_trainer"), (recbole_utils, "get_model"), (recbole_data_utils, "get_dataloader")):
        third_party = compat.original(owner, name)
        assert third_party.__module__.startswith("recbole.") and not getattr(third_party, compat.MARK, False)
        assert getattr(getattr(owner, name), compat.MARK)
    # the lookups still resolve (a self-calling wrapper would recurse here)
    assert recbole.utils.get_trainer(ModelType.SEQUENTIAL, "DiffuRecSys") is Trainer
    assert recbole.utils.get_model("DiffuRecSys").__name__ == "DiffuRecSys"


def test_recbole_run_recbole_trains_our_model(tiny_data, workdir):
    """RecBole's own quick start on our model, with our YAML defaults under the user's config."""
    from recbole.quick_start import run_recbole

    settings = dict(a.lstrip("-").split("=", 1) for a in tiny_args(tiny_data, "--diffusion_steps=4", "--n_heads=2"))
    settings = {k: yaml_value(v) for k, v in settings.items()}
    result = run_recbole(model="DiffuRecSys", dataset="ml-100k", config_dict=settings)
    assert 0 <= result["test_result"]["ndcg@10"] <= 1
    assert "tailpercentage@10" in result["test_result"]  # properties/overall.yaml's metrics
    # RecBole's load_data_and_model reads the checkpoint back
    from recbole.quick_start import load_data_and_model

    saved = sorted((workdir / "saved").glob("DiffuRecSys-*.pth"))[0]
    config, model, *_ = load_data_and_model(str(saved))
    assert config["hidden_size"] == 8 and type(model).__name__ == "DiffuRecSys"


def yaml_value(text):
    import yaml

    return yaml.safe_load(text)


def _package_modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                yield dotted, ast.parse(open(path).read(), path)


def _imports(dotted, tree):
    """Every module of the package that ``tree`` imports, at any depth (lazy imports too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("recbole_diffurec")}


def test_no_import_cycle():
    modules = dict(_package_modules())
    graph = {m: {i for i in _imports(m, tree) if i in modules and i != m} for m, tree in modules.items()}
    # the package itself imports compat and errors; that is the only edge from the top
    state = {}

    def visit(m, path):
        state[m] = "open"
        for nxt in graph[m]:
            if nxt == "recbole_diffurec":
                continue
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_only_compat_patches_third_party_objects():
    """No module but compat.py assigns to an attribute of an imported third-party module or
    class, or calls setattr on one."""
    offences = []
    for dotted, tree in _package_modules():
        if dotted == "recbole_diffurec.compat":
            continue
        third_party = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = getattr(node, "module", None) or ""
                for a in node.names:
                    source = module or a.name
                    if not source.startswith("recbole_diffurec") and not getattr(node, "level", 0):
                        third_party.add((a.asname or a.name).split(".")[0])
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if target is not root and isinstance(root, ast.Name) and root.id in third_party:
                    offences.append(f"{dotted}: assigns {ast.unparse(target)}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
                first = node.args[0]
                if isinstance(first, ast.Name) and first.id in third_party:
                    offences.append(f"{dotted}: setattr({first.id}, ...)")
    assert not offences, offences


def test_recboles_search_rng_draws_integers_like_randint():
    import numpy as np

    from recbole_diffurec.compat import RandomStateWithIntegers

    a, b = RandomStateWithIntegers(3), np.random.RandomState(3)
    assert a.integers(0, 7, size=20).tolist() == b.randint(0, 7, size=20).tolist()
    assert a.integers(5, size=3).tolist() == b.randint(0, 5, size=3).tolist()
    assert a.integers(1, 2, endpoint=True, size=50).max() == 2


@pytest.mark.parametrize("code, enabled", [
    ("import recbole_diffurec", False),
    # RecBole's zoo imported first (SINE turns detection on when imported): switched off
    ("import recbole.model.sequential_recommender; import recbole_diffurec", False),
    # the caller's own choice, made before the import, is kept
    ("torch.autograd.set_detect_anomaly(True); import recbole_diffurec", True),
    # and after it
    ("import recbole_diffurec; torch.autograd.set_detect_anomaly(True); "
     "recbole_diffurec.compat.install()", True),
])
def test_recboles_zoo_leaves_anomaly_detection_as_it_was(code, enabled):
    """RecBole's SINE module turns torch's anomaly detection on when imported (every gradient then
    checked for NaN: a SASRec step 2.1x slower); after importing this package it is off, unless the
    caller turned it on."""
    script = f"import sys, torch\n{code}\nassert 'recbole.model.sequential_recommender.sine' in sys.modules\nprint(torch.is_anomaly_enabled())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(enabled)
