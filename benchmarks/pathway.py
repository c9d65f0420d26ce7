"""What the x_t/t pathway of trained diffusion checkpoints does to their recommendations. Not a test.

    python benchmarks/pathway.py results/paper/checkpoints/DiffuRecSys-*.pth [--users=2000 --runs=4]

One line per checkpoint (Markdown): the relative spread of x_0 over reverse runs, its relative
change when x_t is replaced by zeros, the share of users whose top-10 differs between two runs,
between K = 1 and K = T reverse steps and between a single run and an ensemble of ``runs``, the
mean norm of the timestep embedding d_t and of an item embedding. The first ``users`` test users
are measured; every draw is seeded (``recbole_diffurec/pathway.py`` defines each figure).
"""
import argparse
import logging
import os
import sys



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help=".pth files saved by runs of DiffuRec/DiffuRecSys")
    parser.add_argument("--users", type=int, default=2000, help="test users measured (default 2000)")
    parser.add_argument("--runs", type=int, default=4, help="reverse runs for the spread and the ensemble (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reverse runs' generator")
    args = parser.parse_args(argv)

    from recbole_diffurec.checkpoints import each_for_inference
    from recbole_diffurec.pathway import pathway_stats

    logging.disable(logging.WARNING)
    print(
        "| checkpoint | model | lambda | users | x0 spread | x0 change, x_t = 0 | top-10 differs: run vs run "
        "| K = 1 vs T | single vs ensemble | mean norm d_t | mean norm item |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    failed = []  # files that are not model checkpoints: one line each, the others go on
    to_stderr = lambda line: print(line, file=sys.stderr)  # noqa: E731
    for path, (config, model, _, _, test) in each_for_inference(args.checkpoints, failed, log=to_stderr):
        if not hasattr(model, "sample_members"):
            print(f"| {os.path.basename(path)} | {config['model']} | not a diffusion model |", flush=True)
            continue
        s = pathway_stats(model, test, args.users, args.runs, args.seed)
        print(
            f"| {os.path.basename(path)} | {config['model']} | {config['lambda_uncertainty']:g} | {s['users']} "
            f"| {s['x0_spread']:.2e} | {s['xt_zero_change']:.2e} | {s['top10_runs']:.1%} | {s['top10_k1_vs_kT']:.1%} "
            f"| {s['top10_single_vs_ens']:.1%} | {s['dt_norm']:.3g} | {s['item_norm']:.3g} |",
            flush=True,
        )
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
