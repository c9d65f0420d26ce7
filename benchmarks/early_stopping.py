"""Replay recorded validation curves under each early-stopping rule (``stopping_rule``,
``stopping_min_delta``). No training: a run's record holds its validation NDCG@10 after every epoch,
and early stopping depends on nothing else. Not a test.

    python benchmarks/early_stopping.py results/amazon-beauty-recbole-rule results/amazon-beauty-tuning

For each finished run with a validation curve: the epochs it trained (RecBole's rule, which every
recorded run used; the replay must give the same number, or the run is flagged), the epochs it
would have trained under each other rule, the best validation score each rule keeps and the
evaluations that tied the best so far. Prints one Markdown table per folder and the totals.
"""
import argparse
import glob
import json
import os

from recbole_diffurec.metrics import markdown_table
from recbole_diffurec.stopping import replay

RULES = [("recbole", 0.0), ("strict", 0.0), ("strict", 0.0001)]


def _ties(history):
    best, ties = float("-inf"), 0
    for _, value in history:
        ties += value == best
        best = max(best, value)
    return ties


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="results folders (OUT/runs/*.json)")
    args = parser.parse_args(argv)
    names = [f"{rule}" + (f" > {delta:g}" if delta else "") for rule, delta in RULES]
    for folder in args.folders:
        rows, totals, lower = [], [0] * len(RULES), [0] * len(RULES)
        for path in sorted(glob.glob(os.path.join(folder, "runs", "*.json"))):
            with open(path) as f:
                record = json.load(f)
            history, config = record.get("valid_history"), record.get("config") or {}
            if record.get("status") != "ok" or not history or "stopping_step" not in config:
                continue
            if config.get("stopping_rule", "recbole") != "recbole":
                continue  # the replay starts from runs RecBole's rule stopped
            patience = config["stopping_step"]
            replays = [replay(history, patience, rule, delta) for rule, delta in RULES]
            flag = "" if replays[0][0] == record["epochs_trained"] else " (replay differs from the record)"
            cells = [record.get("label", record["model"]), record["seed"], patience, f"{record['epochs_trained']}{flag}", _ties(history)]
            for i, (epochs, best, best_epoch) in enumerate(replays):
                cells.append(f"{epochs} / {best:.4f} (epoch {best_epoch})")
                totals[i] += epochs
                lower[i] += best < replays[0][1]
            rows.append(cells)
        if not rows:
            continue
        header = ["run", "seed", "patience", "epochs trained", "ties"] + [f"{n}: epochs / best valid NDCG@10" for n in names]
        print(f"\n{folder}\n" + markdown_table(header, rows))
        print("total epochs: " + ", ".join(f"{n} {t}" for n, t in zip(names, totals))
              + "; runs whose best validation score is lower than under RecBole's rule: "
              + ", ".join(f"{n} {c}" for n, c in zip(names, lower)))


if __name__ == "__main__":
    main()
