"""Compatibility of RecBole 1.2.1 with numpy 2, torch >= 2.6 and setuptools >= 81.

Every patch the project makes to third-party code lives here, is applied once when
``recbole_diffurec`` is imported, and is tested in ``tests/test_compat.py``.

The route chosen keeps numpy 2 (what researchers have today) with ``pandas<3`` and
``setuptools<81`` declared in ``setup.cfg``:

1. numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``. RecBole's
   ``Config.compatibility_settings`` reads the first three to restore ``np.float``/``np.bool``/...
   (which its metrics and data code still use), and ray 2.6.3 reads ``np.bool8``. We add back
   only the aliases that are missing, each pointing at the type numpy 1.x gave it.
2. torch >= 2.6 loads with ``weights_only=True`` by default, and RecBole's checkpoints pickle a
   whole ``Config``. ``torch.load`` called *from RecBole's own modules* without an explicit
   ``weights_only`` gets ``weights_only=False`` (its old default). Every other caller keeps
   torch's safe default.
3. ``import recbole.quick_start`` imports ray, whose 2.6.3 imports ``pkg_resources`` (shipped by
   ``setuptools<81``, declared as a dependency) and warns that it is deprecated; RecBole's trainer
   uses the deprecated ``torch.cuda.amp.GradScaler``; pandas 2 announces that RecBole's in-place
   ``fillna`` breaks under pandas 3 (hence the pin). Those three warnings are silenced.
4. Speed, not compatibility: RecBole's ``TailPercentage`` tests every recommended item for
   membership in a Python *list* of tail items (users x K x tail items). On amazon-beauty with the
   tail as 80% of the items that is ~4e9 comparisons per evaluation. ``get_tail`` is replaced by
   the same definition with ``np.isin``: the same values, exactly.
5. A RecBole 1.2.1 bug: ``Collector.get_data_struct`` calls ``.cpu()`` on everything it
   collected, but ``data.num_items`` (an int) and ``data.count_items`` (a Counter), which
   ``ItemCoverage``, ``GiniIndex``, ``AveragePopularity`` and ``TailPercentage`` need, have no
   ``.cpu()``: any of those metrics ends the first evaluation with an AttributeError. Only tensors
   are moved now; the rest is RecBole's method unchanged.
"""
import functools
import sys
import warnings

import numpy as np
import torch

# name -> what numpy 1.x had under that name
_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
    "int0": np.intp,
    "uint0": np.uintp,
}

_applied = False


def _patch_numpy():
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def _called_from_recbole(depth=2):
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return caller == "recbole" or caller.startswith("recbole.")


def _patch_torch_load():
    if getattr(torch.load, "_recbole_diffurec_patched", False):
        return
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        if "weights_only" not in kwargs and _called_from_recbole():
            # RecBole's checkpoints hold a pickled Config: trusted files it wrote itself.
            kwargs["weights_only"] = False
        return original(*args, **kwargs)

    load._recbole_diffurec_patched = True
    load._original = original
    torch.load = load


def tail_items(tail, count_items):
    """RecBole's tail set: items seen at most ``tail`` times (tail > 1), or the ``tail`` share of
    the training items, least frequent first, ties by id (tail <= 1)."""
    if tail > 1:
        return [item for item, cnt in count_items.items() if cnt <= tail]
    ordered = sorted(count_items.items(), key=lambda kv: (kv[1], kv[0]))
    return [item for item, _ in ordered[: max(int(len(ordered) * tail), 1)]]


def _patch_tail_percentage():
    from recbole.evaluator.metrics import TailPercentage

    if getattr(TailPercentage.get_tail, "_recbole_diffurec_patched", False):
        return
    original = TailPercentage.get_tail

    def get_tail(self, item_matrix, count_items):
        tail = np.asarray(tail_items(self.tail, count_items), dtype=item_matrix.dtype)
        return np.isin(item_matrix, tail).astype(item_matrix.dtype)

    get_tail._recbole_diffurec_patched = True
    get_tail._original = original
    TailPercentage.get_tail = get_tail


def _patch_collector():
    import copy

    from recbole.evaluator.collector import Collector

    if getattr(Collector.get_data_struct, "_recbole_diffurec_patched", False):
        return
    original = Collector.get_data_struct

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

    get_data_struct._recbole_diffurec_patched = True
    get_data_struct._original = original
    Collector.get_data_struct = get_data_struct


def _silence_known_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    # pandas 2.x announces that RecBole's in-place fillna on a column will stop working in pandas 3
    # (why pandas<3 is pinned); with pandas 2 it works.
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
    # RecBole's trainer builds torch.cuda.amp.GradScaler, deprecated since torch 2.4 (still works).
    warnings.filterwarnings("ignore", message=r"`torch.cuda.amp.GradScaler", category=FutureWarning)


def apply():
    """Apply every patch once; safe to call again."""
    global _applied
    if _applied:
        return
    _patch_numpy()
    _patch_torch_load()
    _patch_tail_percentage()
    _patch_collector()
    _silence_known_warnings()
    _applied = True
