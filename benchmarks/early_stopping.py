"""Replay recorded validation curves under each early-stopping rule (``stopping_rule``,
``stopping_min_delta``, and ``strict`` waiting for the learning-rate schedule, ``stopping_after_decay``).
No training: a run's record holds its validation NDCG@10 after every epoch, and early stopping
depends on nothing else. Not a test.

    python benchmarks/early_stopping.py results/amazon-beauty-recbole-rule results/amazon-beauty-tuning

For each finished run with a validation curve: the epochs it trained (under its own rule; the
replay under that rule must give the same number, or the run is flagged), the epochs it
would have trained under each other rule, the best validation score each rule keeps and the
evaluations that tied the best so far. A run that stopped before its step schedule's first decay
(``lr_step_size``) is marked: waiting for the schedule would have trained it on ("+": the curve
ends before a rule would stop it, so the replay counts only the recorded epochs). Prints one
Markdown table per folder and the totals, the best scores compared with RecBole's rule.
"""
import argparse
import glob
import json
import os

from recbole_diffurec.metrics import markdown_table
from recbole_diffurec.stopping import replay_stops

RULES = [("recbole", 0.0, False), ("strict", 0.0, False), ("strict", 0.0001, False), ("strict", 0.0, True)]


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
    names = [f"{rule}" + (f" > {delta:g}" if delta else "") + (", waits for the decay" if waits else "") for rule, delta, waits in RULES]
    for folder in args.folders:
        rows, totals, lower = [], [0] * len(RULES), [0] * len(RULES)
        for path in sorted(glob.glob(os.path.join(folder, "runs", "*.json"))):
            with open(path) as f:
                record = json.load(f)
            history, config = record.get("valid_history"), record.get("config") or {}
            if record.get("status") != "ok" or not history or "stopping_step" not in config:
                continue
            patience, step = config["stopping_step"], config.get("lr_step_size") or 0
            own = (config.get("stopping_rule", "recbole"), config.get("stopping_min_delta", 0.0),
                   bool(config.get("stopping_after_decay", False)))
            replays = [replay_stops(history, patience, rule, delta, lr_step_size=step if waits else 0) for rule, delta, waits in RULES]
            mine = replay_stops(history, patience, own[0], own[1], lr_step_size=step if own[2] else 0)
            flag = "" if mine[0] == record["epochs_trained"] else " (replay differs from the record)"
            early = step and (record.get("epochs_trained") or 0) <= step < config.get("epochs", 0)
            cells = [record.get("label", record["model"]), record["seed"], patience, step or "-",
                     f"{record['epochs_trained']}{flag}" + (" (before the first decay)" if early else ""), _ties(history)]
            for i, (epochs, best, best_epoch, stopped) in enumerate(replays):
                unfinished = not stopped and epochs < config.get("epochs", 0)
                cells.append(f"{epochs}{'+' if unfinished else ''} / {best:.4f} (epoch {best_epoch})")
                totals[i] += epochs
                lower[i] += best < replays[0][1]
            rows.append(cells)
        if not rows:
            continue
        header = ["run", "seed", "patience", "StepLR every", "epochs trained", "ties"] + [f"{n}: epochs / best valid NDCG@10" for n in names]
        print(f"\n{folder}\n" + markdown_table(header, rows))
        print("total epochs: " + ", ".join(f"{n} {t}" for n, t in zip(names, totals))
              + "; runs whose best validation score is lower than under RecBole's rule: "
              + ", ".join(f"{n} {c}" for n, c in zip(names, lower)))


if __name__ == "__main__":
    main()
