"""Hyperparameter search through RecBole's ``HyperTuning`` (hyperopt), with our Config, models and
trainer, for any model (ours or RecBole's).

The search space is a file in RecBole's ``.hyper`` format, one parameter per line
(``name type values``: ``choice [a,b]``, ``uniform low,high``, ``quniform low,high,q``,
``loguniform low,high`` with natural-log bounds); lines starting with ``#`` are comments.
``algo``: ``exhaustive`` (every combination of ``choice`` parameters), ``random`` or ``bayes``
(TPE). Each trial is one training run of ``quick_start.run`` with the fixed settings plus the
trial's parameters, early-stopped on the validation metric and tested at its best epoch.

What is written to ``out``, as it happens: ``trials.jsonl`` (one line per finished trial: its
parameters, validation and test metrics, seconds), ``checkpoints/`` (each trial's best checkpoint
and its training state), ``logs/`` (each trial's log) and, at the end, ``best.yaml`` (the best
trial's parameters, a file ``--config_files`` accepts). A search that is interrupted keeps its
finished trials; run the same command again and they are read back instead of trained (the
proposals repeat: the search's random generator is seeded with the config's ``seed``), and an
interrupted trial continues from its training state.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

from recbole_diffurec.errors import UsageError

ALGOS = ("exhaustive", "random", "bayes")
TOOLS = ("hyperopt", "ray")


def read_space(hyper_file: str) -> dict:
    """The hyperopt space of a ``.hyper`` file, parsed by RecBole's own reader (comments dropped)."""
    from recbole.trainer import HyperTuning

    if not os.path.isfile(hyper_file):
        raise UsageError(f"search space file '{hyper_file}' does not exist (see properties/hyper/ for examples).")
    with open(hyper_file, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    with tempfile.NamedTemporaryFile("w", suffix=".hyper", delete=False) as tmp:
        tmp.writelines(lines)
    try:
        space = HyperTuning._build_space_from_file(tmp.name)
    except Exception as e:  # RecBole's parser: ValueError, SyntaxError from eval, ...
        raise UsageError(
            f"{hyper_file}: {type(e).__name__}: {e}. Each line is 'name type values', e.g. "
            "'learning_rate loguniform -8,-5' or 'hidden_size choice [64,128]'."
        ) from None
    finally:
        os.unlink(tmp.name)
    if not space:
        raise UsageError(f"{hyper_file} defines no parameter ('name type values' per line).")
    return space


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the context; the previous value (or none) after it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def params_key(params: dict) -> str:
    """A short stable name for a trial's parameters (its records and checkpoint files)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def read_trials(out: str) -> dict[str, dict]:
    """The finished trials recorded in ``out/trials.jsonl``, by ``params_key``."""
    path = os.path.join(out, "trials.jsonl")
    trials = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:  # a line cut by a kill is incomplete JSON: that trial runs again
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    trials[record["key"]] = record
    return trials


def _plain(value):
    """numpy scalars (what hyperopt returns) as Python numbers, for configs, JSON and YAML."""
    return value.item() if hasattr(value, "item") else value


def tune(
    model: str, dataset: str, hyper_file: str, out: str, algo: str = "exhaustive", max_evals: int | None = None,
    config_files: Sequence[str] | None = None, config_dict: dict | None = None, cmd_args: Sequence[str] = (),
    log: Callable[[str], None] = print, tool: str = "hyperopt", ray_address: str | None = None,
) -> dict[str, Any]:
    """Search ``hyper_file``'s space for ``model`` on ``dataset``; returns the best trial's record.
    ``tool``: ``hyperopt`` (RecBole's HyperTuning, ``algo``) or ``ray`` (Ray Tune's random search
    over the same space, trials run as Ray tasks, as RecBole's ``run_hyper.py --tool=Ray``)."""
    try:
        import hyperopt  # noqa: F401  (RecBole's HyperTuning imports it when it builds the space)
    except ImportError:
        raise UsageError(
            "hyperparameter search needs hyperopt, an optional dependency: pip install 'recbole-diffurec[search]' "
            "(from a clone: pip install '.[search]')."
        ) from None
    from recbole.trainer import HyperTuning

    from recbole_diffurec.config import Config

    if algo not in ALGOS:
        raise UsageError(f"--algo must be one of {', '.join(ALGOS)}, not '{algo}'.")
    if tool not in TOOLS:
        raise UsageError(f"--tool must be one of {', '.join(TOOLS)}, not '{tool}'.")
    if max_evals is not None and max_evals < 1:
        raise UsageError(f"--max_evals must be at least 1, not {max_evals}.")
    space = read_space(hyper_file)
    base = Config(model, dataset, config_files, config_dict, cmd_args)  # the fixed settings, checked
    unknown = [k for k in space if k not in base.final_config_dict]
    if unknown:  # the same one-line error a misspelled --key gets
        Config(model, dataset, config_files, dict(config_dict or {}, **{k: None for k in unknown}), cmd_args)
    os.makedirs(out, exist_ok=True)
    done = read_trials(out)
    if done:
        log(f"{len(done)} finished trial(s) in {out}/trials.jsonl: read back, not trained again")
    bigger = base["valid_metric_bigger"]
    int_keys = [k for k in space if isinstance(base[k], int) and not isinstance(base[k], bool)]
    trial = Trial(model, dataset, out, config_files, config_dict, cmd_args, base["valid_metric"], bigger, int_keys, done)
    if tool == "ray":
        from recbole_diffurec.jobs import tune_on_ray

        with environment_variable("RAY_AIR_LOCAL_CACHE_DIR", os.path.join(trial.out, "ray")):  # Tune's files
            tune_on_ray(trial, hyper_file, max_evals or 10, bigger, ray_address, log)
        return write_best(out, model, dataset, bigger, base["valid_metric"], hyper_file)
    counter = {"n": 0}

    def objective(params, _config_file_list=None):
        counter["n"] += 1
        return _hyper_result(trial, trial(params, f"trial {counter['n']}", log))

    tuner = HyperTuning(objective, space=space, fixed_config_file_list=config_files, algo=algo,
                        max_evals=max_evals or 100, early_stop=max_evals or 100)
    if max_evals is not None:
        tuner.max_evals = min(tuner.max_evals, max_evals)  # exhaustive sets it to the space's size
    with environment_variable("HYPEROPT_FMIN_SEED", str(base["seed"])):  # the same proposals on a rerun
        tuner.run()
    return write_best(out, model, dataset, bigger, base["valid_metric"], hyper_file)


class Trial:
    """One trial of a search: a training run with the fixed settings plus the trial's parameters,
    read back if ``trials.jsonl`` has it, else trained and appended there (the record is returned).
    A plain object, so that Ray can send it to its workers (``--tool=ray``)."""

    def __init__(self, model, dataset, out, config_files, config_dict, cmd_args, valid_metric, bigger, int_keys, done):
        from recbole_diffurec.jobs import absolute_paths

        self.model, self.dataset, self.out = model, dataset, os.path.abspath(out)
        # absolute: a Ray trial runs in a folder of its own
        self.config_files, self.config_dict = absolute_paths(config_files, config_dict)
        self.cmd_args = list(cmd_args)
        self.valid_metric, self.bigger, self.int_keys, self.done = valid_metric, bigger, int_keys, done

    def score(self, record: dict[str, Any]) -> float:
        """What a search optimises for a trial's record: its best validation score; a failed
        trial scores worst."""
        if record["status"] != "ok":
            return -1e9 if self.bigger else 1e9
        return record["best_valid_score"]

    def __call__(self, params: dict, name: str, log: Callable[[str], None] = print) -> dict[str, Any]:
        from recbole_diffurec.quick_start import run

        out = self.out
        params = {k: _plain(v) for k, v in params.items()}
        for k, v in params.items():  # quniform gives floats; an integer key gets an int
            if k in self.int_keys and isinstance(v, float) and v.is_integer():
                params[k] = int(v)
        key = params_key(params)
        if key in self.done:
            log(f"{name}: {params}: finished before (valid {self.done[key]['best_valid_score']})")
            return self.done[key]
        log(f"{name}: {params}")
        start = time.time()
        record = {"key": key, "params": params, "model": self.model, "dataset": self.dataset}
        try:
            result = run(
                self.model, self.dataset, self.config_files,
                dict(self.config_dict or {}, **params, checkpoint_dir=os.path.join(out, "checkpoints")),
                self.cmd_args, state_file=os.path.join(out, "checkpoints", f"trial-{key}.state.pth"), resume=True,
                log_file=os.path.join(out, "logs", f"trial-{key}.log"),
            )
            record.update(
                status="ok", best_valid_score=float(result["best_valid_score"]),
                best_valid_result={k: float(v) for k, v in result["best_valid_result"].items()},
                test_result={k: float(v) for k, v in result["test_result"].items()},
                epochs_trained=result["epochs_trained"], train_seconds=result["train_seconds"],
                checkpoint=result["checkpoint"],
            )
        except UsageError:
            raise  # a setting no trial can use: stop the search with its one line
        except Exception as e:  # a trial that fails (e.g. NaN loss) is recorded; the search goes on
            record.update(status="failed", error=f"{type(e).__name__}: {e}", best_valid_score=None)
            log(f"{name} FAILED: {record['error']}")
        record["wall_seconds"] = time.time() - start
        record["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
        with open(os.path.join(out, "trials.jsonl"), "a", encoding="utf-8") as f:  # one write per line
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[key] = record
        if record["status"] == "ok":
            log(f"{name}: valid {self.valid_metric} {record['best_valid_score']:.4f}, test "
                + ", ".join(f"{k} {v:.4f}" for k, v in record["test_result"].items() if "@10" in k))
        return record


def _hyper_result(trial: Trial, record: dict[str, Any]) -> dict[str, Any]:
    """What RecBole's HyperTuning.trial reads from an objective's result."""
    return {
        "model": trial.model,
        "best_valid_score": trial.score(record),
        "valid_score_bigger": trial.bigger,
        "best_valid_result": record.get("best_valid_result", {}),
        "test_result": record.get("test_result", {}),
    }


def write_best(out: str, model: str, dataset: str, bigger: bool, metric: str, hyper_file: str) -> dict[str, Any]:
    """``out/best.yaml`` from the finished trials of ``out``; returns the best trial's record."""
    import yaml

    trials = [t for t in read_trials(out).values() if t["status"] == "ok"]
    if not trials:
        raise UsageError(f"no trial of {out} finished; see {out}/trials.jsonl and {out}/logs/.")
    best = (max if bigger else min)(trials, key=lambda t: t["best_valid_score"])
    lines = [
        f"# Best of {len(trials)} trial(s) of {model} on {dataset} by validation {metric} "
        f"({best['best_valid_score']:.4f}; test {', '.join(f'{k} {v:.4f}' for k, v in best['test_result'].items() if '@10' in k)}).",
        f"# Search space: {hyper_file}. Use with --config_files={os.path.join(out, 'best.yaml')}",
    ]
    for key, value in best["params"].items():
        lines.append(f"{yaml.safe_dump({key: value}, default_flow_style=True).strip()[1:-1]}  # searched; best trial {best['key']}")
    path = os.path.join(out, "best.yaml")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    return best
