"""RecBole's Trainer with the paper's StepLR schedule and a NaN error that says what to do.

The schedule is general: any model our runner trains with RecBole's plain trainer (SASRec, GRU4Rec,
BERT4Rec, DiffuRec, DiffuRecSys) gets it from two keys in ``properties/overall.yaml``:
``lr_step_size`` (0 = constant learning rate) and ``lr_gamma``.
"""
import torch
from recbole.trainer import Trainer as RecBoleTrainer

from recbole_diffurec.utils import UsageError


class NaNLossError(UsageError):
    """Training diverged; the message names the epoch and what to change."""


class Trainer(RecBoleTrainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.lr_step_size = config["lr_step_size"]
        self.lr_gamma = config["lr_gamma"]
        self.scheduler = self._build_scheduler()
        self._epoch_idx = 0

    def _build_optimizer(self, **kwargs):
        # models that want parameter groups (DiffuRec: no decay on the x_t/t pathway) say so
        if "params" not in kwargs and hasattr(self.model, "parameter_groups"):
            kwargs["params"] = self.model.parameter_groups(kwargs.get("weight_decay", self.weight_decay))
        return super()._build_optimizer(**kwargs)

    def _build_scheduler(self):
        if not self.lr_step_size:
            return None
        return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=self.lr_step_size, gamma=self.lr_gamma)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._epoch_idx = epoch_idx
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

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
