"""Which config keys exist, and for which models.

A key is accepted for a model if RecBole's argument lists, RecBole's overall, dataset or
quick-start YAMLs, our ``overall.yaml`` or dataset YAMLs, or the YAML chain of the model itself
(RecBole's ``properties/model/<Class>.yaml`` and ours, for each class of the model) define it.
Anything else is a ``UsageError`` naming the models that do define it, or the close spellings.
Compare grids route each ``--key=value`` to the models of the grid that accept it.
"""
from __future__ import annotations

import difflib
import functools
import glob
import os
from typing import Iterable, NoReturn, Sequence

import yaml
from recbole.utils import argument_list

from recbole_diffurec.errors import UsageError
from recbole_diffurec.paths import PROPERTIES
from recbole_diffurec.utils import get_model

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(argument_list.__file__)), "properties")

# Keys RecBole itself sets at run time (distributed runs, derived values); not in any YAML.
_RUNTIME_KEYS = {
    "model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
    "single_spec", "local_rank", "nproc", "world_size", "ip", "port", "offset", "neg_sampling",
    "eval_neg_sample_args", "valid_neg_sample_args", "test_neg_sample_args", "config_file",
}


def _yaml_keys(path):
    with open(path, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return set(data) if isinstance(data, dict) else set()


def _keys_of(paths):
    keys = set()
    for path in paths:
        if os.path.isfile(path):
            keys |= _yaml_keys(path)
    return keys


@functools.lru_cache(maxsize=None)  # the YAML files do not change within a process
def common_keys() -> frozenset[str]:
    """Keys every model accepts: RecBole's argument lists and its overall, dataset and quick-start
    YAMLs, the keys RecBole sets at run time, and our overall and dataset YAMLs."""
    keys = set(_RUNTIME_KEYS)
    for lst in (
        argument_list.general_arguments,
        argument_list.training_arguments,
        argument_list.evaluation_arguments,
        argument_list.dataset_arguments,
    ):
        keys.update(lst)
    paths = [os.path.join(RECBOLE_PROPERTIES, "overall.yaml"), os.path.join(PROPERTIES, "overall.yaml")]
    for pattern in ("dataset/*.yaml", "quick_start_config/*.yaml"):
        paths += glob.glob(os.path.join(RECBOLE_PROPERTIES, pattern)) + glob.glob(os.path.join(PROPERTIES, pattern))
    return frozenset(keys | _keys_of(paths))


@functools.lru_cache(maxsize=None)
def model_keys(model_class: type) -> frozenset[str]:
    """The keys of one model: its YAML chain, RecBole's and ours, for each class of the model."""
    names = [cls.__name__ for cls in model_class.__mro__]
    return frozenset(_keys_of(
        [os.path.join(RECBOLE_PROPERTIES, "model", n + ".yaml") for n in names] + model_yaml_files(model_class)
    ))


def known_keys(model_class: type) -> frozenset[str]:
    """Every key ``model_class`` accepts (the strict check of ``Config``)."""
    return common_keys() | model_keys(model_class)


@functools.lru_cache(maxsize=None)
def models_defining(key: str) -> list[str]:
    """Names of the models (RecBole's and ours) whose own YAML defines ``key``, sorted."""
    names = set()
    for root in (RECBOLE_PROPERTIES, PROPERTIES):
        for path in glob.glob(os.path.join(root, "model", "*.yaml")):
            if key in _yaml_keys(path):
                names.add(os.path.splitext(os.path.basename(path))[0])
    return sorted(names)


def model_yaml_files(model_class: type) -> list[str]:
    """``properties/model/<Class>.yaml`` for each class of the model, base first."""
    return [os.path.join(PROPERTIES, "model", cls.__name__ + ".yaml") for cls in reversed(model_class.__mro__)]


def dataset_names() -> list[str]:
    """Datasets with a YAML in properties/dataset."""
    return sorted(
        os.path.splitext(f)[0] for f in os.listdir(os.path.join(PROPERTIES, "dataset")) if f.endswith(".yaml")
    )


def route_cmd_args(cmd_args: Sequence[str], model: str, models: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``--key=value`` arguments of a grid that apply to ``model``: a key that only other models
    of the grid define goes to those; a key no model of the grid accepts is a UsageError.
    Returns (the model's arguments, the keys left out for it)."""
    keys = list(parse_cmd_args(cmd_args))
    grid = frozenset().union(*(known_keys(get_model(m)) for m in models))
    unknown = [k for k in keys if k not in grid]
    if unknown:
        raise_unknown_keys(unknown, grid, "the models " + ", ".join(models))
    own = known_keys(get_model(model))
    return own_args(cmd_args, model), [k for k in keys if k not in own]


def own_args(cmd_args: Sequence[str], model: str) -> list[str]:
    """The ``--key=value`` arguments whose key ``model`` accepts."""
    known = known_keys(get_model(model))
    return [a for a in cmd_args if a[2:].partition("=")[0] in known]


def raise_unknown_keys(unknown: Sequence[str], known: Iterable[str], who: str) -> NoReturn:
    """One UsageError naming each unknown key, with close spellings or the models that define it."""
    hints = []
    for key in unknown:
        owners = models_defining(key)
        close = [] if owners else difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        if owners:
            shown = ", ".join(owners[:4]) + (f" and {len(owners) - 4} more" if len(owners) > 4 else "")
            hints.append(f"'{key}' (a key of {shown}; in a config file shared by several models put it "
                         f"under a section named after the model, e.g. '{owners[0]}:')")
        elif close:
            hints.append(f"'{key}' (did you mean {', '.join(close)}?)")
        else:
            hints.append(f"'{key}'")
    raise UsageError(
        f"unknown config key {'; '.join(hints)} for {who}. A key is accepted if RecBole's overall or "
        f"dataset settings or the model's own YAML (RecBole's, or ours under {PROPERTIES}) define it."
    )


def parse_cmd_args(args: Sequence[str]) -> dict[str, str]:
    """``['--key=value', ...]`` -> {key: 'value'}; anything else is a UsageError."""
    parsed = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise UsageError(f"argument '{arg}' is not of the form --key=value.")
        if key in parsed and parsed[key] != value:
            raise UsageError(f"--{key} is given twice with different values.")
        parsed[key] = value
    return parsed
