"""RecBole's Trainer with the paper's StepLR schedule, a resumable training state and a NaN error
that says what to do.

The schedule is general: any model our runner trains with RecBole's plain trainer (SASRec, GRU4Rec,
BERT4Rec, DiffuRec, DiffuRecSys) gets it from two keys in ``properties/overall.yaml``:
``lr_step_size`` (0 = constant learning rate) and ``lr_gamma``. A third, ``lr_plateau_patience``,
also decays the learning rate by ``lr_gamma`` when validation has not improved for that many
evaluations (early stopping's counter reaching it), so a run early stopping would end gets a
smaller step first.

Resume: with ``state_file`` set, the full training state (model, optimizer, schedule, epoch,
early-stopping counters, best validation so far, the best checkpoint's path, every random number
generator the training draws from, and the training seconds so far) is written atomically at the
end of every evaluated epoch. ``load_training_state`` puts all of it back, so training continues
from the next epoch exactly as if it had not stopped (same seed, same device).
"""
from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from recbole.trainer import Trainer as RecBoleTrainer

from recbole_diffurec.sequence import RECBOLE_SEQUENCE_MODELS, recbole_prefix_loss, recbole_sequence_loss
from recbole_diffurec.run_files import STATE, checkpoint_kind, wrong_kind
from recbole_diffurec.errors import NaNLossError, ResumeError
from recbole_diffurec.metrics import PROTOCOLS
from recbole_diffurec.protocol import protocol_of
from recbole_diffurec.stopping import decay_pending, decays_since, stopping_rule

if TYPE_CHECKING:
    from recbole.data.dataloader import AbstractDataLoader

STATE_FORMAT = 1
# Config keys that may differ between the interrupted run and its continuation: where files go,
# how progress is shown, what is reported besides the validation metric, and the budget (a
# finished run may be given more epochs or patience).
RESUME_FREE_KEYS = {
    "metrics", "tail_ratio", "checkpoint_dir", "data_path", "show_progress", "state", "log_wandb", "epochs", "stopping_step",
    "stopping_after_decay",
    "device", "gpu_id", "use_gpu", "worker", "nproc", "local_rank", "offset", "ip", "port", "world_size",
}


def _rng_state():
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loader_generators(train_data):
    """The generators a training loader draws its order from (RecBole's, and our grouped order's)."""
    return {name: getattr(train_data, name) for name in ("generator", "order_generator") if hasattr(train_data, name)}


def _comparable_config(config):
    return {
        k: repr(v) for k, v in config.final_config_dict.items() if k not in RESUME_FREE_KEYS
    }


def flush_denormals() -> None:
    """Treat subnormal floats as zero on this process's CPU (``torch.set_flush_denormal``).

    Weight decay can drive parameters that the loss barely reaches into float32's subnormal range,
    where CPU arithmetic is far slower; flushed, those weights act as the zeros they nearly are
    (docs/performance.md measures it). No effect on CUDA, and a no-op on a CPU without the mode."""
    torch.set_flush_denormal(True)


class Trainer(RecBoleTrainer):
    def __init__(self, config, model):
        flush_denormals()
        if not config["single_spec"] and config["device"].type == "cpu":
            # RecBole wraps the model in DDP with device_ids=[local_rank], which a CPU module
            # refuses; the same wrapping without device ids
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            self.distributed_model = torch.nn.parallel.DistributedDataParallel(self.model)
        else:
            super().__init__(config, model)
        # RecBole names the best checkpoint after the second the run started: two runs started
        # together (seeds launched side by side) would write, and test, one file
        root, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = f"{root}-{os.getpid()}{ext}"
        if not config["single_spec"]:
            # every process names the best checkpoint after its own clock; rank 0 saves it, so
            # all of them must use rank 0's name to load it for the test
            names = [self.saved_model_file]
            torch.distributed.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]
        self.lr_step_size = config["lr_step_size"]
        self.lr_gamma = config["lr_gamma"]
        self.scheduler = self._build_scheduler()
        # early stopping waits for the schedule's decays (stopping.py)
        self.stopping_after_decay = bool(config["stopping_after_decay"]) and self.scheduler is not None
        self.lr_plateau_patience = config["lr_plateau_patience"] or 0
        self.lr_plateau_max_decays = config["lr_plateau_max_decays"] or 0
        self.plateau_decays = 0  # plateau decays so far in this run (saved with the training state)
        self._epoch_idx = 0
        self.state_file = None  # where fit() writes the training state each epoch (None: nowhere)
        self.seconds_before = 0.0  # training seconds of the run before it was resumed
        self.finished = False  # a resumed state whose run had already stopped
        self._train_data = None
        self._fit_start = None
        self.valid_history = []  # [epoch, validation score] after each evaluation (saved with the state)
        # the evaluation protocol (protocol.py): remove the user's history from the ranking
        self.exclude_history = bool(config["eval_exclude_history"])
        self._eval_history = None  # the UserHistory of the loader being evaluated, when excluded
        # RecBole's SASRec and GRU4Rec: sequence training, or prefix samples in parts
        # (train_batch_parts); None: RecBole's calculate_loss (ours handle both in theirs)
        self.recbole_loss = None
        if type(model).__name__ in RECBOLE_SEQUENCE_MODELS:
            make = recbole_sequence_loss if config["train_mode"] == "sequence" else recbole_prefix_loss
            self.recbole_loss = make(model, config)

    def _build_optimizer(self, **kwargs):
        # models that want parameter groups (DiffuRec: no decay on the x_t/t pathway) say so
        if "params" not in kwargs and hasattr(self.model, "parameter_groups"):
            kwargs["params"] = self.model.parameter_groups(kwargs.get("weight_decay", self.weight_decay))
        return super()._build_optimizer(**kwargs)

    def _build_scheduler(self):
        if not self.lr_step_size:
            return None
        return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=self.lr_step_size, gamma=self.lr_gamma)

    def _decay_pending(self, epoch_idx=None) -> bool:
        """No early stop at the evaluation after ``epoch_idx`` (default: the current epoch): the
        step schedule's first decay has not trained an epoch yet (``stopping_after_decay``)."""
        epoch_idx = self._epoch_idx if epoch_idx is None else epoch_idx
        return self.stopping_after_decay and decay_pending(epoch_idx, self.lr_step_size)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.stopping_after_decay and decays_since(epoch_idx, epoch_idx - 1, self.lr_step_size) and self.cur_step:
            self.logger.info(
                f"epoch {epoch_idx}: the learning rate has decayed; early stopping's patience restarts "
                f"({self.cur_step} evaluations without a better score before)"
            )
            self.cur_step = 0
        self._epoch_idx = epoch_idx
        if self.config["train_mode"] == "sequence" and self.config["sequence_loss_mean"] == "epoch":
            self.model.sequence_targets_per_batch = train_data.targets_per_batch()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func or self.recbole_loss, show_progress)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    def train_epoch(self, train_data: AbstractDataLoader, epoch_idx: int, show_progress: bool = False) -> float | tuple:
        """One training epoch, as ``fit`` runs it before each evaluation (the learning-rate
        schedule steps after it); returns the loss. For benchmarks that time epochs alone."""
        return self._train_epoch(train_data, epoch_idx, show_progress=show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self.finished:  # resumed after the run had stopped: nothing left to train
            self.eval_collector.data_collect(train_data)  # what fit collects for the test metrics
            self._epoch_idx = self.start_epoch - 1
            return self.best_valid_score, self.best_valid_result
        self._train_data = train_data
        self._fit_start = time.time()

        def callback(epoch_idx, valid_score):
            self.valid_history.append([epoch_idx, float(valid_score)])
            self._decay_on_plateau(epoch_idx)
            if self.state_file:
                self.save_training_state(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        with stopping_rule(self.config["stopping_rule"], self.config["stopping_min_delta"], self._decay_pending):
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback)

    def _decay_on_plateau(self, epoch_idx):
        # RecBole's counter of evaluations without improvement has just been updated; it resets
        # on the next improvement, so each plateau decays once; lr_plateau_max_decays caps the
        # decays of the whole run (ties count as improvements, so a run can sit on one plateau
        # long after the rate stops mattering)
        if not self.lr_plateau_patience or self.cur_step != self.lr_plateau_patience:
            return
        if self.lr_plateau_max_decays and self.plateau_decays >= self.lr_plateau_max_decays:
            return
        self.plateau_decays += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= self.lr_gamma
        self.logger.info(
            f"epoch {epoch_idx}: no better validation score for {self.cur_step} evaluations, "
            f"learning rate x {self.lr_gamma} -> {self.optimizer.param_groups[0]['lr']:.3g} "
            f"(plateau decay {self.plateau_decays})"
        )

    def training_seconds(self) -> float:
        """Training wall seconds of this run, over every process that trained it."""
        return self.seconds_before + (time.time() - self._fit_start if self._fit_start else 0.0)

    def save_training_state(self, epoch_idx: int) -> None:
        """Write everything needed to continue after ``epoch_idx`` to ``state_file``, atomically.
        In a distributed run rank 0 writes it, with its own random generators."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        state = {
            "format": STATE_FORMAT,
            "config": _comparable_config(self.config),
            "epoch": epoch_idx,
            "cur_step": self.cur_step,
            "plateau_decays": self.plateau_decays,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,  # RecBole updates it before the callback
            "saved_model_file": self.saved_model_file,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": _rng_state(),
            "loaders": {k: g.get_state() for k, g in _loader_generators(self._train_data).items()},
            "train_loss": self.train_loss_dict,
            "train_seconds": self.training_seconds(),
            "valid_history": self.valid_history,
        }
        tmp = f"{self.state_file}.tmp{os.getpid()}"
        torch.save(state, tmp, pickle_protocol=4)
        os.replace(tmp, self.state_file)

    def load_training_state(self, state_file: str, train_data: AbstractDataLoader) -> dict:
        """Continue the run saved in ``state_file``: training resumes at the epoch after it."""
        try:
            state = torch.load(state_file, map_location=self.device, weights_only=False)
        except Exception as e:
            raise ResumeError(
                f"cannot read the training state {state_file} ({type(e).__name__}: {e}); delete it to start the run afresh."
            ) from None
        kind = checkpoint_kind(state)
        if kind != STATE:
            raise ResumeError(wrong_kind(state_file, kind, STATE))
        if state.get("format") != STATE_FORMAT:
            raise ResumeError(f"{state_file} is a training state of another version; delete it to start afresh.")
        now = _comparable_config(self.config)
        # over the keys both have: one only the saved run has is one this model does not define
        # (an older version passed e.g. SASRec's inner_size from a shared file: it never reached
        # the model); one only today's config has is newer than the saved run (train_loader,
        # dist_backend, download), whose default is how that run behaved
        differ = sorted(k for k in now if k in state["config"] and now[k] != state["config"][k])
        if differ:
            shown = ", ".join(f"{k} (saved {state['config'].get(k, 'absent')}, now {now.get(k, 'absent')})" for k in differ[:5])
            raise ResumeError(
                f"the training state {state_file} belongs to a run with other settings: {shown}. "
                "Resume with the run's own settings, or delete the state to start afresh."
            )
        if not os.path.isfile(state["saved_model_file"]):
            raise ResumeError(
                f"the best checkpoint {state['saved_model_file']} of the training state {state_file} is gone; "
                "delete the state to start the run afresh."
            )
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state["other_parameter"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"] + 1
        self._epoch_idx = state["epoch"]
        self.cur_step = state["cur_step"]
        self.plateau_decays = state.get("plateau_decays", 0)  # states written before the cap: none counted
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.saved_model_file = state["saved_model_file"]
        self.train_loss_dict = state["train_loss"]
        self.seconds_before = state["train_seconds"]
        self.valid_history = list(state.get("valid_history", []))  # states written before it: none
        # a run that had stopped stays stopped, unless it was given a larger budget
        stopped = state["cur_step"] > self.stopping_step and not self._decay_pending(state["epoch"])
        self.finished = stopped or self.start_epoch >= self.epochs
        _set_rng_state(state["rng"])
        for name, generator in _loader_generators(train_data).items():
            generator.set_state(state["loaders"][name])
        self.logger.info(f"Resumed from {state_file}: training continues at epoch {self.start_epoch}")
        return state

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and not self.config["single_spec"]:
            torch.distributed.barrier()  # rank 0 has finished writing the best checkpoint
        self._eval_history = None
        if self.exclude_history and eval_data:
            self._eval_history = getattr(eval_data, "user_history", None)
            if self._eval_history is None:
                raise ValueError("eval_exclude_history needs the loader's user_history (protocol.attach_histories)")
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)

    def test_under_both_protocols(self, test_data, saved: bool, show_progress: bool) -> dict[str, dict]:
        """The best model's test metrics under the run's protocol (first, as a plain test computes
        them) and under the other one, from the same random numbers: a model whose inference draws
        noise (the reverse process) ranks with the same noise under both. {protocol: metrics}."""
        configured = self.exclude_history
        rng = _rng_state()
        results = {protocol_of(configured): self.evaluate(test_data, load_best_model=saved, show_progress=show_progress)}
        _set_rng_state(rng)
        self.exclude_history = not configured
        try:
            results[protocol_of(not configured)] = self.evaluate(test_data, load_best_model=False, show_progress=show_progress)
        finally:
            self.exclude_history = configured
        return {p: results[p] for p in PROTOCOLS}

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._eval_history is not None:
            rows, items = self._eval_history.index(interaction[self.config["USER_ID_FIELD"]])
            scores[rows.to(scores.device), items.to(scores.device)] = -np.inf
        return interaction, scores, positive_u, positive_i

    def resume_checkpoint(self, resume_file):
        super().resume_checkpoint(resume_file)
        # The optimizer state just loaded holds the current (decayed) lr, and StepLR's step only
        # multiplies the current lr, so the epoch count is all the schedule needs: RecBole's
        # checkpoint format stays as it is.
        if self.scheduler is not None:
            self.scheduler.last_epoch = self.start_epoch

    def _check_nan(self, loss):
        if torch.isnan(loss):
            saved = (
                f" The best checkpoint so far is kept at {self.saved_model_file}."
                if self.best_valid_result is not None
                else ""
            )
            raise NaNLossError(
                f"training loss became NaN in epoch {self._epoch_idx} of {self.config['model']} "
                f"on {self.config['dataset']} (learning_rate={self.learning_rate}). Lower "
                "--learning_rate, or set --clip_grad_norm=\"{'max_norm': 5}\"." + saved
            )
