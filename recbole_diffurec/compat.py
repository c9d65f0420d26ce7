"""The one door: every change this package makes to numpy, torch, warnings and RecBole.

``install()`` is called once when ``recbole_diffurec`` is imported and is safe to call again (each
replacement is marked; a marked object is never wrapped twice, and the saved original is always
the third-party one). Nothing else in the package changes a third-party object
(``tests/test_compat.py`` checks the source).

Compatibility of RecBole 1.2.1 with numpy 2, torch >= 2.6 and setuptools >= 81 (the route keeps
numpy 2, with ``pandas<3`` and ``setuptools<81`` declared in ``setup.cfg``):

1. numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``. RecBole's
   ``Config.compatibility_settings`` reads the first three to restore ``np.float``/``np.bool``/...
   (which its metrics and data code still use), and ray 2.6.3 reads ``np.bool8``. Only the
   missing aliases are added, each pointing at the type numpy 1.x gave it.
2. torch >= 2.6 loads with ``weights_only=True`` by default, and RecBole's checkpoints pickle a
   whole ``Config``. ``torch.load`` called *from RecBole's own modules* without an explicit
   ``weights_only`` gets ``weights_only=False`` (its old default); every other caller keeps
   torch's safe default.
3. ray 2.6.3 (imported by ``recbole.quick_start``) warns that ``pkg_resources`` is deprecated,
   RecBole's trainer builds the deprecated ``torch.cuda.amp.GradScaler``, and pandas 2 announces
   that RecBole's in-place ``fillna`` breaks under pandas 3 (hence the pin): silenced.

Fixes of RecBole 1.2.1:

4. ``Collector.get_data_struct`` calls ``.cpu()`` on everything collected, but ``data.num_items``
   (an int) and ``data.count_items`` (a Counter), which ``ItemCoverage``, ``GiniIndex``,
   ``AveragePopularity`` and ``TailPercentage`` need, have none: those metrics ended the first
   evaluation with an AttributeError. Only tensors are moved now.
5. ``TailPercentage.get_tail`` tested every recommended item against a Python *list* of tail items
   (~4e9 comparisons per evaluation on amazon-beauty); the same definition with ``np.isin``.

Where RecBole finds things (its lookups have no registry, so they are replaced):

6. ``get_model``/``get_trainer`` (in ``recbole.utils`` and the modules that imported them by name):
   this package's models first, then RecBole's zoo; RecBole's plain ``Trainer`` becomes ours
   (``utils.py``).
7. ``recbole.data.utils.get_dataloader``: the length-grouped training loader when the config sets
   ``train_length_grouping`` (``data.py``).
8. ``recbole.quick_start``'s ``Config``: for this package's models, our ``Config`` (our YAML
   defaults: overall, the model's YAML chain, the dataset; strict keys), so RecBole's own
   ``run_recbole``/``run`` train them; any other model keeps RecBole's ``Config`` unchanged.
9. ``recbole.trainer.trainer.early_stopping``: the rule of the running fit (``stopping_rule``,
   ``stopping.py``); RecBole's own rule outside our Trainer's fit.
10. RecBole's exhaustive search draws its proposals with a legacy ``np.random.RandomState``, which
   hyperopt >= 0.2.7 calls ``rng.integers`` on (the ``Generator`` method): every exhaustive search
   ended in an AttributeError. RecBole's ``hyper_tuning`` module alone sees a numpy whose
   ``random.RandomState`` also has ``integers`` (the same draws as its ``randint``); hyperopt,
   numpy and every other module are unchanged.
11. ``recbole.quick_start.load_data_and_model``: given a training state or a foreign file, it ended
   in a TypeError deep in numpy's seeding; the file's kind is checked first, and a file that is not
   a model checkpoint gets the one line of ``checkpoints.read_checkpoint`` (a ``UsageError``).
12. ``recbole.model.sequential_recommender.sine`` calls ``torch.autograd.set_detect_anomaly(True)``
   when it is imported, and RecBole imports its whole zoo of sequential models with any one of
   them: every backward pass of the process then checks each gradient for NaN (about 750 checks a
   SASRec batch; a training step of SASRec on amazon-beauty took 2.1x as long). The zoo is imported
   here and torch's setting put back as it was before (off, unless the caller had turned it on);
   if RecBole was imported first, anomaly detection is switched off. Whoever wants it turns it on
   after importing this package. Numbers are unchanged: the checks only look.
"""
import functools
import sys
import types
import warnings

import numpy as np
import torch

MARK = "_recbole_diffurec"
ORIGINALS = {}  # (owner name, attribute) -> the third-party object replaced

# name -> what numpy 1.x had under that name
_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
    "int0": np.intp,
    "uint0": np.uintp,
}


def _replace(owner, name, new):
    """Set ``owner.name`` to ``new`` (marked), keeping the first, third-party original."""
    current = getattr(owner, name)
    key = (getattr(owner, "__name__", repr(owner)), name)
    if not getattr(current, MARK, False):
        ORIGINALS.setdefault(key, current)
    setattr(new, MARK, True)
    setattr(owner, name, new)


def original(owner, name):
    """The third-party object ``install`` replaced at ``owner.name``."""
    return ORIGINALS[(getattr(owner, "__name__", repr(owner)), name)]


# ----- 1-3: numpy, torch, warnings -----
def _numpy_aliases():
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def _called_from_recbole(depth=2):
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return caller == "recbole" or caller.startswith("recbole.")


def _torch_load():
    if getattr(torch.load, MARK, False):
        return
    load_ = torch.load

    @functools.wraps(load_)
    def load(*args, **kwargs):
        if "weights_only" not in kwargs and _called_from_recbole():
            # RecBole's checkpoints hold a pickled Config: trusted files it wrote itself.
            kwargs["weights_only"] = False
        return load_(*args, **kwargs)

    _replace(torch, "load", load)


def _warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`torch.cuda.amp.GradScaler", category=FutureWarning)


# ----- 4-5: RecBole's beyond-accuracy metrics -----
def _collector():
    import copy

    from recbole.evaluator.collector import Collector

    def get_data_struct(self):
        data = self.data_struct._data_dict
        for key, value in data.items():
            if isinstance(value, torch.Tensor):
                data[key] = value.cpu()
        returned = copy.deepcopy(self.data_struct)
        for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned

    _replace(Collector, "get_data_struct", get_data_struct)


def _tail_percentage():
    from recbole.evaluator.metrics import TailPercentage

    from recbole_diffurec.metrics import tail_items

    def get_tail(self, item_matrix, count_items):
        tail = np.asarray(tail_items(self.tail, count_items), dtype=item_matrix.dtype)
        return np.isin(item_matrix, tail).astype(item_matrix.dtype)

    _replace(TailPercentage, "get_tail", get_tail)


# ----- 6-8: lookups -----
def _lookups():
    import recbole.utils
    import recbole.utils.utils as recbole_utils

    from recbole_diffurec import utils

    def get_model(model_name):
        return utils.get_model(model_name)

    def get_trainer(model_type, model_name):
        return utils.get_trainer(model_type, model_name, original(recbole_utils, "get_trainer"))

    get_model.__doc__, get_trainer.__doc__ = utils.get_model.__doc__, utils.get_trainer.__doc__
    for module in (recbole_utils, recbole.utils):
        _replace(module, "get_model", get_model)
        _replace(module, "get_trainer", get_trainer)
    # modules that did ``from recbole.utils import get_model`` before we got here
    for name in ("recbole.config.configurator", "recbole.quick_start.quick_start", "recbole.quick_start"):
        module = sys.modules.get(name)
        for attr, new in (("get_model", get_model), ("get_trainer", get_trainer)):
            if module is not None and hasattr(module, attr):
                _replace(module, attr, new)


def _dataloader():
    import recbole.data.utils as recbole_data_utils

    from recbole_diffurec import data

    def get_dataloader(config, phase):
        return data.get_dataloader(config, phase, original(recbole_data_utils, "get_dataloader"))

    _replace(recbole_data_utils, "get_dataloader", get_dataloader)


def _quick_start_config():
    import recbole.quick_start.quick_start as quick_start

    def Config(model=None, dataset=None, config_file_list=None, config_dict=None):  # noqa: N802
        """RecBole's Config, or ours for this package's models (our YAML defaults)."""
        from recbole_diffurec.config import Config as OurConfig
        from recbole_diffurec.utils import plugin_models

        name = model if isinstance(model, str) else getattr(model, "__name__", None)
        if name in plugin_models():
            return OurConfig(name, dataset, config_file_list, config_dict)
        return original(quick_start, "Config")(model, dataset, config_file_list, config_dict)

    _replace(quick_start, "Config", Config)


# ----- 9: the early-stopping rule -----
def _early_stopping():
    import recbole.trainer.trainer as recbole_trainer

    from recbole_diffurec.stopping import early_stopping_in_effect

    _replace(recbole_trainer, "early_stopping", early_stopping_in_effect)


# ----- 10: RecBole's exhaustive search with hyperopt >= 0.2.7 -----
class RandomStateWithIntegers(np.random.RandomState):
    """numpy's legacy ``RandomState`` with ``Generator.integers``' signature, drawing as ``randint``."""

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        if high is None:
            low, high = 0, low
        return self.randint(low, high + 1 if endpoint else high, size=size, dtype=dtype)


def _exhaustive_search():
    import recbole.trainer.hyper_tuning as hyper_tuning

    if getattr(hyper_tuning.np, MARK, False):
        return
    view = types.ModuleType("numpy")  # numpy, as RecBole's hyper_tuning module sees it
    view.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
    view.random = types.ModuleType("numpy.random")
    view.random.__dict__.update({k: v for k, v in np.random.__dict__.items() if not k.startswith("__")})
    view.random.RandomState = RandomStateWithIntegers
    _replace(hyper_tuning, "np", view)


# ----- 11: RecBole's checkpoint loader told which file it got -----
def _load_data_and_model():
    import recbole.quick_start
    import recbole.quick_start.quick_start as quick_start

    from recbole_diffurec.checkpoints import read_checkpoint

    def load_data_and_model(model_file):
        read_checkpoint(model_file)  # a training state or a foreign file: one line naming the file needed
        return original(quick_start, "load_data_and_model")(model_file)

    load_data_and_model.__doc__ = quick_start.load_data_and_model.__doc__
    for module in (quick_start, recbole.quick_start):
        _replace(module, "load_data_and_model", load_data_and_model)


_anomaly_set = False  # whether _anomaly_detection has run (a later install keeps the caller's choice)


def _anomaly_detection():
    global _anomaly_set
    if _anomaly_set:
        return
    if "recbole.model.sequential_recommender.sine" in sys.modules:
        before = False  # RecBole was imported before us: the setting is SINE's, not the caller's
    else:
        before = torch.is_anomaly_enabled()
        import recbole.model.sequential_recommender.sine  # noqa: F401  (turns it on)
    torch.autograd.set_detect_anomaly(before)
    _anomaly_set = True


def install():
    """Apply every change above; safe to call again."""
    _numpy_aliases()
    _torch_load()
    _warnings()
    _collector()
    _tail_percentage()
    _lookups()
    _dataloader()
    _quick_start_config()
    _early_stopping()
    _exhaustive_search()
    _load_data_and_model()
    _anomaly_detection()
