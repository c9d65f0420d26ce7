"""Train and evaluate one model on one dataset, as RecBole's ``run_recbole`` does, through our
Config (plugin models, our YAML defaults, strict keys) and our trainer lookup."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from logging import getLogger
from typing import Any, Iterator, Sequence

import recbole.utils
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_diffurec import provenance
from recbole_diffurec.run_files import checkpoint_beside, state_beside
from recbole_diffurec.config import Config
from recbole_diffurec.data_files import check_inter_file
from recbole_diffurec.errors import UsageError
from recbole_diffurec.protocol import attach_histories, protocol_of
from recbole_diffurec.utils import get_model


def run(
    model: str | type, dataset: str, config_file_list: list[str] | None = None, config_dict: dict | None = None,
    cmd_args: Sequence[str] = (), saved: bool = True, state_file: str | None = None, resume: bool = False,
    log_file: str | None = None, nproc: int = 1, world_size: int = -1, ip: str = "localhost",
    port: int | str = 5678, group_offset: int = 0,
) -> dict[str, Any] | None:
    """Train ``model`` on ``dataset``, select on validation, evaluate once on test.

    With ``saved``, the training state is written after every epoch to ``state_file`` (default:
    next to the best checkpoint, see ``run_files.state_beside``); with ``resume`` and an existing
    ``state_file``, training continues from it. Returns a dict with the best validation score and
    results, the test results, the checkpoint path (None when ``saved`` is False), the training
    state's path, the number of trained epochs and the wall seconds spent training (over every
    process that trained the run) and testing. ``log_file``: this run's log also goes there.

    ``nproc`` > 1 (or ``world_size`` > 0) trains on several processes through torch.distributed,
    as RecBole's ``run``: ``nproc`` processes are spawned on this machine with global ranks
    ``group_offset`` .. ``group_offset + nproc - 1`` of ``world_size`` (default ``nproc``), meeting
    at ``ip:port``. Each takes its share of every training batch, gradients are averaged, the
    metrics are gathered over the ranks and rank 0 saves the checkpoint. Returns rank 0's result
    (None on a machine without rank 0).
    """
    if nproc > 1 or world_size > 0:
        return _run_distributed(
            model, dataset, config_file_list, config_dict, cmd_args, saved, state_file, resume, log_file,
            nproc, world_size if world_size > 0 else nproc, ip, port, group_offset,
        )
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    fetch_if_asked(config)
    counts = check_inter_file(config)  # before any file is written
    return _logged_run(config, counts, saved, state_file, resume, log_file)


def _logged_run(config, counts, saved, state_file, resume, log_file):
    init_seed(config["seed"], config["reproducibility"])
    with run_logging(config, log_file):
        return _run(config, counts, saved, state_file, resume)


def _run_distributed(model, dataset, config_file_list, config_dict, cmd_args, saved, state_file, resume, log_file,
                     nproc, world_size, ip, port, group_offset):
    """RecBole's spawn/queue path (``recbole.quick_start.run``) with our run in each process."""
    import torch.multiprocessing as mp

    if nproc < 1 or world_size < nproc + group_offset:
        raise UsageError(
            f"--nproc={nproc} with --group_offset={group_offset} needs --world_size >= {nproc + group_offset} "
            f"(got {world_size})."
        )
    model_name = model if isinstance(model, str) else model.__name__
    config = Config(model_name, dataset, config_file_list, config_dict, cmd_args)  # every check, before spawning
    fetch_if_asked(config)
    counts = check_inter_file(config)  # once, here; the processes get the counts
    # RecBole creates ./log/<model> and the checkpoint folder in every process, checking first and
    # creating then: two processes can both find it missing and one fails. Created here, once.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    queue = mp.get_context("spawn").SimpleQueue()
    dist = dict(config_dict or {}, world_size=world_size, ip=ip, port=str(port), nproc=nproc, offset=group_offset)
    mp.spawn(
        _run_rank,
        args=(model_name, dataset, config_file_list, dist, list(cmd_args), counts, saved, state_file, resume, log_file,
              queue),
        nprocs=nproc,
        join=True,
    )
    return None if queue.empty() else queue.get()


def _run_rank(rank, model, dataset, config_file_list, config_dict, cmd_args, counts, saved, state_file, resume,
              log_file, queue):
    """One process of a distributed run (``mp.spawn`` passes ``rank``, the local rank)."""
    import torch.distributed as dist

    config = Config(model, dataset, config_file_list, dict(config_dict, local_rank=rank), cmd_args)
    try:
        result = _logged_run(config, counts, saved, state_file, resume, log_file if rank == 0 else None)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0 and config["offset"] == 0:
        queue.put(result)


def fetch_if_asked(config: Config) -> None:
    """With ``download: True``, RecBole's copy of a dataset the data path lacks (``datasets.recbole_download``)."""
    if config["download"] and not os.path.isfile(os.path.join(config["data_path"], f"{config['dataset']}.inter")):
        from recbole_diffurec.datasets import recbole_download

        recbole_download(config["dataset"], config["data_path"])


_RECBOLE_HANDLERS = []  # the handlers RecBole's init_logger added for the previous run


@contextlib.contextmanager
def run_logging(config: Config, log_file: str | None = None) -> Iterator[None]:
    """RecBole's logging for one run, and, with ``log_file``, a file of this run's own.

    RecBole's ``init_logger`` uses ``logging.basicConfig``, which does nothing once the root logger
    has handlers: in a process that runs several models only the first got a log file. The
    handlers it added for the previous run are removed first, and ``log_file`` gets its own
    handler, removed when the run ends."""
    root = logging.getLogger()
    for handler in _RECBOLE_HANDLERS:
        root.removeHandler(handler)
        handler.close()
    before = list(root.handlers)
    init_logger(config)
    _RECBOLE_HANDLERS[:] = [h for h in root.handlers if h not in before]
    own = None
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        own = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        own.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
        own.setLevel(logging.INFO)
        root.addHandler(own)
    try:
        yield
    finally:
        if own is not None:
            root.removeHandler(own)
            own.close()


def _run(config, counts, saved, state_file, resume):
    logger = getLogger()
    logger.info(" ".join(sys.argv))
    logger.info(config)
    try:
        dataset_obj = create_dataset(config)
    except ValueError as e:
        if "Some feat is empty" not in str(e):
            raise
        users, items, rows = counts or ("?", "?", "?")
        raise UsageError(
            f"dataset {config['dataset']}: no interactions survive RecBole's filtering of its {rows} rows "
            f"({users} users, {items} items; user_inter_num_interval {config['user_inter_num_interval']}, "
            f"item_inter_num_interval {config['item_inter_num_interval']}, applied together until stable). "
            "Loosen the intervals or use more data."
        ) from None
    logger.info(dataset_obj)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)
    attach_histories(train_data, valid_data, test_data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)

    # RecBole's lookup, as install() set it: our Trainer for every model RecBole trains plainly
    trainer = recbole.utils.get_trainer(config["MODEL_TYPE"], config["model"])(config, model_obj)
    resumable = saved and hasattr(trainer, "load_training_state")
    if resumable:
        if state_file:  # a named run (the compare grid's key): its best checkpoint is named alike
            trainer.saved_model_file = checkpoint_beside(state_file)
        trainer.state_file = state_file or state_beside(trainer.saved_model_file)
        if resume and os.path.isfile(trainer.state_file):
            trainer.load_training_state(trainer.state_file, train_data)
        else:
            logger.info(f"Training state saved after every epoch to {trainer.state_file} (--resume=PATH continues it)")
    start = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    train_seconds = trainer.training_seconds() if resumable else time.time() - start
    start = time.time()
    test_by_protocol = trainer.test_under_both_protocols(test_data, saved, config["show_progress"])
    test_result = test_by_protocol[protocol_of(trainer.exclude_history)]
    test_seconds = time.time() - start

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    for protocol, result in test_by_protocol.items():
        logger.info(set_color(f"test result ({protocol} protocol)", "yellow") + f": {result}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result),
        "eval_protocol": protocol_of(trainer.exclude_history),
        "test_result_by_protocol": {k: dict(v) for k, v in test_by_protocol.items()},
        "checkpoint": trainer.saved_model_file if saved else None,
        "state_file": trainer.state_file if resumable else None,
        # our Trainer counts epochs; RecBole's special trainers (none of the models here) do not
        "epochs_trained": trainer._epoch_idx + 1 if hasattr(trainer, "_epoch_idx") else None,
        "train_seconds": train_seconds,
        "test_seconds": test_seconds,
        "valid_history": list(getattr(trainer, "valid_history", [])),
        "provenance": provenance.describe(config),
        "config": config,
    }
