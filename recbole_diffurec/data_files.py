"""Checks of a dataset's files before RecBole reads them: each problem is one ``UsageError``
naming the file (and the line) and the fix.

``check_dataset_files``: the ``.inter`` file is where the data path says (or how to get it).
``check_inter_file``: its header, the columns ``load_col`` loads, its rows, its float columns, and
that the user/item filters leave someone.
"""
from __future__ import annotations

import difflib
import os
from collections import Counter
from typing import TYPE_CHECKING

from recbole_diffurec.errors import UsageError
from recbole_diffurec.paths import default_data_path

if TYPE_CHECKING:
    from recbole.config import Config


def check_dataset_files(config: Config) -> None:
    """A UsageError unless ``<data_path>/<dataset>.inter`` exists (or RecBole is asked to download
    it): the papers' datasets name ``--prepare``, unknown names get the close ones."""
    from recbole_diffurec.keys import dataset_names

    data_path = config.final_config_dict["data_path"]
    expected = os.path.join(data_path, f"{config.dataset}.inter")
    if os.path.isfile(expected) or config.final_config_dict.get("benchmark_filename"):
        return
    from recbole_diffurec.datasets import SOURCES

    if config.dataset in SOURCES:
        raise UsageError(
            f"dataset '{config.dataset}' not found at {expected}. Get it with: recbole-diffurec "
            f"--prepare={config.dataset}" + (f" --data_path={os.path.dirname(data_path)}" if
                                           os.path.dirname(data_path) != default_data_path() else "")
            + f", or pass --data_path=DIR where DIR/{config.dataset}/{config.dataset}.inter exists."
        )
    if config.final_config_dict["download"] and config.dataset not in dataset_names():
        return  # quick_start downloads RecBole's copy before anything reads it
    known = dataset_names()
    if config.dataset not in known and not os.path.isdir(data_path):
        from recbole_diffurec.datasets import recbole_url

        close = difflib.get_close_matches(config.dataset, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        if recbole_url(config.dataset):
            hint += " RecBole can download it: add --download=True."
        raise UsageError(
            f"unknown dataset '{config.dataset}'.{hint} Configured datasets: {', '.join(known)}. "
            f"For your own data, put RecBole atomic files at {expected}."
        )
    raise UsageError(
        f"dataset '{config.dataset}' not found: expected the RecBole atomic file {expected}. "
        f"Put it there, or pass --data_path=DIR where DIR/{config.dataset}/{config.dataset}.inter exists."
    )


FIELD_TYPES = ("token", "float", "token_seq", "float_seq")


def interval_keeps(interval: str | None, count: float) -> bool:
    """Whether RecBole's interval string (e.g. '[5,inf)', or several joined by ';') keeps a count,
    by RecBole's own parsing and test (the filter this check predicts)."""
    from logging import getLogger
    from types import SimpleNamespace

    from recbole.data.dataset import Dataset

    intervals = Dataset._parse_intervals_str(SimpleNamespace(logger=getLogger()), interval)
    return intervals is None or Dataset._within_intervals(None, count, intervals)


def check_inter_file(config: Config) -> tuple[int, int, int] | None:
    """Before RecBole reads ``<data_path>/<dataset>.inter``: a header of ``name:type`` columns, the
    columns ``load_col`` loads, at least one row, rows with as many fields as the header and
    numbers in float columns; and that the user/item filters leave someone. Each problem is one
    ``UsageError`` naming the file, the line and the fix. Returns (users, items, rows) of the file."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if not os.path.isfile(path):
        return None  # Config has said where the file should be
    sep = config["field_separator"] or "\t"
    try:
        with open(path, encoding=config["encoding"] or "utf-8") as f:
            header = f.readline().rstrip("\r\n").split(sep)
            names, types = [], []
            for column in header:
                name, _, kind = column.partition(":")
                if kind not in FIELD_TYPES:
                    raise UsageError(
                        f"{path}: the first line must be a header of name:type columns ({', '.join(FIELD_TYPES)}), "
                        f"separated by {sep!r}, e.g. user_id:token{sep}item_id:token{sep}timestamp:float; got {column!r}."
                    )
                names.append(name)
                types.append(kind)
            load = config["load_col"]
            wanted = (load or {}).get("inter", []) if isinstance(load, dict) else []
            missing = [c for c in wanted if c not in names]
            if missing:
                raise UsageError(
                    f"{path} has no column {', '.join(repr(c) for c in missing)}, which load_col loads (columns: "
                    f"{', '.join(names)}). Add the column, or set load_col: {{inter: [...]}} to the columns you have."
                )
            uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
            floats = [i for i, k in enumerate(types) if k == "float" and names[i] in wanted]
            users, items, rows = Counter(), Counter(), 0
            ui = names.index(uid) if uid in names else None
            ii = names.index(iid) if iid in names else None
            for number, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(sep)
                if len(fields) != len(names):
                    raise UsageError(
                        f"{path}, line {number}: {len(fields)} field(s) where the header has {len(names)} "
                        f"(separator {sep!r}). Fix or remove the line."
                    )
                for i in floats:
                    try:
                        float(fields[i])
                    except ValueError:
                        raise UsageError(
                            f"{path}, line {number}: column '{names[i]}' is float but holds {fields[i]!r}."
                        ) from None
                rows += 1
                if ui is not None and ii is not None:
                    users[fields[ui]] += 1
                    items[fields[ii]] += 1
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not text in {config['encoding'] or 'utf-8'} ({e.reason} at byte {e.start}).") from None
    if not rows:
        raise UsageError(f"{path} holds a header but no interactions.")
    user_interval, item_interval = config["user_inter_num_interval"], config["item_inter_num_interval"]
    kept_users = sum(1 for c in users.values() if interval_keeps(user_interval, c))
    kept_items = sum(1 for c in items.values() if interval_keeps(item_interval, c))
    if users and (not kept_users or not kept_items):
        raise UsageError(
            f"{path}: filtering leaves no interactions: user_inter_num_interval {user_interval} keeps {kept_users} of "
            f"{len(users)} users and item_inter_num_interval {item_interval} keeps {kept_items} of {len(items)} items. "
            "Loosen those settings (e.g. --user_inter_num_interval=\"[1,inf)\") or use more data."
        )
    return len(users), len(items), rows
