"""RecBole's Config for this package's models and RecBole's: our YAML defaults, strict keys.

Order of the defaults (later wins), then the user's input on top:
RecBole's own YAMLs (overall, model, dataset, quick-start) < ``properties/overall.yaml`` <
``properties/model/<Class>.yaml`` for each class of the model, base first (DiffuRecSys starts from
DiffuRec.yaml) < ``properties/dataset/<dataset>.yaml`` < ``--config_files`` <
``config_dict`` < ``--key=value``.

What RecBole accepts silently and we reject with a one-line ``UsageError``: a key that no YAML
(RecBole's or ours) defines (``keys.py``), a value of the wrong type or range (``specs.py``), a
config file that is missing or not a YAML mapping, a command-line argument that is not
``--key=value``, an unknown model or dataset, and a dataset whose files are not where the data
path says (``data_files.py``).
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_diffurec import distributed
from recbole_diffurec.data_files import check_dataset_files
from recbole_diffurec.errors import UsageError
from recbole_diffurec.keys import common_keys, known_keys, model_yaml_files, parse_cmd_args, raise_unknown_keys
from recbole_diffurec.paths import PROPERTIES, default_data_path, resolve_config_file
from recbole_diffurec.sequence import check_train_mode
from recbole_diffurec.specs import check_values
from recbole_diffurec.utils import get_model

# Keys added after checkpoints were first saved: the value under which such a checkpoint behaves as
# it did when saved (the others get today's default; the item init and the decay do not matter
# once trained weights are loaded).
SAVED_BEFORE = {
    "sampling_steps": 0,
    "inference_batch_size": 512,
    "autocast_bf16": False,
    "item_init_std": 1.0,
    "pathway_weight_decay": True,
    "chain_blocks": True,
    "condition_norm": "none",
    "condition_token": False,
    "target_scale": 1.0,
}


def read_yaml_file(path: str, loader: type = yaml.SafeLoader) -> dict[str, Any]:
    """A YAML mapping from ``path``, or a UsageError saying why not."""
    path = resolve_config_file(path)
    if not os.path.isfile(path):
        raise UsageError(f"config file '{path}' does not exist (paths are relative to {os.getcwd()}).")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.load(f.read(), Loader=loader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"config file '{path}' is not valid YAML{line}: {getattr(e, 'problem', e)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file '{path}' must hold 'key: value' lines, not a {type(data).__name__}.")
    return data


def _is_section(key, value):
    """Whether a top-level key of a config file is a model's section (a mapping under a model name)."""
    if key in common_keys() or not key[:1].isupper():
        return False
    try:
        get_model(key)
    except UsageError:
        return False
    if not isinstance(value, dict):
        raise UsageError(f"the section '{key}' of a config file must be a mapping of that model's keys, not {value!r}.")
    return True


class Config(RecBoleConfig):
    """RecBole's Config for this package's models and RecBole's.

    Args:
        model, dataset, config_file_list, config_dict: as RecBole's Config.
        cmd_args: ``--key=value`` strings (the runner passes the ones it does not parse itself).
            RecBole reads ``sys.argv`` itself; we take the list explicitly so that a library call
            (or pytest's own argv) never leaks into a configuration.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=()):
        self._cmd_args = list(cmd_args)
        super().__init__(model, dataset, config_file_list, config_dict)
        self._check_keys()
        self._check_values()
        check_dataset_files(self)

    # ----- input -----
    def _load_config_files(self, file_list):
        # a file's model sections are applied once the model is known (_apply_sections)
        self._file_dicts = [read_yaml_file(file, self.yaml_loader) for file in file_list or []]
        file_config_dict = {}
        for loaded in self._file_dicts:
            file_config_dict.update(loaded)
        return file_config_dict

    def _apply_sections(self, model_class):
        """A config file may hold settings for one model only under a key named after it
        (``SASRec: {inner_size: 256}``); such a section applies to that model and to models built
        on it (``DiffuRec:`` to DiffuRecSys too), after the file's other keys, and is skipped for
        the others. Each file in order, so a later file still wins."""
        own = [cls.__name__ for cls in reversed(model_class.__mro__)]
        file_config_dict = {}
        for loaded in self._file_dicts:
            sections = {k: v for k, v in loaded.items() if _is_section(k, v)}
            file_config_dict.update({k: v for k, v in loaded.items() if k not in sections})
            for name in own:
                file_config_dict.update(sections.get(name, {}))
        self.file_config_dict = file_config_dict
        self._merge_external_config_dict()

    def _load_cmd_line(self):
        return self._convert_config_dict(parse_cmd_args(self._cmd_args))

    def _get_model_and_dataset(self, model, dataset):
        model = model if model is not None else self.external_config_dict.get("model")
        dataset = dataset if dataset is not None else self.external_config_dict.get("dataset")
        if model is None or dataset is None:
            raise UsageError("both a model and a dataset are needed (--model=NAME --dataset=NAME).")
        model_class = get_model(model) if isinstance(model, str) else model
        self._apply_sections(model_class)
        return model_class.__name__, model_class, dataset

    # ----- defaults -----
    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in (
            os.path.join(PROPERTIES, "overall.yaml"),
            *model_yaml_files(model_class),
            os.path.join(PROPERTIES, "dataset", dataset + ".yaml"),
        ):
            if os.path.isfile(path):
                loaded = self._update_internal_config_dict(path) or {}
                if os.path.dirname(path).endswith("dataset"):
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        super()._set_default_parameters()
        # RecBole joins its own default ('dataset/', relative to the working directory) and always
        # uses its bundled copy of ml-100k. Ours: the project's dataset/ folder unless data_path is
        # given, and ml-100k from RecBole's wheel unless the given data_path holds an ml-100k.
        root = self.external_config_dict.get("data_path") or default_data_path()
        path = os.path.join(os.path.abspath(root), self.dataset)
        bundled = self.dataset == "ml-100k" and not os.path.isfile(os.path.join(path, "ml-100k.inter"))
        if not bundled:
            self.final_config_dict["data_path"] = path
        self.final_config_dict["data_path"] = os.path.normpath(self.final_config_dict["data_path"])

    # ----- distributed runs (local_rank set by quick_start.run's spawned processes) -----
    def _init_device(self):
        """RecBole's device choice; for a process of a distributed run, RecBole's process group,
        with the backend following the device (RecBole hard-codes NCCL, which has no CPU
        support): ``dist_backend``, else NCCL on CUDA and gloo on CPU."""
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        distributed.init_process_group(self.final_config_dict)

    # ----- checkpoints saved by older versions -----
    def __setstate__(self, state):
        """Unpickling (every loader of a checkpoint, RecBole's ``load_data_and_model`` included):
        a key the saved config lacks, because the checkpoint predates it, is filled, with one
        warning naming each key and the value used: the value that reproduces how such
        checkpoints behaved (``SAVED_BEFORE``), else the current YAML default."""
        self.__dict__.update(state)
        distributed.as_single_process(self.final_config_dict)
        model = self.final_config_dict.get("model")
        try:
            model_class = get_model(model)
        except UsageError:
            return  # a model this version does not know: leave the config as it was saved
        filled = {}
        for path in (os.path.join(PROPERTIES, "overall.yaml"), *model_yaml_files(model_class)):
            if os.path.isfile(path):
                for key, value in read_yaml_file(path, self.yaml_loader).items():
                    if key not in self.final_config_dict:
                        filled[key] = SAVED_BEFORE.get(key, value)
                        self.final_config_dict[key] = filled[key]
        if filled:
            warnings.warn(
                f"this {model} checkpoint predates the config key(s) "
                + ", ".join(f"{k} (filled with {v!r})" for k, v in filled.items()),
                stacklevel=2,
            )

    # ----- checks -----
    def _check_keys(self):
        known = known_keys(self.model_class)
        unknown = sorted(k for k in self.external_config_dict if k not in known)
        if unknown:
            raise_unknown_keys(unknown, known, self.model)

    def _check_values(self):
        """Every value the user set has the type (and range) its YAML declares (``specs.py``),
        and the model can train the way ``train_mode`` asks (``sequence.py``)."""
        problem = check_values(self.external_config_dict, self.final_config_dict)
        problem = problem or check_train_mode(self.model_class, self.final_config_dict)
        if problem:
            raise UsageError(problem)
