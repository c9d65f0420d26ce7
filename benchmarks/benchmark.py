"""Side-by-side cost and accuracy of models at equal size, in one process (not a test).

    python benchmarks/benchmark.py                                   # DiffuRec vs SASRec, ml-100k
    python benchmarks/benchmark.py --models=DiffuRec,SASRec --dataset=amazon-beauty \
        --data_path=/path/to/datasets --epochs=2 --hidden_size=128 --n_layers=4 --max_len=50

Every model gets the same hidden size, layers, heads, max length, batch size and epochs (SASRec's
feed-forward is set to 4H like DiffuRec's). For each: seconds per training epoch (median), training
samples per second, seconds per full-ranking evaluation of the validation users (for diffusion
models once per ``--ensembles`` value, e.g. 1,4; the memory peak covers the largest), peak memory
above the pre-model baseline (resident set on CPU, allocator peak on GPU), and test HR@10/NDCG@10
after the last epoch; then each ratio to the reference model (the last one listed). Results are
printed as a Markdown table and, with --out, written as JSON.

``--steps=1,32`` times evaluation for each number of reverse steps K (diffusion models).
``--paper`` measures the papers' full setting (ml-1m and amazon-beauty, hidden 128, 4 layers,
max length 100, batch 1024) and sets the training time of 41 epochs against the DiffuRecSys
paper's Table 2; with ``--max_batches`` the epoch is projected from the timed batches:

    python benchmarks/benchmark.py --paper --models=DiffuRecSys,DiffuRec,SASRec --epochs=1 \
        --max_batches=20 --no_eval --data_path=/path/to/datasets

``--variants`` times each model under several settings in the same process (between processes the
same epoch can vary by 1.5x on a shared CPU), e.g. ``--variants='--train_batch_parts=1;--train_batch_parts=4'``.
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import threading
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="DiffuRec,SASRec", help="comma-separated; the last is the reference")
    p.add_argument("--dataset", default=None, help="one or more, comma-separated (default ml-100k; --paper: both)")
    p.add_argument("--data_path", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden_size", type=int, default=64)
    p.add_argument("--n_layers", type=int, default=2)
    p.add_argument("--n_heads", type=int, default=2)
    p.add_argument("--max_len", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--max_batches", type=int, default=0, help="time only this many batches per epoch (0 = all)")
    p.add_argument("--ensembles", default="1", help="n_ensemble values to time evaluation with (diffusion models)")
    p.add_argument("--steps", default=None,
                   help="sampling_steps K values to time evaluation with (diffusion models); default: the YAML's")
    p.add_argument("--no_eval", action="store_true", help="time training only")
    p.add_argument("--loaders", default="recbole",
                   help="training loaders to time each model with, comma-separated: recbole, device (train_loader)")
    p.add_argument("--train_modes", default="prefix",
                   help="training modes to time each model in, comma-separated: prefix, sequence (train_mode)")
    p.add_argument("--variants", default=None,
                   help="settings to time each model with, separated by ';', each one or more --key=value "
                        "(e.g. '--train_batch_parts=1;--train_batch_parts=4'): rows of one process, labelled by them")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--paper", action="store_true",
                   help="the papers' full setting: ml-1m and amazon-beauty, hidden 128, 4 layers, 4 heads, max "
                        "length 100, batch 1024; training time for 41 epochs (projected from the timed batches "
                        "with --max_batches) next to the DiffuRecSys paper's Table 2")
    args, extra = p.parse_known_args(argv)
    if args.paper:
        for key, value in PAPER.items():
            if key != "dataset" or args.dataset is None:
                setattr(args, key, value)
    args.dataset = args.dataset or "ml-100k"
    return args, extra


# the papers' setting (DiffuRecSys section 6.2) and its Table 2: training seconds of 41 epochs
PAPER = dict(dataset="ml-1m,amazon-beauty", hidden_size=128, n_layers=4, n_heads=4, max_len=100, batch_size=1024)
PAPER_EPOCHS = 41
PAPER_TABLE2_S = {
    ("ml-1m", "DiffuRec"): 65312.18, ("ml-1m", "DiffuRecSysV1"): 30612.66, ("ml-1m", "DiffuRecSys"): 27283.95,
    ("amazon-beauty", "DiffuRec"): 8734.22, ("amazon-beauty", "DiffuRecSysV1"): 6776.10,
    ("amazon-beauty", "DiffuRecSys"): 6468.38,
}


def release_free_memory():
    """Collect garbage and hand freed heap back to the OS, so RSS baselines are comparable."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak resident memory of this process while in the block, sampled every 10 ms."""

    def __init__(self):
        import psutil

        release_free_memory()
        self.process = psutil.Process()
        self.peak = self.base = self.process.memory_info().rss
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class LimitedLoader:
    """The first ``n`` batches of a RecBole dataloader (for timing part of a long epoch)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                break
            yield batch

    def __len__(self):
        return min(self.n, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def bench_model(name, args, extra):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.config import Config
    from recbole_diffurec.keys import own_args, route_cmd_args
    from recbole.utils import get_trainer  # RecBole's lookup, as install() set it

    from recbole_diffurec.sequence import target_field
    from recbole_diffurec.utils import get_model

    size = [  # the size and budget keys of this model (GRU4Rec has no blocks, DiffuRec no inner_size)
        f"--hidden_size={args.hidden_size}",
        f"--inner_size={4 * args.hidden_size}",
        f"--embedding_size={args.hidden_size}",
        f"--n_layers={args.n_layers}",
        f"--n_heads={args.n_heads}",
        f"--MAX_ITEM_LIST_LENGTH={args.max_len}",
        f"--train_batch_size={args.batch_size}",
        f"--epochs={args.epochs}",
        f"--seed={args.seed}",
        f"--use_gpu={args.device != 'cpu'}",
        "--show_progress=False",
        "--state=ERROR",
    ]
    # --key=value arguments go to the models of the run that define the key
    cmd = own_args(size, name) + route_cmd_args(extra, name, args.models.split(","))[0]
    config = Config(name, args.dataset, config_dict={"data_path": args.data_path} if args.data_path else None, cmd_args=cmd)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    cuda = config["device"].type == "cuda"
    # warm-up: 2 unmeasured batches on a throwaway model (thread pools, allocator, kernels), then the
    # measured model starts afresh from the same seed
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(name)(config, train._dataset).to(config["device"])
    get_trainer(config["MODEL_TYPE"], name)(config, model).train_epoch(LimitedLoader(train, 2), 0)
    del model
    release_free_memory()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    with PeakRSS() as mem:
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(name)(config, train._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
        trainer.eval_collector.data_collect(train)  # what fit() collects for the beyond-accuracy metrics
        loader = LimitedLoader(train, args.max_batches) if args.max_batches else train
        full_batches = len(train)
        # training targets: the samples in prefix mode, the positions with a loss in sequence mode
        field = target_field(config)
        n_samples = sum(int((batch[field] > 0).sum()) if field in batch else len(batch) for batch in loader)
        epoch_seconds, losses = [], []
        for epoch in range(args.epochs):
            start = time.perf_counter()
            losses.append(float(trainer.train_epoch(loader, epoch)))
            if cuda:
                torch.cuda.synchronize()
            epoch_seconds.append(time.perf_counter() - start)
            print(f"  {name} epoch {epoch + 1}/{args.epochs}: {epoch_seconds[-1]:.1f} s, loss {losses[-1]:.4f}", flush=True)
        settings = [None]  # (sampling steps K, n_ensemble) for diffusion models, None for the others
        if hasattr(model, "inference_settings"):
            steps = [int(k) for k in args.steps.split(",")] if args.steps else [config["sampling_steps"]]
            settings = [(k, int(n)) for k in steps for n in args.ensembles.split(",")]
        eval_seconds, test_results = {}, {}
        for setting in [] if args.no_eval else settings:
            chosen = (
                model.inference_settings(sampling_steps=setting[0], n_ensemble=setting[1])
                if setting is not None else contextlib.nullcontext()
            )
            with chosen:
                start = time.perf_counter()
                trainer.evaluate(valid, load_best_model=False)
                if cuda:
                    torch.cuda.synchronize()
                eval_seconds[setting] = time.perf_counter() - start
                test_results[setting] = trainer.evaluate(test, load_best_model=False)
    peak = (torch.cuda.max_memory_allocated() - base_gpu) if cuda else (mem.peak - mem.base)
    epoch_time = statistics.median(epoch_seconds)
    rows = []
    for setting in settings:
        label = name if setting is None else f"{name} (K {setting[0] or model.diffusion.num_timesteps}, n_ensemble {setting[1]})"
        label += f" [{config['train_mode']}]"
        result = test_results.get(setting, {})
        rows.append({
            "dataset": args.dataset,
            "model": label,
            "name": name,
            "train_s_per_epoch": epoch_time,
            "train_samples_per_s": n_samples / epoch_time,
            "batches_per_epoch": len(loader),
            "full_batches_per_epoch": full_batches,
            # a whole epoch from the timed batches, and the papers' 41 epochs (training only)
            "projected_epoch_s": epoch_time / len(loader) * full_batches,
            "projected_41_epochs_s": epoch_time / len(loader) * full_batches * PAPER_EPOCHS,
            "eval_s": eval_seconds.get(setting, float("nan")),
            "peak_mem_mib": peak / 2**20,
            "losses": losses,
            "test_hit@10": float(result.get("hit@10", float("nan"))),
            "test_ndcg@10": float(result.get("ndcg@10", float("nan"))),
        })
    return rows


def table(results):
    ref = results[-1]
    rows = [
        "| model | train s/epoch | samples/s | eval s | peak MiB | HR@10 | NDCG@10 | train x | eval x | mem x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['model']} | {r['train_s_per_epoch']:.1f} | {r['train_samples_per_s']:.0f} | {r['eval_s']:.2f} | "
            f"{r['peak_mem_mib']:.0f} | {r['test_hit@10']:.4f} | {r['test_ndcg@10']:.4f} | "
            f"{r['train_s_per_epoch'] / ref['train_s_per_epoch']:.2f} | {r['eval_s'] / ref['eval_s']:.2f} | "
            f"{r['peak_mem_mib'] / max(ref['peak_mem_mib'], 1e-9):.2f} |"
        )
    return "\n".join(rows)


def paper_table(results):
    rows = [
        "| dataset | model | s/epoch (projected) | 41 epochs, s | paper Table 2, s | x paper |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        paper = PAPER_TABLE2_S.get((r["dataset"], r["name"]))
        rows.append(
            f"| {r['dataset']} | {r['model']} | {r['projected_epoch_s']:.1f} | {r['projected_41_epochs_s']:.0f} | "
            + (f"{paper:.0f} | {r['projected_41_epochs_s'] / paper:.3f} |" if paper else "- | - |")
        )
    return "\n".join(rows)


def main(argv=None):
    args, extra = parse_args(argv)
    import torch

    import recbole_diffurec  # noqa: F401

    models = args.models.split(",")
    datasets = args.dataset.split(",")
    print(
        f"# {', '.join(datasets)}: {', '.join(models)}; hidden {args.hidden_size}, {args.n_layers} layers, "
        f"{args.n_heads} heads, max length {args.max_len}, batch {args.batch_size}, {args.epochs} epochs"
        f"{f', {args.max_batches} batches/epoch' if args.max_batches else ''}; device {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
        + (f"; extra {' '.join(extra)}" if extra else ""),
        flush=True,
    )
    results, tables = [], []
    for dataset in datasets:
        args.dataset = dataset
        these = []
        loaders = args.loaders.split(",")
        variants = [v.split() for v in args.variants.split(";")] if args.variants else [[]]
        runs = [(name, loader, mode, variant) for name in models for mode in args.train_modes.split(",")
                for loader in loaders for variant in variants]
        for name, loader, mode, variant in runs:
            for r in bench_model(name, args, extra + variant + [f"--train_loader={loader}", f"--train_mode={mode}"]):
                r["loader"], r["train_mode"], r["variant"] = loader, mode, " ".join(variant)
                if len(loaders) > 1:
                    r["model"] += f" [{loader} loader]"
                if variant:
                    r["model"] += f" [{' '.join(variant)}]"
                print(f"{r['model']}: {json.dumps({k: v for k, v in r.items() if k != 'losses'})}", flush=True)
                these.append(r)
            if args.out:  # written as produced: an interrupted run keeps the finished models
                with open(args.out + ".tmp", "w") as f:
                    json.dump({"args": vars(args), "extra": extra, "results": results + these}, f, indent=1)
                os.replace(args.out + ".tmp", args.out)
        results += these
        tables.append(f"## {dataset}\n\n{table(these)}")
    print()
    print("\n\n".join(tables))
    if args.paper:
        print(f"\n## Training time of the papers' setting ({PAPER_EPOCHS} epochs) against DiffuRecSys Table 2\n")
        print(paper_table(results))
    return results


if __name__ == "__main__":
    main()
