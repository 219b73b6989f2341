"""Training: pretraining (L1), fine-tuning (L3 = L2 + lambda*L1), heads and checkpoints.

    pretrain.py    language-model pretraining: TrainConfig and the plain loop pretrain(cfg)
    finetune.py    supervised fine-tuning on a task: FinetuneConfig, the loop finetune(cfg), predict
    run.py         what both loops call: Run (metrics, progress bar, Ctrl-C, the first checkpoint
                   note to the run folder) and check_finite (the NaN/inf stop)
    heads.py       the task heads on GPT-1's last hidden states, and TaskModel
    checkpoint.py  a checkpoint's contents (weights, config, tokenizer, Adam state, state.json):
                   save_checkpoint writes them through minigpt.runfolder's crash-proof swap,
                   load_checkpoint reads them back, every file checked before use
"""
from ..runfolder import (CheckpointError, clean_leftovers, find_checkpoint, replace_directory,
                         resolve_checkpoint)
from .checkpoint import load_checkpoint, save_checkpoint
from .finetune import (FinetuneConfig, evaluate_task, finetune, load_base, load_finetuned, predict,
                       save_finetuned)
from .heads import TaskModel, make_head, task_loss
from ..runfolder import RunDirectory, RunLock, TrainingError, read_metrics, write_metrics
from .pretrain import TrainConfig, evaluate, evaluate_full, plot_losses, pretrain
from .run import Run, StopOnCtrlC, check_finite

__all__ = ["pretrain", "TrainConfig", "evaluate", "evaluate_full", "plot_losses",
           "TrainingError", "finetune", "FinetuneConfig", "evaluate_task", "predict", "load_base",
           "save_finetuned", "load_finetuned", "TaskModel", "make_head", "task_loss",
           "load_checkpoint", "save_checkpoint", "resolve_checkpoint", "find_checkpoint",
           "replace_directory", "clean_leftovers", "CheckpointError", "Run", "RunDirectory",
           "RunLock", "StopOnCtrlC", "check_finite", "read_metrics", "write_metrics"]
