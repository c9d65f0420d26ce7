"""Train and evaluate a recommender (ours or any RecBole model) in RecBole's harness.

The command line of ``recbole-diffurec`` (installed with the package) and of the clone's
``run_recbole_diffurec.py``:

    recbole-diffurec                                  # demo: see DEMO below
    recbole-diffurec --model=SASRec --dataset=ml-1m --data_path=/path/to/datasets
    recbole-diffurec -m GRU4Rec -d ml-100k --config_files="a.yaml b.yaml" --epochs=5

Compare several models, datasets and seeds (tables of the DiffuRecSys paper, resumable):

    recbole-diffurec --models=DiffuRec,DiffuRecSys,SASRec --datasets=ml-1m,amazon-beauty \
        --seeds=1,2,3 --config_files=properties/accuracy.yaml --out=results/mine --data_path=/path/to/datasets
    recbole-diffurec --tables=results/mine --baseline=SASRec   # rebuild tables and plots only
    recbole-diffurec --case_study=saved/DiffuRecSys-....pth --out=results/case  # section 6.5

Any other ``--key=value`` is a RecBole or model config key (see properties/); unknown keys are an
error. With no arguments at all, the demo budget in properties/demo.yaml is added so that the run
ends in minutes on a laptop CPU; with any argument, the full defaults apply (hours on a CPU) unless
``--demo`` asks for the demo budget again.
"""
import argparse
import os
import sys

from recbole_diffurec.paths import PROPERTIES

DEFAULT_MODEL = "DiffuRecSys"
DEFAULT_DATASET = "ml-100k"
DEMO = os.path.join(PROPERTIES, "demo.yaml")  # the shipped preset, whatever the working directory
COMPARE_OUT, CASE_OUT, HYPER_OUT = "results/compare", "results/case_study", "results/hyper"


def parse_args(argv):
    # no abbreviations: --seed (a RecBole key) must not be read as --seeds, nor --data as --data_path
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help=f"dataset name (default {DEFAULT_DATASET})")
    parser.add_argument("--config_files", default=None, help="YAML files, separated by spaces")
    parser.add_argument("--data_path", default=None, help="folder holding DATASET/DATASET.inter (default: dataset/)")
    parser.add_argument("--demo", action="store_true",
                        help="add the demo budget of properties/demo.yaml (what no arguments at all give) under the other settings")
    parser.add_argument(
        "--resume", default=None, metavar="STATE",
        help="continue an interrupted run from its training state (the X.state.pth saved next to its checkpoint X.pth)",
    )
    parser.add_argument(
        "--prepare", default=None, metavar="NAMES",
        help="download, check and convert the papers' datasets into --data_path (default dataset/): "
             "amazon-beauty, amazon-toys-games, ml-1m, comma-separated, or all",
    )
    dist = parser.add_argument_group("several processes (torch.distributed, RecBole's mechanism; gloo on CPU, NCCL on CUDA)")
    dist.add_argument("--nproc", type=int, default=1, help="processes to train with on this machine (default 1)")
    dist.add_argument("--world_size", type=int, default=-1, help="processes over all machines (default: --nproc)")
    dist.add_argument("--ip", default="localhost", help="address of the machine with rank 0 (default localhost)")
    dist.add_argument("--port", default="5678", help="a free port on that machine (default 5678)")
    dist.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process (default 0)")
    compare = parser.add_argument_group("compare (any of --models/--datasets/--seeds)")
    compare.add_argument("--models", default=None, help="comma-separated model names")
    compare.add_argument("--datasets", default=None, help="comma-separated dataset names")
    compare.add_argument("--seeds", default=None, help="comma-separated seeds (default: 2020)")
    compare.add_argument("--out", default=None,
                         help=f"folder of run records, checkpoints and tables (default {COMPARE_OUT}; case study: {CASE_OUT})")
    compare.add_argument(
        "--variant", default=None, help="name these runs MODEL-VARIANT in records and tables (other settings of a model)"
    )
    compare.add_argument("--baseline", default=None, help="model the t-tests compare against (default DiffuRec)")
    compare.add_argument("--force", action="store_true", help="rerun finished runs")
    compare.add_argument("--jobs", type=int, default=1, help="runs trained at once on this machine, cores split between them (default 1)")
    compare.add_argument("--ray_address", default=None, metavar="auto|HOST:PORT|local",
                         help="send each run to a Ray cluster as a task (--out and the data on a filesystem every node sees)")
    compare.add_argument("--ray_cpus_per_run", type=int, default=1, help="CPUs (threads) of each Ray task (default 1)")
    compare.add_argument("--tables", default=None, metavar="OUT", help="only rebuild the tables of OUT")
    search = parser.add_argument_group("hyperparameter search of --model on --dataset (RecBole's HyperTuning; writes to --out)")
    search.add_argument("--hyper", default=None, metavar="FILE", help="search space in RecBole's .hyper format (properties/hyper/)")
    search.add_argument("--algo", default="exhaustive", help="exhaustive, random or bayes (TPE) (default exhaustive)")
    search.add_argument("--max_evals", type=int, default=None, help="at most this many trials (default: exhaustive: all; others: 100; ray: 10)")
    search.add_argument("--tool", default="hyperopt", help="hyperopt (RecBole's HyperTuning, --algo) or ray (Ray Tune; --ray_address, default local)")
    case = parser.add_argument_group("case study of a checkpoint (writes to --out)")
    case.add_argument("--case_study", default=None, metavar="CHECKPOINT", help="a .pth saved by a run")
    case.add_argument("--ensemble", type=int, default=4, help="n_ensemble compared with a single run (default 4)")
    return parser.parse_known_args(argv)


def compare(args, config_files, config_dict, rest):
    from recbole_diffurec import UsageError
    from recbole_diffurec.experiments import compare as run_compare

    split = lambda text, default: [x for x in (text or default).split(",") if x]  # noqa: E731
    try:
        seeds = [int(s) for s in split(args.seeds, "2020")]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, not '{args.seeds}'.") from None
    records, tables = run_compare(
        split(args.models, args.model), split(args.datasets, args.dataset), seeds, args.out or COMPARE_OUT,
        config_files, config_dict, rest, force=args.force, variant=args.variant, baseline=args.baseline,
        distributed=distributed_args(args), jobs=args.jobs, ray_address=args.ray_address,
        ray_cpus_per_run=args.ray_cpus_per_run,
    )
    print_tables(tables)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"\n{len(records) - len(failed)} of {len(records)} runs finished; records, checkpoints and tables in "
          f"{args.out or COMPARE_OUT}")
    return 1 if failed else 0


def distributed_args(args):
    return {"nproc": args.nproc, "world_size": args.world_size, "ip": args.ip, "port": args.port,
            "group_offset": args.group_offset}


def print_tables(tables):
    for name, text in tables.items():
        print(f"\n{name}\n{text}")


def print_results(result):
    from recbole_diffurec.metrics import ACCURACY as METRICS

    print(f"\n{result['model']} on {result['dataset']}  (checkpoint: {result['checkpoint']})")
    print("        " + "  ".join(f"{m:>8}" for m in METRICS))
    for name, values in (("valid", result["best_valid_result"]), ("test", result["test_result"])):
        print(f"{name:<8}" + "  ".join(f"{float(values.get(m, float('nan'))):8.4f}" for m in METRICS))
    print(f"train {result['train_seconds']:.1f} s, test {result['test_seconds']:.1f} s")
    if result.get("state_file"):
        print(f"training state: {result['state_file']} (continue or extend the run with --resume=THAT)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse_args(argv)
    from recbole_diffurec import provenance

    provenance.set_command(["recbole-diffurec"] + list(argv))
    config_files = args.config_files.split() if args.config_files else []
    if not argv:
        print(f"No arguments: {args.model} on {args.dataset} with the demo budget of properties/demo.yaml.")
        config_files = [DEMO]
    elif args.demo:
        config_files = [DEMO] + config_files
    config_dict = {"data_path": args.data_path} if args.data_path else None

    from recbole_diffurec import UsageError
    from recbole_diffurec.quick_start import run

    try:
        # counts: 0 or less is a mistake, not "the default" (--max_evals: tuning.tune checks it)
        for name in ("nproc", "jobs", "ray_cpus_per_run"):
            value = getattr(args, name, None)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be at least 1, not {value}.")
        if args.tables:
            from recbole_diffurec.experiments import build_tables

            try:
                print_tables(build_tables(args.tables, args.baseline))
            except ValueError as e:
                raise UsageError(str(e)) from None
            return 0
        if args.case_study:
            from recbole_diffurec.case_study import case_study

            out = args.out or CASE_OUT
            case_study(args.case_study, out, args.ensemble)
            with open(os.path.join(out, "case_study.md")) as f:
                print(f.read())
            print(f"case study of {args.case_study} written to {out} (case_study.md/.csv/.json, tsne.png)")
            return 0
        if args.prepare:
            from recbole_diffurec.datasets import prepare_all
            from recbole_diffurec.paths import default_data_path

            prepare_all([n for n in args.prepare.split(",") if n], args.data_path or default_data_path())
            return 0
        if args.hyper:
            from recbole_diffurec.tuning import tune

            out = args.out or HYPER_OUT
            best = tune(args.model, args.dataset, args.hyper, out, args.algo, args.max_evals, config_files,
                        config_dict, rest, tool=args.tool, ray_address=args.ray_address)
            print(f"\nbest of the trials in {out}/trials.jsonl: {best['params']} (valid {best['best_valid_score']:.4f})")
            print(f"written to {out}/best.yaml: use it with --config_files={out}/best.yaml")
            return 0
        if args.models or args.datasets or args.seeds or args.variant:
            if args.resume:
                raise UsageError("compare mode resumes interrupted runs by itself; drop --resume.")
            return compare(args, config_files, config_dict, rest)
        if args.resume and not os.path.isfile(args.resume):
            raise UsageError(f"training state '{args.resume}' does not exist (it is the X.state.pth next to a run's checkpoint).")
        result = run(
            args.model, args.dataset, config_files, config_dict, cmd_args=rest, state_file=args.resume,
            resume=bool(args.resume), **distributed_args(args),
        )
        if result is None:  # a machine of a multi-machine run without rank 0
            print("this machine's processes finished; rank 0 reports the results")
            return 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_results(result)
    return 0


def console() -> None:
    """The ``recbole-diffurec`` console command."""
    sys.exit(main())
