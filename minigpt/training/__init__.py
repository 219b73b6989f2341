"""Training: pretraining (L1), fine-tuning (L3 = L2 + lambda*L1), heads and checkpoints.

    loop.py        the run loop both share: output-folder guard, lock, Ctrl-C, progress, NaN stop
    pretrain.py    language-model pretraining (TrainConfig, pretrain, evaluate_full)
    finetune.py    supervised fine-tuning on a task (FinetuneConfig, finetune, predict)
    heads.py       the task heads on GPT-1's last hidden states, and TaskModel
    checkpoint.py  checkpoint directories: save, load, the crash-proof swap, leftover cleanup
"""
from .checkpoint import (CheckpointError, clean_leftovers, find_checkpoint, load_checkpoint,
                         replace_directory, resolve_checkpoint, save_checkpoint)
from .finetune import (FinetuneConfig, evaluate_task, finetune, load_base, load_finetuned, predict,
                       save_finetuned)
from .heads import TaskModel, make_head, task_loss
from .loop import (Run, RunDirectory, RunLock, StopOnCtrlC, TrainingError, read_metrics, run_loop,
                   write_metrics)
from .pretrain import TRAIN_RULES, TrainConfig, evaluate, evaluate_full, plot_losses, pretrain

__all__ = ["pretrain", "TrainConfig", "TRAIN_RULES", "evaluate", "evaluate_full", "plot_losses",
           "TrainingError", "finetune", "FinetuneConfig", "evaluate_task", "predict", "load_base",
           "save_finetuned", "load_finetuned", "TaskModel", "make_head", "task_loss",
           "load_checkpoint", "save_checkpoint", "resolve_checkpoint", "find_checkpoint",
           "replace_directory", "clean_leftovers", "CheckpointError", "Run", "RunDirectory",
           "RunLock", "StopOnCtrlC", "run_loop", "read_metrics", "write_metrics"]
