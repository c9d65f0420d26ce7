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
    _silence_known_warnings()
    _applied = True
