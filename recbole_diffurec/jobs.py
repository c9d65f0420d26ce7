"""A compare grid's runs in parallel: ``--jobs=N`` processes on this machine, or Ray tasks on a
cluster (``--ray_address``); and a search's trials on Ray Tune (``--hyper ... --tool=ray``).

Both grid paths rest on the runs' claims (``claims.py``): a run is trained by exactly one process,
whichever claims it first, and its record, checkpoint, training state and log go to the ``--out``
folder as in a plain compare. So parallel grids, several commands on one folder, and a command
rerun after a crash all mix freely; the tables are built once every run of the grid has ended.

- ``--jobs=N``: N worker processes (``spawn``), each walking the whole grid and training the runs it
  claims, with ``cores // N`` threads each (``torch.set_num_threads``). Each worker prints its
  progress as ``[job i]`` lines; RecBole's own output of worker i goes to ``OUT/logs/job-i.out``.
- ``--ray_address=auto|HOST:PORT|local``: one Ray task per run (``ray_cpus_per_run`` CPUs, that many
  threads), on the cluster at that address (``local``: a Ray instance started on this machine for
  the command). The tasks write to ``--out`` themselves, so **``--out``, the data path and any
  ``--config_files`` must be paths every node sees** (a shared filesystem); the driver prints each
  task's record as it ends and builds the tables.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from recbole_diffurec.errors import UsageError


def absolute_paths(config_files, config_dict):
    """``config_files`` and the data path of ``config_dict`` as absolute paths (other processes,
    Ray workers and trials run in other folders)."""
    from recbole_diffurec.paths import resolve_config_file

    files = [os.path.abspath(resolve_config_file(f)) for f in (config_files or [])]
    config_dict = dict(config_dict or {})
    if config_dict.get("data_path"):
        config_dict["data_path"] = os.path.abspath(config_dict["data_path"])
    return files, config_dict


def threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _records(paths: list[str]) -> list[dict[str, Any]]:
    """The records at ``paths`` as they are on disk now (finished or failed; absent ones left out)."""
    import json

    records = []
    for path in paths:
        if os.path.isfile(path):
            with open(path) as f:
                records.append(json.load(f))
    return records


# ----- --jobs=N on this machine -----
def _job(index: int, threads: int, kwargs: dict, command: list[str], run_grid: Callable) -> None:
    """One worker of ``--jobs``: the grid with ``threads`` threads, RecBole's output to a file."""
    import contextlib

    import torch

    from recbole_diffurec import provenance

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    provenance.set_command(command)
    out_file = os.path.join(kwargs["out"], "logs", f"job-{index}.out")
    os.makedirs(os.path.dirname(out_file), exist_ok=True)
    stdout = sys.stdout
    # RecBole's console logger and progress bars write to stderr
    with open(out_file, "a", encoding="utf-8") as f, contextlib.redirect_stderr(f):
        run_grid(**kwargs, log=lambda line: print(f"[job {index}] {line}", file=stdout, flush=True))


def run_jobs(jobs: int, run_grid: Callable, kwargs: dict, record_paths: list[str],
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run ``run_grid(**kwargs)`` in ``jobs`` worker processes; returns the records at ``record_paths``."""
    import multiprocessing

    from recbole_diffurec import provenance

    threads = threads_per_job(jobs)
    kwargs = dict(kwargs)
    kwargs["config_files"], kwargs["config_dict"] = absolute_paths(kwargs.get("config_files"), kwargs.get("config_dict"))
    log(f"{jobs} jobs of {threads} thread(s); RecBole's output of job i: {os.path.join(kwargs['out'], 'logs', 'job-i.out')}")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_job, args=(i, threads, kwargs, provenance.command(), run_grid)) for i in range(1, jobs + 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i, worker in enumerate(workers, 1):
        if worker.exitcode:
            log(f"job {i} ended with exit code {worker.exitcode}; its runs stay claimable (rerun the command)")
    return _records(record_paths)


# ----- Ray -----
def worker_setup() -> None:
    """Run in every Ray worker process before its first task: this package's compatibility
    changes (``compat``), which Ray Tune's own modules need under numpy 2 (``np.bool8``)."""
    import recbole_diffurec  # noqa: F401  (installs compat)


def start_ray(address: str | None, **init_kwargs):
    """Ray, connected to the cluster at ``address`` (``local`` or None: a new instance on this
    machine), every worker set up by ``worker_setup``; an existing connection is kept."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray_address needs Ray (RecBole installs it): pip install 'ray[tune]'.") from None
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                 log_to_driver=False, runtime_env={"worker_process_setup_hook": worker_setup},
                 **init_kwargs)
    return ray


def _ray_run(run_grid: Callable, kwargs: dict, threads: int, command: list[str]) -> list[dict[str, Any]]:
    """A Ray task: one run of the grid (claimed first, as every run), written to the shared ``--out``."""
    import io

    import torch

    from recbole_diffurec import provenance

    torch.set_num_threads(threads)
    provenance.set_command(command)
    lines = io.StringIO()
    records = run_grid(**kwargs, log=lambda line: print(line, file=lines))
    return [dict(r, _log=lines.getvalue()) for r in records]


def run_on_ray(address: str, run_grid: Callable, kwargs: dict, record_paths: list[str], cpus_per_run: int = 1,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run each run of ``run_grid(**kwargs)``'s grid as a Ray task on the cluster at ``address``;
    returns the records at ``record_paths``."""
    from recbole_diffurec import provenance

    ray = start_ray(address)
    kwargs = dict(kwargs)
    kwargs["out"] = os.path.abspath(kwargs["out"])
    kwargs["config_files"], kwargs["config_dict"] = absolute_paths(kwargs.get("config_files"), kwargs.get("config_dict"))
    task = ray.remote(num_cpus=cpus_per_run)(_ray_run)
    pending = {}
    for d in kwargs["datasets"]:
        for m in kwargs["models"]:
            for s in kwargs["seeds"]:
                one = dict(kwargs, datasets=[d], models=[m], seeds=[s])
                pending[task.remote(run_grid, one, cpus_per_run, provenance.command())] = f"{d} {m} seed {s}"
    log(f"{len(pending)} runs sent to Ray at {address} ({cpus_per_run} CPU each), writing to {kwargs['out']}")
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(done[0])
        try:
            for record in ray.get(done[0]):
                for line in record.pop("_log", "").splitlines():
                    log(f"[ray] {line}")
                log(f"[ray] {name}: {record.get('status')} ({len(pending)} left)")
        except Exception as e:  # noqa: BLE001 - a lost task: its run stays claimable
            log(f"[ray] {name}: task failed ({type(e).__name__}: {e}); rerun the command to retry it")
    return _records(record_paths)


def ray_space(hyper_file: str) -> dict:
    """A ``.hyper`` file as a Ray Tune search space (RecBole's ``run_hyper.py``: ``choice``,
    ``uniform``, ``quniform``, ``loguniform`` with natural-log bounds)."""
    import ast
    import math

    from ray import tune

    space = {}
    with open(hyper_file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split(maxsplit=2)
            if len(parts) != 3:
                raise UsageError(f"{hyper_file}:{number}: 'name type values' expected, got '{line.strip()}'.")
            name, kind, values = parts
            try:
                if kind == "choice":
                    space[name] = tune.choice(list(ast.literal_eval(values.strip())))
                elif kind in ("uniform", "loguniform", "quniform"):
                    numbers = [float(v) for v in values.split(",")]
                    if kind == "uniform":
                        space[name] = tune.uniform(*numbers)
                    elif kind == "loguniform":
                        space[name] = tune.loguniform(math.exp(numbers[0]), math.exp(numbers[1]))
                    else:
                        space[name] = tune.quniform(*numbers)
                else:
                    raise ValueError(f"unknown type '{kind}' (choice, uniform, quniform, loguniform)")
            except (ValueError, SyntaxError, TypeError) as e:
                raise UsageError(f"{hyper_file}:{number}: {e}.") from None
    return space


def tune_on_ray(trial, hyper_file: str, samples: int, bigger: bool, address: str | None,
                log: Callable[[str], None] = print) -> None:
    """``samples`` trials drawn by Ray Tune from ``hyper_file``'s space, each a ``Trial`` run by a
    Ray worker; every trial is appended to ``trials.jsonl`` as with hyperopt. Tune writes its own
    files under ``RAY_AIR_LOCAL_CACHE_DIR`` (``tuning.tune`` sets it inside ``--out``)."""
    start_ray(address)
    from ray import air, tune

    space = ray_space(hyper_file)
    log(f"Ray Tune: {samples} trial(s) over {', '.join(space)}")

    def trainable(params):
        record = trial(params, "ray trial")
        return {"best_valid_score": trial.score(record), "key": record["key"]}

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=samples, metric="best_valid_score", mode="max" if bigger else "min"),
        run_config=air.RunConfig(name="search", verbose=0),  # its files: RAY_AIR_LOCAL_CACHE_DIR
    )
    results = tuner.fit()
    for result in results:
        if result.error:
            log(f"Ray trial failed: {result.error}")
