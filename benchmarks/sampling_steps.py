"""Test metrics and evaluation seconds of trained diffusion checkpoints against the number of
reverse steps K (respaced inference, ``sampling_steps``) and the ensemble size. Not a test.

    python benchmarks/sampling_steps.py results/paper/checkpoints/DiffuRecSys-*.pth --steps=32,4,1 --ensembles=1,4
    python benchmarks/sampling_steps.py OUT/checkpoints/*.pth --csv=OUT/sampling_steps.csv   # a figure for --tables=OUT

For each checkpoint, K and ensemble size: every test user is ranked (full ranking, padding id
excluded, the case study's per-user ranks, which reproduce RecBole's metrics) after a reverse
process of K evenly spaced steps of the trained schedule (averaged over the ensemble's runs); the
seed is fixed per setting. Beside HR@10 and NDCG@10: RecBole's ItemCoverage@10 and
TailPercentage@10 of the top-10 lists (the tail of ``tail_ratio``, 0.8). A checkpoint of a model
without diffusion (SASRec, GRU4Rec, BERT4Rec) is evaluated once, with K and ensemble shown as -,
so baselines get the same beyond-accuracy columns. ``--csv=FILE`` also writes the rows to FILE;
as ``OUT/sampling_steps.csv`` it becomes ``--tables=OUT``'s figure ``eval_time.png``.
"""
import argparse
import contextlib
import csv
import logging
import os
import sys
import time

CSV_HEADER = ["checkpoint", "model", "seed", "K", "ensemble", "eval_s", "HR@10", "NDCG@10", "ItemCoverage@10",
              "TailPercentage@10"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help=".pth files saved by runs (DiffuRec/DiffuRecSys, or any model)")
    parser.add_argument("--steps", default="32,16,8,4,2,1", help="comma-separated K values (0 = all T)")
    parser.add_argument("--ensembles", default="1", help="comma-separated n_ensemble values")
    parser.add_argument("--csv", default=None, metavar="FILE", help="also write the rows to FILE (CSV), as they come")
    args = parser.parse_args(argv)

    import torch

    from recbole_diffurec.case_study import beyond_accuracy, metrics_from_ranks, user_ranks
    from recbole_diffurec.checkpoints import each_for_inference

    logging.disable(logging.WARNING)
    print(
        "| checkpoint | model | seed | K | ensemble | eval s | HR@10 | NDCG@10 | ItemCoverage@10 | TailPercentage@10 |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    writer = None
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        csv_file = open(args.csv, "w", newline="")
        writer = csv.writer(csv_file)
        writer.writerow(CSV_HEADER)
    failed = []  # files that are not model checkpoints: one line each, the others go on
    to_stderr = lambda line: print(line, file=sys.stderr)  # noqa: E731
    for path, (config, model, train, _, test) in each_for_inference(args.checkpoints, failed, log=to_stderr):
        diffusion = hasattr(model, "inference_settings")
        grid = [(int(k), int(n)) for k in args.steps.split(",") for n in args.ensembles.split(",")]
        for k, n in grid if diffusion else [(None, None)]:
            torch.manual_seed(0)
            start = time.perf_counter()
            with model.inference_settings(sampling_steps=k) if diffusion else contextlib.nullcontext():
                _, _, ranks, _, top = user_ranks(model, test, config["device"], n, topk=max(config["topk"]))
            seconds = time.perf_counter() - start
            m = metrics_from_ranks(ranks)
            b = beyond_accuracy(config, train.dataset, top)
            shown_k, shown_n = ("-", "-") if k is None else (k, n)
            print(
                f"| {os.path.basename(path)} | {config['model']} | {config['seed']} | {shown_k} | {shown_n} | {seconds:.2f} | "
                f"{m['hit@10']:.4f} | {m['ndcg@10']:.4f} | {b['itemcoverage@10']:.4f} | {b['tailpercentage@10']:.4f} |",
                flush=True,
            )
            if writer is not None:
                writer.writerow([os.path.basename(path), config["model"], config["seed"], shown_k, shown_n, f"{seconds:.3f}",
                                 f"{m['hit@10']:.6f}", f"{m['ndcg@10']:.6f}", f"{b['itemcoverage@10']:.6f}",
                                 f"{b['tailpercentage@10']:.6f}"])
                csv_file.flush()
    if writer is not None:
        csv_file.close()
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
