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
"""
import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="DiffuRec,SASRec", help="comma-separated; the last is the reference")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden_size", type=int, default=64)
    p.add_argument("--n_layers", type=int, default=2)
    p.add_argument("--n_heads", type=int, default=2)
    p.add_argument("--max_len", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--max_batches", type=int, default=0, help="time only this many batches per epoch (0 = all)")
    p.add_argument("--ensembles", default="1", help="n_ensemble values to time evaluation with (diffusion models)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_known_args(argv)


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


def bench_model(name, args, extra, warmup=False):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.config import Config
    from recbole_diffurec.utils import get_model, get_trainer

    cmd = [
        f"--hidden_size={args.hidden_size}",
        f"--inner_size={4 * args.hidden_size}",
        f"--embedding_size={args.hidden_size}",
        f"--n_layers={args.n_layers}",
        f"--n_heads={args.n_heads}",
        f"--MAX_ITEM_LIST_LENGTH={args.max_len}",
        f"--train_batch_size={args.batch_size}",
        f"--epochs={1 if warmup else args.epochs}",
        f"--seed={args.seed}",
        f"--use_gpu={args.device != 'cpu'}",
        "--show_progress=False",
        "--state=ERROR",
    ] + extra
    config = Config(name, args.dataset, config_dict={"data_path": args.data_path} if args.data_path else None, cmd_args=cmd)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    cuda = config["device"].type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    with PeakRSS() as mem:
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(name)(config, train._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
        loader = LimitedLoader(train, 2 if warmup else args.max_batches) if (warmup or args.max_batches) else train
        n_samples = sum(len(batch) for batch in loader)
        epoch_seconds, losses = [], []
        for epoch in range(args.epochs):
            start = time.perf_counter()
            losses.append(float(trainer._train_epoch(loader, epoch)))
            if cuda:
                torch.cuda.synchronize()
            epoch_seconds.append(time.perf_counter() - start)
            if not warmup:
                print(f"  {name} epoch {epoch + 1}/{args.epochs}: {epoch_seconds[-1]:.1f} s, loss {losses[-1]:.4f}", flush=True)
        ensembles = [int(n) for n in args.ensembles.split(",")] if hasattr(model, "n_ensemble") else [None]
        eval_seconds, test_results = {}, {}
        for n in ensembles:
            if n is not None:
                model.n_ensemble = n
            start = time.perf_counter()
            trainer.evaluate(valid, load_best_model=False)
            if cuda:
                torch.cuda.synchronize()
            eval_seconds[n] = time.perf_counter() - start
            test_results[n] = trainer.evaluate(test, load_best_model=False)
    peak = (torch.cuda.max_memory_allocated() - base_gpu) if cuda else (mem.peak - mem.base)
    epoch_time = statistics.median(epoch_seconds)
    rows = []
    for n in ensembles:
        rows.append({
            "model": name if n is None else f"{name} (n_ensemble {n})",
            "train_s_per_epoch": epoch_time,
            "train_samples_per_s": n_samples / epoch_time,
            "batches_per_epoch": len(loader),
            "eval_s": eval_seconds[n],
            "peak_mem_mib": peak / 2**20,
            "losses": losses,
            "test_hit@10": float(test_results[n]["hit@10"]),
            "test_ndcg@10": float(test_results[n]["ndcg@10"]),
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


def main(argv=None):
    args, extra = parse_args(argv)
    import torch

    import recbole_diffurec  # noqa: F401

    models = args.models.split(",")
    print(
        f"# {args.dataset}: {', '.join(models)}; hidden {args.hidden_size}, {args.n_layers} layers, "
        f"{args.n_heads} heads, max length {args.max_len}, batch {args.batch_size}, {args.epochs} epochs"
        f"{f', {args.max_batches} batches/epoch' if args.max_batches else ''}; device {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
        + (f"; extra {' '.join(extra)}" if extra else ""),
        flush=True,
    )
    # one unmeasured pass of 2 batches per model: thread pools, allocator and kernels warm up for all
    for name in models:
        bench_model(name, args, extra, warmup=True)
    results = []
    for name in models:
        for r in bench_model(name, args, extra):
            print(f"{r['model']}: {json.dumps({k: v for k, v in r.items() if k != 'losses'})}", flush=True)
            results.append(r)
        if args.out:  # written as produced: an interrupted run keeps the finished models
            with open(args.out + ".tmp", "w") as f:
                json.dump({"args": vars(args), "extra": extra, "results": results}, f, indent=1)
            os.replace(args.out + ".tmp", args.out)
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    main()
