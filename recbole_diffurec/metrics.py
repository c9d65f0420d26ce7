"""The metric names every part of the package reports, RecBole's long-tail definition, and the
one Markdown table writer.

RecBole's metric keys are lower case (``hit@10``); ``LABELS`` gives the names tables print.
"""
from __future__ import annotations

from typing import Iterable, Sequence

KS = (5, 10, 20)
# the evaluation protocols (protocol.py): RecBole's full ranking, and with the user's history removed
PROTOCOLS = ("recbole", "exclude_history")
ACCURACY = [f"{m}@{k}" for m in ("hit", "ndcg") for k in KS]
# RecBole's beyond-accuracy metrics (properties/overall.yaml), reported at 10
BEYOND = ["itemcoverage@10", "averagepopularity@10", "giniindex@10", "tailpercentage@10"]
LABELS = {f"{m}@{k}": f"{'HR' if m == 'hit' else 'NDCG'}@{k}" for m in ("hit", "ndcg") for k in KS}
LABELS.update({
    "itemcoverage@10": "ItemCoverage@10",
    "averagepopularity@10": "AveragePopularity@10",
    "giniindex@10": "GiniIndex@10",
    "tailpercentage@10": "TailPercentage@10",
})


def tail_items(tail: float, count_items: dict[int, int]) -> list[int]:
    """RecBole's ``TailPercentage`` tail: the items seen at most ``tail`` times in training
    (``tail`` > 1), or the ``tail`` share of the training items, least frequent first, ties by id
    (``tail`` <= 1). ``count_items``: {item id: training count}."""
    if tail > 1:
        return [item for item, cnt in count_items.items() if cnt <= tail]
    ordered = sorted(count_items.items(), key=lambda kv: (kv[1], kv[0]))
    return [item for item, _ in ordered[: max(int(len(ordered) * tail), 1)]]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: ``header`` (names) and ``rows`` (cells, printed with str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
