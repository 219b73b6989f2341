"""Training: pretraining (L1), fine-tuning (L3 = L2 + lambda*L1), heads and checkpoints.

    loop.py        the run loop both share: output-folder guard, lock, Ctrl-C, progress, NaN stop
    pretrain.py    language-model pretraining (TrainConfig, pretrain, evaluate_full)
    finetune.py    supervised fine-tuning on a task (FinetuneConfig, finetune, predict)
    heads.py       the task heads on GPT-1's last hidden states, and TaskModel
    checkpoint.py  checkpoint directories: atomic save, load, crash-proof swap
"""
from .checkpoint import (CheckpointError, load_checkpoint, replace_directory, resolve_checkpoint,
                         save_checkpoint)
from .finetune import (FinetuneConfig, evaluate_task, finetune, load_base, load_finetuned, predict,
                       save_finetuned)
from .heads import TaskModel, make_head, task_loss
from .loop import StopOnCtrlC, TrainingError
from .pretrain import TrainConfig, evaluate, evaluate_full, plot_losses, pretrain

__all__ = ["pretrain", "TrainConfig", "evaluate", "evaluate_full", "plot_losses", "TrainingError",
           "StopOnCtrlC", "finetune", "FinetuneConfig", "evaluate_task", "predict", "load_base",
           "save_finetuned", "load_finetuned", "TaskModel", "make_head", "task_loss",
           "load_checkpoint", "save_checkpoint", "resolve_checkpoint", "replace_directory",
           "CheckpointError"]
