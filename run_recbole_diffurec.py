"""Train and evaluate a recommender (ours or any RecBole model) in RecBole's harness.

    python run_recbole_diffurec.py                                  # demo: see DEMO below
    python run_recbole_diffurec.py --model=SASRec --dataset=ml-1m --data_path=../datasets
    python run_recbole_diffurec.py -m GRU4Rec -d ml-100k --config_files="a.yaml b.yaml" --epochs=5

Any other ``--key=value`` is a RecBole or model config key (see properties/); unknown keys are an
error. With no arguments at all, the demo budget in properties/demo.yaml is added so that the run
ends in minutes on a laptop CPU; with any argument, the full defaults (the paper's settings) apply.
"""
import argparse
import os
import sys

DEFAULT_MODEL = "DiffuRecSys"
DEFAULT_DATASET = "ml-100k"
HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "properties", "demo.yaml")
METRICS = [f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help=f"dataset name (default {DEFAULT_DATASET})")
    parser.add_argument("--config_files", default=None, help="YAML files, separated by spaces")
    parser.add_argument("--data_path", default=None, help="folder holding DATASET/DATASET.inter (default: dataset/)")
    return parser.parse_known_args(argv)


def print_results(result):
    print(f"\n{result['model']} on {result['dataset']}  (checkpoint: {result['checkpoint']})")
    print("        " + "  ".join(f"{m:>8}" for m in METRICS))
    for name, values in (("valid", result["best_valid_result"]), ("test", result["test_result"])):
        print(f"{name:<8}" + "  ".join(f"{float(values.get(m, float('nan'))):8.4f}" for m in METRICS))
    print(f"train {result['train_seconds']:.1f} s, test {result['test_seconds']:.1f} s")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse_args(argv)
    config_files = args.config_files.split() if args.config_files else []
    if not argv:
        print(f"No arguments: {args.model} on {args.dataset} with the demo budget of {os.path.relpath(DEMO)}.")
        config_files = [DEMO]
    config_dict = {"data_path": args.data_path} if args.data_path else None

    from recbole_diffurec import UsageError
    from recbole_diffurec.quick_start import run

    try:
        result = run(args.model, args.dataset, config_files, config_dict, cmd_args=rest)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
