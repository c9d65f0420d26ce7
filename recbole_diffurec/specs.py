"""The type and range of each config key, read from the comments of the package's YAML files.

A YAML line ``key: value  # (int >= 1) what it does`` declares that ``key`` takes an integer of at
least 1. The forms: ``(int|float|bool|str|list|dict)`` optionally followed by ``>= x``, ``> x``,
``<= x``, ``< x``, ``in [a, b)`` (RecBole's interval notation) or ``one of a, b``. RecBole's own
keys, which our files do not declare, take the type of RecBole's default.
"""
from __future__ import annotations

import functools
import glob
import os
import re

import yaml

from recbole_diffurec.data_files import interval_keeps
from recbole_diffurec.keys import RECBOLE_PROPERTIES
from recbole_diffurec.paths import PROPERTIES

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
    for path in glob.glob(os.path.join(RECBOLE_PROPERTIES, "**", "*.yaml"), recursive=True):
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


def check_values(user_values: dict, final: dict) -> str | None:
    """The first problem with the values a user set (``user_values``, against the declared types
    and ranges) or with how the resolved settings (``final``) fit together; None if all is well."""
    specs, recbole_types = declared_specs(), None
    for key, value in user_values.items():
        if value is None:
            continue  # YAML's ~: RecBole's "unset"
        if key in specs:
            kind, constraint = specs[key]
        else:
            recbole_types = recbole_types or _recbole_default_types()
            kind, constraint = recbole_types.get(key), None
        problem = check_value(key, value, kind, constraint) if kind else None
        if problem:
            return problem + "."
    plateau, stopping = final.get("lr_plateau_patience"), final.get("stopping_step")
    if plateau and isinstance(stopping, int) and plateau >= stopping:
        return (
            f"lr_plateau_patience ({plateau}) must be less than stopping_step ({stopping}), or the run stops "
            "before the learning rate decays; lower it, or set it to 0 (off)."
        )
    hidden, heads = final.get("hidden_size"), final.get("n_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        return f"hidden_size ({hidden}) must be divisible by n_heads ({heads})."
    return None
