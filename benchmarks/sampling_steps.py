"""Test metrics and evaluation seconds of trained diffusion checkpoints against the number of
reverse steps K (respaced inference, ``sampling_steps``). Not a test.

    python benchmarks/sampling_steps.py results/paper/checkpoints/DiffuRecSys-*.pth --steps=32,8,1

For each checkpoint and K: every test user is ranked (full ranking, padding id excluded, the
case study's per-user ranks, which reproduce RecBole's metrics) after a reverse process of K
evenly spaced steps of the trained schedule; the seed is fixed per K.
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help=".pth files saved by runs of DiffuRec/DiffuRecSys")
    parser.add_argument("--steps", default="32,16,8,4,2,1", help="comma-separated K values")
    args = parser.parse_args(argv)

    import torch

    from recbole_diffurec.case_study import metrics_from_ranks, user_ranks
    from recbole_diffurec.checkpoints import load_for_inference

    logging.disable(logging.WARNING)
    print("| checkpoint | model | seed | K | eval s | HR@10 | NDCG@10 |\n|---|---|---:|---:|---:|---:|---:|")
    for path in args.checkpoints:
        config, model, _, _, test = load_for_inference(path)
        for k in (int(s) for s in args.steps.split(",")):
            torch.manual_seed(0)
            start = time.perf_counter()
            with model.inference_settings(sampling_steps=k):
                _, _, ranks, _ = user_ranks(model, test, config["device"], 1)
            seconds = time.perf_counter() - start
            m = metrics_from_ranks(ranks)
            print(f"| {os.path.basename(path)} | {config['model']} | {config['seed']} | {k} | {seconds:.2f} | "
                  f"{m['hit@10']:.4f} | {m['ndcg@10']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
