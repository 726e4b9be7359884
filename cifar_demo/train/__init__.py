"""Training: a TrainConfig, the engine that runs it, and the run directory it writes.

    checks   validate(): the rules a config must meet beyond its values (TrainConfig and every
             name list live in cifar_demo.recipe, below the zoo and the engine)
    presets  the named presets and make_config()
    optim    parameter groups (a model may give its own) and the optimizer over them
    optimizers  SAM, Muon, Lookahead
    schedule the learning-rate schedules
    precision  autocast dtype and loss scaling
    step     the loss and one optimizer step (loss scaling, clipping, SAM's two passes)
    engine   Trainer: setup -> restore -> epoch / evaluate ... -> finish, over a RunState
    parts    what setup builds: device, data, loader, model, optimizer, scaler, EMA, ...
    transfer starting from trained weights (init_from): a new head, BatchNorm statistics
    distill  a teacher's probabilities on the training images (distill-targets), blended into targets
    state    RunState and the RNG states, in the checkpoint's format
    sinks    where events go: metrics.jsonl, a tqdm bar, any callable
    dist     DDP helpers and the device-side step metrics

    cfg = make_config("demo", epochs=2)
    summary = Trainer(cfg, console=True).run()
    summary = Trainer.resuming(run_id).run()
    cfg = make_config("finetune", data="my_photos.zip")   # airnet's CIFAR-10 weights, a new head
"""

from ..recipe import (
                      AUGMENTATIONS,
                      BN_STATS,
                      CHOICES,
                      MIXES,
                      OPTIMIZERS,
                      PRECISIONS,
                      RECIPE_KEYS,
                      RUN_FIELDS,
                      SCHEDULES,
                      TTA_MODES,
                      TrainConfig,
)
from ..runs import (
                      BEST_FILE,
                      CHECKPOINT_FILE,
                      CONFIG_FILE,
                      METRICS_FILE,
                      SUMMARY_FILE,
                      Run,
                      check_run_id,
                      list_runs,
                      load_run,
                      new_run_id,
                      read_metrics,
                      run_dir_of,
                      runs_root,
)
from .checks import validate
from .dist import StepMeter, state_digest
from .engine import Trainer
from .optim import build_optimizer, param_groups
from .optimizers import SAM, Lookahead
from .parts import LOG_EVERY, Parts, build_parts, log_every_for
from .precision import autocast_dtype, grad_scaler
from .presets import EXTRA_PRESETS, make_config, presets
from .schedule import build_scheduler, lr_factor
from .sinks import JsonlSink, Sink, TqdmSink, format_epoch
from .state import CHECKPOINT_KEYS, RunState, seed_everything
from .step import l1_penalty, optimizer_step, training_loss
from .transfer import (
                      check_init_from,
                      head_keys,
                      load_init,
                      recompute_bn_stats,
                      set_train_mode,
)

__all__ = [
    "AUGMENTATIONS", "BEST_FILE", "BN_STATS", "CHECKPOINT_FILE", "CHECKPOINT_KEYS", "CHOICES", "CONFIG_FILE",
    "EXTRA_PRESETS", "JsonlSink", "LOG_EVERY", "Lookahead", "METRICS_FILE", "MIXES", "OPTIMIZERS",
    "PRECISIONS", "Parts", "RECIPE_KEYS", "RUN_FIELDS", "Run", "RunState", "SAM", "SCHEDULES", "SUMMARY_FILE",
    "Sink", "StepMeter", "TTA_MODES", "TqdmSink", "TrainConfig", "Trainer", "autocast_dtype",
    "build_optimizer", "build_parts", "build_scheduler", "check_init_from", "check_run_id",
    "format_epoch", "grad_scaler",
    "head_keys", "l1_penalty", "list_runs", "load_init", "load_run", "log_every_for", "lr_factor",
    "make_config", "new_run_id", "optimizer_step", "param_groups", "presets", "read_metrics",
    "recompute_bn_stats", "run_dir_of", "runs_root", "seed_everything", "set_train_mode", "state_digest",
    "training_loss", "validate",
]
