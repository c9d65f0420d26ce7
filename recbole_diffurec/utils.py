"""Model and trainer lookup: this package's models first, then RecBole's model zoo.

``compat.py`` puts these into RecBole's lookups (``recbole.utils.get_model``/``get_trainer`` and
the modules that imported them by name), so RecBole's own tools, e.g.
``recbole.quick_start.load_data_and_model``, find our models once this package is imported.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING, Callable

from recbole_diffurec.errors import UsageError

if TYPE_CHECKING:
    from recbole.utils import ModelType

# RecBole's model subpackages we search. ``exlib_recommender`` is left out on purpose: importing it
# needs lightgbm/xgboost, and RecBole's own lookup surfaces that as "No module named 'lightgbm'"
# for any unknown name.
_RECBOLE_SUBPACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
)


def plugin_models() -> dict[str, type]:
    """{name: class} of the recommenders this package defines."""
    from recbole.model.abstract_recommender import AbstractRecommender

    module = importlib.import_module("recbole_diffurec.model")
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, AbstractRecommender)
    }


def _recbole_model_modules():
    """{module name (lower case): dotted path} of RecBole's models, found without importing them."""
    found = {}
    for sub in _RECBOLE_SUBPACKAGES:
        package = importlib.import_module(f"recbole.model.{sub}")
        for info in pkgutil.iter_modules(package.__path__):
            found[info.name] = f"recbole.model.{sub}.{info.name}"
    return found


def _recbole_class(dotted, lower_name):
    module = importlib.import_module(dotted)
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and name.lower() == lower_name:
            return obj
    return None


def get_model(model_name: str) -> type:
    """The model class called ``model_name``: this package's first, then RecBole's."""
    ours = plugin_models()
    if model_name in ours:
        return ours[model_name]
    modules = _recbole_model_modules()
    lower_name = model_name.lower()
    if lower_name in modules:
        cls = _recbole_class(modules[lower_name], lower_name)
        if cls is not None and cls.__name__ == model_name:
            return cls
        if cls is not None:
            raise UsageError(f"unknown model '{model_name}'; did you mean '{cls.__name__}'?")
    candidates = list(ours) + [n for n in modules]
    close = difflib.get_close_matches(lower_name, [c.lower() for c in candidates], n=5, cutoff=0.5)
    spelled = []
    for lower in close:
        if lower in modules:
            cls = _recbole_class(modules[lower], lower)
            spelled.append(cls.__name__ if cls is not None else lower)
        else:
            spelled.extend(n for n in ours if n.lower() == lower)
    hint = f" Close names: {', '.join(spelled)}." if spelled else ""
    raise UsageError(
        f"unknown model '{model_name}'.{hint} Models of this package: {', '.join(ours)}; "
        "any RecBole model name (e.g. SASRec, BERT4Rec, GRU4Rec) also works."
    )


def get_trainer(model_type: ModelType, model_name: str, recbole_get_trainer: Callable[..., type]) -> type:
    """RecBole's trainer for the model (``recbole_get_trainer``: RecBole's own lookup), with its
    plain ``Trainer`` replaced by ours.

    Ours is RecBole's ``Trainer`` plus an optional StepLR schedule, a resumable training state and
    a clearer NaN error, so every model that RecBole trains with the plain trainer (SASRec,
    GRU4Rec, BERT4Rec, DiffuRec, ...) runs under the same options.
    """
    from recbole.trainer import Trainer as RecBoleTrainer

    from recbole_diffurec.trainer import Trainer

    trainer = recbole_get_trainer(model_type, model_name)
    return Trainer if trainer is RecBoleTrainer else trainer
