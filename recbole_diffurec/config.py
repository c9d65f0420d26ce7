"""RecBole's Config, plus: our YAML defaults, our model lookup, our data path and strict keys.

Order of the defaults (later wins), then the user's input on top:
RecBole's own YAMLs (overall, model, dataset, quick-start) < ``properties/overall.yaml`` <
``properties/model/<Class>.yaml`` for each class of the model, base first (DiffuRecSys starts from
DiffuRec.yaml) < ``properties/dataset/<dataset>.yaml`` < ``--config_files`` <
``config_dict`` < ``--key=value``.

What RecBole accepts silently and we reject with a one-line ``UsageError``: a key that no YAML
(RecBole's or ours) defines, a config file that is missing or not a YAML mapping, a command-line
argument that is not ``--key=value``, an unknown model or dataset, and a dataset whose files are
not where the data path says.
"""
from __future__ import annotations

import difflib
import functools
import glob
import os
import re
import warnings
from typing import Any, Iterable, NoReturn, Sequence

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import argument_list

from recbole_diffurec.data import interval_keeps
from recbole_diffurec.errors import UsageError
from recbole_diffurec.utils import get_model

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROPERTIES = os.path.join(PROJECT_ROOT, "properties")
DEFAULT_DATA_PATH = os.path.join(PROJECT_ROOT, "dataset")
_RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(argument_list.__file__)), "properties")

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
    paths = [os.path.join(_RECBOLE_PROPERTIES, "overall.yaml"), os.path.join(PROPERTIES, "overall.yaml")]
    for pattern in ("dataset/*.yaml", "quick_start_config/*.yaml"):
        paths += glob.glob(os.path.join(_RECBOLE_PROPERTIES, pattern)) + glob.glob(os.path.join(PROPERTIES, pattern))
    return frozenset(keys | _keys_of(paths))


@functools.lru_cache(maxsize=None)
def model_keys(model_class: type) -> frozenset[str]:
    """The keys of one model: its YAML chain, RecBole's and ours, for each class of the model."""
    names = [cls.__name__ for cls in model_class.__mro__]
    return frozenset(_keys_of(
        [os.path.join(_RECBOLE_PROPERTIES, "model", n + ".yaml") for n in names] + model_yaml_files(model_class)
    ))


def known_keys(model_class: type) -> frozenset[str]:
    """Every key ``model_class`` accepts (the strict check of ``Config``)."""
    return common_keys() | model_keys(model_class)


@functools.lru_cache(maxsize=None)
def models_defining(key: str) -> list[str]:
    """Names of the models (RecBole's and ours) whose own YAML defines ``key``, sorted."""
    names = set()
    for root in (_RECBOLE_PROPERTIES, PROPERTIES):
        for path in glob.glob(os.path.join(root, "model", "*.yaml")):
            if key in _yaml_keys(path):
                names.add(os.path.splitext(os.path.basename(path))[0])
    return sorted(names)


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


def model_yaml_files(model_class: type) -> list[str]:
    """``properties/model/<Class>.yaml`` for each class of the model, base first."""
    return [os.path.join(PROPERTIES, "model", cls.__name__ + ".yaml") for cls in reversed(model_class.__mro__)]


# ----- value checks: the type and range each YAML comment declares, e.g. "# (int >= 1) ..." -----
_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):.*?#\s*\((int|float|bool|str|list|dict)\b(.*?)\)(?:\s|$)")
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _parse_constraint(text):
    """'>= 1', '> 0', 'in [0, 1)', 'one of a, b' -> a predicate and its wording (None if empty)."""
    text = text.strip()
    if not text:
        return None
    m = re.fullmatch(r"(>=|>|<=|<)\s*(-?[0-9.e-]+)", text)
    if m:
        op, bound = m.group(1), float(m.group(2))
        tests = {">=": lambda v: v >= bound, ">": lambda v: v > bound, "<=": lambda v: v <= bound, "<": lambda v: v < bound}
        return tests[op], f"{op} {m.group(2)}"
    m = re.fullmatch(r"in\s+([\[(].*[\])])", text)
    if m:  # RecBole's interval notation, read by RecBole's own parser
        interval = m.group(1)
        return (lambda v: interval_keeps(interval, v)), f"in {interval}"
    m = re.fullmatch(r"one of\s+(.+)", text)
    if m:
        allowed = [a.strip() for a in m.group(1).split(",")]
        return (lambda v: v in allowed), f"one of {', '.join(allowed)}"
    raise ValueError(f"unreadable constraint '{text}' in a YAML comment")


@functools.lru_cache(maxsize=None)  # the YAML files do not change within a process
def declared_specs() -> dict[str, tuple[type, tuple | None]]:
    """{key: (type, constraint or None)} from the comments of this package's YAML files."""
    specs = {}
    for path in sorted(glob.glob(os.path.join(PROPERTIES, "**", "*.yaml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = _SPEC.match(line)
                if not m:
                    continue
                key, kind, constraint = m.group(1), _TYPES[m.group(2)], _parse_constraint(m.group(3))
                old = specs.get(key)
                if old is None or (old[1] is None and constraint is not None):
                    specs[key] = (kind, constraint)
    return specs


@functools.lru_cache(maxsize=None)  # the YAML files do not change within a process
def _recbole_default_types():
    """{key: type} of the scalar defaults in RecBole's own YAML files (keys our files do not type)."""
    types = {}
    for path in glob.glob(os.path.join(_RECBOLE_PROPERTIES, "**", "*.yaml"), recursive=True):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        for key, value in (data if isinstance(data, dict) else {}).items():
            if isinstance(value, bool):
                kind = bool
            elif isinstance(value, (int, float)):
                kind = float if isinstance(value, float) or types.get(key) is float else int
            elif isinstance(value, str):
                kind = str
            else:
                continue
            types[key] = kind
    return types


def check_value(key: str, value: object, kind: type, constraint: tuple | None = None) -> str | None:
    """The message for a value of the wrong type or out of range, or None if it is fine."""
    wanted = {int: "an integer", float: "a number", bool: "True or False", str: "a string", list: "a list", dict: "a mapping"}
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        return f"config key '{key}' must be {wanted[kind]}; got {value!r}"
    if constraint is not None and not constraint[0](value):
        return f"config key '{key}' must be {constraint[1]}; got {value!r}"
    return None


def dataset_names() -> list[str]:
    """Datasets with a YAML in properties/dataset."""
    return sorted(
        os.path.splitext(f)[0] for f in os.listdir(os.path.join(PROPERTIES, "dataset")) if f.endswith(".yaml")
    )


def read_yaml_file(path: str, loader: type = yaml.SafeLoader) -> dict[str, Any]:
    """A YAML mapping from ``path``, or a UsageError saying why not."""
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
        self._check_dataset_files()

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
        root = self.external_config_dict.get("data_path") or DEFAULT_DATA_PATH
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
        cfg = self.final_config_dict
        if "local_rank" not in cfg:
            return super()._init_device()
        import torch
        import torch.distributed as dist

        gpu_id = cfg["gpu_id"]
        cfg["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        os.environ["CUDA_VISIBLE_DEVICES"] = cfg["gpu_id"]
        cuda = bool(cfg["gpu_id"]) and cfg["use_gpu"] and torch.cuda.is_available()
        if not dist.is_initialized():
            dist.init_process_group(
                backend=cfg.get("dist_backend") or ("nccl" if cuda else "gloo"),
                rank=cfg["local_rank"] + cfg["offset"],
                world_size=cfg["world_size"],
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
        cfg["device"] = torch.device("cuda", cfg["local_rank"]) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(cfg["local_rank"])
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:  # as RecBole: one process reports
            cfg["state"], cfg["show_progress"], cfg["verbose"] = "error", False, False

    # ----- checkpoints saved by older versions -----
    def __setstate__(self, state):
        """Unpickling (every loader of a checkpoint, RecBole's ``load_data_and_model`` included):
        a key the saved config lacks, because the checkpoint predates it, is filled, with one
        warning naming each key and the value used: the value that reproduces how such
        checkpoints behaved (``SAVED_BEFORE``), else the current YAML default."""
        self.__dict__.update(state)
        self._single_process()
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

    def _single_process(self):
        """A config saved by a process of a distributed run, loaded where no process group runs
        (RecBole's ``load_data_and_model``, the case study): one process, rank 0."""
        import torch.distributed as dist

        cfg = self.final_config_dict
        if cfg.get("single_spec") is False and not (dist.is_available() and dist.is_initialized()):
            cfg["single_spec"], cfg["local_rank"] = True, 0
            for key in ("world_size", "nproc", "offset", "ip", "port"):
                cfg.pop(key, None)

    # ----- checks -----
    def _check_keys(self):
        known = known_keys(self.model_class)
        unknown = sorted(k for k in self.external_config_dict if k not in known)
        if unknown:
            raise_unknown_keys(unknown, known, self.model)

    def _check_values(self):
        """Every value the user set has the type (and range) its YAML declares, or the type of
        RecBole's default for RecBole's own keys; and the width splits into the heads."""
        specs, recbole_types = declared_specs(), None
        for key, value in self.external_config_dict.items():
            if value is None:
                continue  # YAML's ~: RecBole's "unset"
            if key in specs:
                kind, constraint = specs[key]
            else:
                recbole_types = recbole_types or _recbole_default_types()
                kind, constraint = recbole_types.get(key), None
            problem = check_value(key, value, kind, constraint) if kind else None
            if problem:
                raise UsageError(problem + ".")
        plateau, stopping = self.final_config_dict.get("lr_plateau_patience"), self.final_config_dict.get("stopping_step")
        if plateau and isinstance(stopping, int) and plateau >= stopping:
            raise UsageError(
                f"lr_plateau_patience ({plateau}) must be less than stopping_step ({stopping}), or the run stops "
                "before the learning rate decays; lower it, or set it to 0 (off)."
            )
        hidden, heads = self.final_config_dict.get("hidden_size"), self.final_config_dict.get("n_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
            raise UsageError(f"hidden_size ({hidden}) must be divisible by n_heads ({heads}).")

    def _check_dataset_files(self):
        data_path = self.final_config_dict["data_path"]
        expected = os.path.join(data_path, f"{self.dataset}.inter")
        if os.path.isfile(expected) or self.final_config_dict.get("benchmark_filename"):
            return
        from recbole_diffurec.datasets import SOURCES

        if self.dataset in SOURCES:
            raise UsageError(
                f"dataset '{self.dataset}' not found at {expected}. Get it with: python run_recbole_diffurec.py "
                f"--prepare={self.dataset}" + (f" --data_path={os.path.dirname(data_path)}" if
                                               os.path.dirname(data_path) != DEFAULT_DATA_PATH else "")
                + f", or pass --data_path=DIR where DIR/{self.dataset}/{self.dataset}.inter exists."
            )
        if self.final_config_dict["download"] and self.dataset not in dataset_names():
            return  # quick_start downloads RecBole's copy before anything reads it
        known = dataset_names()
        if self.dataset not in known and not os.path.isdir(data_path):
            from recbole_diffurec.datasets import recbole_url

            close = difflib.get_close_matches(self.dataset, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            if recbole_url(self.dataset):
                hint += " RecBole can download it: add --download=True."
            raise UsageError(
                f"unknown dataset '{self.dataset}'.{hint} Configured datasets: {', '.join(known)}. "
                f"For your own data, put RecBole atomic files at {expected}."
            )
        raise UsageError(
            f"dataset '{self.dataset}' not found: expected the RecBole atomic file {expected}. "
            f"Put it there, or pass --data_path=DIR where DIR/{self.dataset}/{self.dataset}.inter exists."
        )
