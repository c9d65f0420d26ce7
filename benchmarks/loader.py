"""Training batches per second of RecBole's loader and of the device-resident one, alone (not a test).

    python benchmarks/loader.py                                           # DiffuRecSys, ml-100k
    python benchmarks/loader.py --model=SASRec --dataset=amazon-beauty --data_path=/path/to/datasets \
        --max_len=50 --batch_size=512 --device=cuda

Builds the training loader of ``--model`` on ``--dataset`` (its own config: length grouping for
DiffuRec models, RecBole's shuffle for the others) once with ``train_loader: recbole`` and once with
``train_loader: device``, and walks ``--epochs`` epochs of each, alternating, doing per batch what
the trainer does before the model sees it (``interaction.to(device)``; on CUDA, synchronised). The
time to build the loaders is not counted. Prints samples/s of each (median over epochs) and the
ratio, as one Markdown table; with --out also JSON.
"""
import argparse
import json
import statistics
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="DiffuRecSys")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--max_len", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_known_args(argv)


def build(args, loader, extra):
    from recbole.data import create_dataset, data_preparation

    from recbole_diffurec.config import Config

    cmd = [
        f"--MAX_ITEM_LIST_LENGTH={args.max_len}", f"--train_batch_size={args.batch_size}", f"--seed={args.seed}",
        f"--use_gpu={args.device != 'cpu'}", f"--train_loader={loader}", "--state=ERROR",
    ] + extra
    config = Config(args.model, args.dataset, config_dict={"data_path": args.data_path} if args.data_path else None,
                    cmd_args=cmd)
    train = data_preparation(config, create_dataset(config))[0]
    return config, train


def walk(train, device, cuda):
    import torch

    start = time.perf_counter()
    samples = 0
    for batch in train:
        batch = batch.to(device)
        samples += len(batch)
    if cuda:
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - start)


def main(argv=None):
    args, extra = parse_args(argv)
    import torch

    import recbole_diffurec  # noqa: F401

    built = {name: build(args, name, extra) for name in ("recbole", "device")}
    device = built["recbole"][0]["device"]
    cuda = device.type == "cuda"
    print(f"# {args.model} on {args.dataset}: max length {args.max_len}, batch {args.batch_size}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(built['recbole'][1])} batches/epoch",
          flush=True)
    rates = {name: [] for name in built}
    walk(built["device"][1], device, cuda)  # warm-up: the device loader's first epoch, RecBole's below
    walk(built["recbole"][1], device, cuda)
    for epoch in range(args.epochs):
        for name, (_, train) in built.items():
            rates[name].append(walk(train, device, cuda))
            print(f"  epoch {epoch + 1} {name}: {rates[name][-1]:.0f} samples/s", flush=True)
    result = {name: statistics.median(r) for name, r in rates.items()}
    print("\n| loader | samples/s | x RecBole's |\n|---|---:|---:|")
    for name, rate in result.items():
        print(f"| {name} | {rate:.0f} | {rate / result['recbole']:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "extra": extra, "samples_per_s": result, "epochs": rates}, f, indent=1)
    return result


if __name__ == "__main__":
    main()
