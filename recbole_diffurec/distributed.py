"""The process group of a distributed run, and a distributed run's config loaded in one process.

RecBole hard-codes NCCL, which has no CPU support; here the backend follows the device
(``dist_backend``, else NCCL on CUDA and gloo on CPU). ``quick_start.run`` spawns the processes
(RecBole's mechanism) and sets ``local_rank`` in each one's config.
"""
from __future__ import annotations

import os


def init_process_group(cfg: dict) -> None:
    """For the process of a distributed run whose resolved settings are ``cfg`` (``local_rank``
    set): join the process group and set the device, ``single_spec`` and rank 0's reporting."""
    import torch
    import torch.distributed as dist

    gpu_id = cfg["gpu_id"]
    cfg["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
    os.environ["CUDA_VISIBLE_DEVICES"] = cfg["gpu_id"]
    cuda = bool(cfg["gpu_id"]) and cfg["use_gpu"] and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(
            backend=cfg.get("dist_backend") or ("nccl" if cuda else "gloo"),
            rank=cfg["local_rank"] + cfg["offset"],
            world_size=cfg["world_size"],
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        )
    cfg["device"] = torch.device("cuda", cfg["local_rank"]) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(cfg["local_rank"])
    cfg["single_spec"] = False
    if cfg["local_rank"] != 0:  # as RecBole: one process reports
        cfg["state"], cfg["show_progress"], cfg["verbose"] = "error", False, False


def as_single_process(cfg: dict) -> None:
    """A config saved by a process of a distributed run, loaded where no process group runs
    (RecBole's ``load_data_and_model``, the case study): one process, rank 0."""
    import torch.distributed as dist

    if cfg.get("single_spec") is False and not (dist.is_available() and dist.is_initialized()):
        cfg["single_spec"], cfg["local_rank"] = True, 0
        for key in ("world_size", "nproc", "offset", "ip", "port"):
            cfg.pop(key, None)
