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
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.case_study import metrics_from_ranks, user_ranks
    from recbole_diffurec.utils import get_model

    logging.disable(logging.WARNING)
    print("| checkpoint | model | seed | K | eval s | HR@10 | NDCG@10 |\n|---|---|---:|---:|---:|---:|---:|")
    for path in args.checkpoints:
        checkpoint = torch.load(path, weights_only=False)  # RecBole's own checkpoint: a pickled Config
        config = checkpoint["config"]
        # checkpoints saved before these keys existed behaved as their defaults
        # (the item init and the decay do not matter once trained weights are loaded)
        for key, value in (
            ("sampling_steps", 0), ("inference_batch_size", 512), ("autocast_bf16", False),
            ("item_init_std", 1.0), ("pathway_weight_decay", True), ("chain_blocks", True),
        ):
            config.final_config_dict.setdefault(key, value)
        init_seed(config["seed"], config["reproducibility"])
        _, _, test = data_preparation(config, create_dataset(config))
        model = get_model(config["model"])(config, test._dataset).to(config["device"])
        model.load_state_dict(checkpoint["state_dict"])
        for k in (int(s) for s in args.steps.split(",")):
            model.sampling_diffusion = model.diffusion.respace(k)
            torch.manual_seed(0)
            start = time.perf_counter()
            _, _, ranks, _ = user_ranks(model, test, config["device"], 1)
            seconds = time.perf_counter() - start
            m = metrics_from_ranks(ranks)
            print(f"| {os.path.basename(path)} | {config['model']} | {config['seed']} | {k} | {seconds:.2f} | "
                  f"{m['hit@10']:.4f} | {m['ndcg@10']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
